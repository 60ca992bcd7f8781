"""Checkpoints: the one module that writes and reads them.

A run directory holds `last.pt` (everything `--resume` needs: weights, optimizer,
step, data position, RNG states, elapsed time) and `best.pt` (weights with the lowest
validation loss). Both are written through `atomic_path`, so a killed run never leaves
a half-written file; reading one that is damaged anyway (copied half-way, truncated on
disk, not a checkpoint at all) is one clear error naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fastgpt._util.atomic import atomic_path
from fastgpt._util.device import resolve_device
from fastgpt.gpt.model import GPT, GPTConfig

__all__ = ["CHECKPOINT_VERSION", "save", "load", "find", "load_model"]

CHECKPOINT_VERSION = 1


def save(obj: dict, path: str | Path) -> None:
    """torch.save `obj` to `path`, whole or not at all."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load(path: str | Path) -> dict:
    """The checkpoint dict in `path` (tensors on the CPU); a ValueError naming the file when it
    cannot be read or is not a fastgpt checkpoint of a version this code knows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # EOFError, UnpicklingError, zip errors, RuntimeError: all mean a damaged file
        size = path.stat().st_size
        raise ValueError(
            f"{path}: not a readable checkpoint ({size:,} bytes; truncated or damaged: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise ValueError(f"{path}: not a fastgpt checkpoint (no model and model_config in it)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{path}: unsupported checkpoint version {ckpt.get('version')} (this fastgpt reads {CHECKPOINT_VERSION})"
        )
    return ckpt


def find(path: str | Path) -> Path:
    """The file a run directory offers for generation (`best.pt`, else `last.pt`), or `path` itself."""
    path = Path(path)
    if path.is_dir():
        file = next((path / n for n in ("best.pt", "last.pt") if (path / n).exists()), None)
        if file is None:
            raise FileNotFoundError(f"{path}: no best.pt or last.pt in this directory; is it a training run?")
        return file
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return path


def load_model(path: str | Path, device: str | torch.device = "auto") -> tuple[GPT, Any]:
    """Model (in eval mode, on `device`) and tokenizer from a run directory or a `.pt` file in one.

    A directory gives `best.pt` (lowest validation loss) when present, else `last.pt`.
    The tokenizer is the copy the trainer left in the run directory.
    """
    from fastgpt.tokenizer import Tokenizer

    file = find(path)
    tok_dir = file.parent / "tokenizer"
    if not tok_dir.exists():
        raise FileNotFoundError(f"{tok_dir}: the checkpoint has no tokenizer copy")
    ckpt = load(file)
    try:
        cfg = GPTConfig(**ckpt["model_config"])
    except TypeError as exc:
        raise ValueError(f"{file}: not a fastgpt checkpoint ({exc})") from None
    tokenizer = Tokenizer.load(tok_dir)
    if tokenizer.n_vocab != cfg.vocab_size:
        raise ValueError(f"{tok_dir}: tokenizer has {tokenizer.n_vocab} tokens, the model in {file} {cfg.vocab_size}")
    device = resolve_device(device)
    model = GPT(cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(
            f"{file}: weights do not fit the model config saved with them ({str(exc).splitlines()[0]})"
        ) from None
    if device.type == "cuda":  # bf16 weights and cache: half the memory traffic per token
        model = model.to(torch.bfloat16)
    return model.to(device).eval(), tokenizer
