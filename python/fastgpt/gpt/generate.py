"""Sampling from a trained GPT: a KV cache, streaming, needing nothing but the checkpoint.

Two layers, as in an inference engine: `generate_tokens` takes and yields token ids
and knows nothing about text; `generate_text` / `generate` wrap it with the
tokenizer and yield text pieces as soon as they form whole UTF-8 characters.

    >>> from fastgpt.gpt.generate import generate
    >>> for piece in generate("runs/my_gpt", "Once upon a time", length=50, seed=0):  # doctest: +SKIP
    ...     print(piece, end="", flush=True)
"""

from __future__ import annotations

import codecs
import math
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from fastgpt._util.device import autocast
from fastgpt.gpt.checkpoint import load_model
from fastgpt.gpt.model import GPT

__all__ = ["load_checkpoint", "check_sampling", "generate_tokens", "generate_text", "generate", "sample_next"]


def load_checkpoint(path: str | Path, device: str | torch.device = "auto") -> tuple[GPT, Any]:
    """Model (eval mode, on `device`) and tokenizer of a run directory or `.pt` file (see
    `fastgpt.gpt.checkpoint.load_model`, which this is)."""
    return load_model(path, device)


def check_sampling(
    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, length: int = 0
) -> None:
    """Sampling settings no sampler can use: a ValueError naming the flag and the value."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"--temperature must be a finite number >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and top_k < 0:
        raise ValueError(f"--top_k must be >= 0 (0 keeps every token), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"--top_p must be in (0, 1] (1 keeps every token), got {top_p}")
    if length < 0:
        raise ValueError(f"--length must be >= 0 new tokens, got {length}")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token ids (B,) from logits (B, V): greedy at temperature 0, else top-k then nucleus sampling."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens before it already cover top_p; the first always stays.
        drop = (cum - sorted_logits.softmax(dim=-1)) >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate_tokens(
    model: GPT,
    prompt: Sequence[int],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    stop_token: int | None = None,
    use_cache: bool = True,
) -> Iterator[int]:
    """Yield up to `max_new_tokens` token ids continuing `prompt`; stops after yielding `stop_token`.

    With the cache each step runs one token through the model. When the context
    fills `seq_len`, the cache restarts from the latest half context (one prefill per
    seq_len / 2 tokens); without the cache every step recomputes the last seq_len tokens.
    """
    if len(prompt) == 0:
        raise ValueError("the prompt must have at least one token")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    device = model.wte.weight.device
    window = model.cfg.seq_len
    context = list(prompt)
    cache = model.make_cache(1) if use_cache else None
    pending = context[-window:]  # tokens the cache has not seen yet
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            if cache is not None:
                if cache.pos + len(pending) > window:
                    cache.reset()
                    pending = context[-max(1, window // 2) :]
                h = model.hidden_states(torch.tensor([pending], device=device), cache)
            else:
                h = model.hidden_states(torch.tensor([context[-window:]], device=device))
            token = int(sample_next(model.logits(h[:, -1]), temperature, top_k, top_p, generator)[0])
            yield token
            if token == stop_token:
                return
            context.append(token)
            pending = [token]
    finally:
        model.train(was_training)


def generate_text(
    model: GPT,
    tokenizer: Any,
    prompt: str = "",
    length: int = 200,
    *,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float | None = None,
    seed: int | None = None,
    use_cache: bool = True,
) -> Iterator[str]:
    """Yield text pieces of up to `length` new tokens; stops at end-of-text (not yielded).

    An empty prompt starts a fresh document from the end-of-text token.
    """
    check_sampling(temperature, top_k, top_p, length)  # before the first piece: nothing printed on bad input
    ids = tokenizer.encode(prompt, allowed_special="all") if prompt else []
    if not ids:
        if tokenizer.eot_token is None:
            raise ValueError("an empty prompt needs a tokenizer with an end-of-text token; give a --prompt")
        ids = [tokenizer.eot_token]
    if len(ids) > model.cfg.seq_len:
        ids = ids[-model.cfg.seq_len :]  # the model sees at most seq_len tokens anyway
    device = model.wte.weight.device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    # Tokens can end mid-character (byte-level BPE): decode bytes incrementally.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with autocast(device):
        for token in generate_tokens(
            model,
            ids,
            length,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
            stop_token=tokenizer.eot_token,
            use_cache=use_cache,
        ):
            if token == tokenizer.eot_token:
                break
            piece = decoder.decode(tokenizer.decode_bytes([token]))
            if piece:
                yield piece
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def generate(
    checkpoint: str | Path,
    prompt: str = "",
    length: int = 200,
    *,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float | None = None,
    seed: int | None = None,
    device: str = "auto",
    use_cache: bool = True,
) -> Iterator[str]:
    """Load a checkpoint and yield generated text pieces (see `generate_text`)."""
    check_sampling(temperature, top_k, top_p, length)
    model, tokenizer = load_model(checkpoint, device)
    yield from generate_text(
        model,
        tokenizer,
        prompt,
        length,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        use_cache=use_cache,
    )


class _CallableModule(types.ModuleType):
    """Makes `fastgpt.generate(...)` a call of `generate` whichever way it was reached.

    Once this module is imported, the package attribute `fastgpt.generate` is the module
    itself (the package cannot import it eagerly: that would import torch), so the module
    is made callable rather than shadowed by the function.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        return generate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
