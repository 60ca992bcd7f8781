"""Hugging Face `tokenizer.json` (byte-level BPE): reading and writing.

Byte-level BPE stores each token as text, one printable character per byte: the
printable Latin-1 bytes stand for themselves and the other 68 bytes are shifted to
code points from 256 up, in byte order (the mapping GPT-2 introduced).
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any, NoReturn


@functools.cache
def byte_to_char() -> tuple[str, ...]:
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    shifted = iter(range(256, 512))
    return tuple(chr(b) if b in printable else chr(next(shifted)) for b in range(256))


@functools.cache
def char_to_byte() -> dict[str, int]:
    return {c: b for b, c in enumerate(byte_to_char())}


def token_to_text(token: bytes) -> str:
    table = byte_to_char()
    return "".join(table[b] for b in token)


def text_to_token(text: str, source: str) -> bytes:
    table = char_to_byte()
    try:
        return bytes(table[c] for c in text)
    except KeyError as exc:
        raise ValueError(f"{source}: token {text!r} is not byte-level text ({exc.args[0]!r} maps to no byte)") from None


# The regex Hugging Face's ByteLevel pre-tokenizer applies when `use_regex` is true.
_BYTELEVEL_REGEX = "gpt2"


def _pattern(pre: dict[str, Any] | None, source: str) -> str:
    """The split pattern of a byte-level pre-tokenizer: ByteLevel alone, or Split + ByteLevel."""
    steps = [] if pre is None else pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    pattern = None
    for step in steps:
        kind = step.get("type")
        if kind == "ByteLevel":
            if step.get("add_prefix_space"):
                raise ValueError(f"{source}: ByteLevel with add_prefix_space is not supported")
            if step.get("use_regex", True):
                pattern = _BYTELEVEL_REGEX if pattern is None else _unsupported(source, "two split regexes")
        elif kind == "Split":
            regex = step.get("pattern", {}).get("Regex")
            if regex is None or step.get("behavior") != "Isolated" or step.get("invert"):
                _unsupported(source, f"Split pre-tokenizer {json.dumps(step)}")
            pattern = regex if pattern is None else _unsupported(source, "two split regexes")
        else:
            _unsupported(source, f"pre-tokenizer {kind!r}")
    if pattern is None:
        _unsupported(source, "a byte-level BPE without a ByteLevel pre-tokenizer")
    return pattern


def _unsupported(source: str, what: str) -> NoReturn:
    raise ValueError(f"{source}: unsupported tokenizer.json: {what} (fastgpt reads byte-level BPE models)")


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parses a tokenizer.json into the arguments of `CoreBPE.from_merges`."""
    source = str(path)
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON: {exc}") from None
    model = doc.get("model") if isinstance(doc, dict) else None
    if not isinstance(model, dict) or model.get("type", "BPE") != "BPE" or "merges" not in model:
        _unsupported(source, "the model is not BPE")
    for option in ("continuing_subword_prefix", "end_of_word_suffix", "dropout"):
        if model.get(option):
            _unsupported(source, f"model option {option}={model[option]!r}")
    if model.get("byte_fallback"):
        _unsupported(source, "byte_fallback")
    if doc.get("normalizer") is not None:
        _unsupported(source, f"normalizer {doc['normalizer'].get('type')!r}")

    specials = {t["content"]: int(t["id"]) for t in doc.get("added_tokens") or []}
    special_ids = set(specials.values())
    vocab = [(text_to_token(text, source), int(i)) for text, i in model["vocab"].items() if int(i) not in special_ids]
    by_text = {text: int(i) for text, i in model["vocab"].items()}
    merges = []
    for n, merge in enumerate(model["merges"]):
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        try:
            merges.append((by_text[left], by_text[right]))
        except KeyError as exc:
            raise ValueError(
                f"{source}: merge {n} ({left!r} {right!r}) uses {exc.args[0]!r}, which is not in the vocabulary"
            ) from None
    return {
        "vocab": vocab,
        "merges": merges,
        "pattern": _pattern(doc.get("pre_tokenizer"), source),
        "specials": list(specials.items()),
        "direct_lookup": bool(model.get("ignore_merges", False)),
    }


def oniguruma_pattern(pattern: str) -> str:
    """`pattern` as Hugging Face's regex engine (Oniguruma) reads it the same way. There,
    `{1,3}+` means "`{1,3}`, one or more times", not a possessive `{1,3}`; a bounded
    repeat followed by nothing that could backtrack into it needs no possessive mark."""
    return re.sub(r"(\{\d+(?:,\d*)?\})\+", r"\1", pattern)


def dumps(ranks: list[tuple[bytes, int]], merges: list[tuple[int, int]], pattern: str, specials: dict[str, int]) -> str:
    """A tokenizer.json giving the same ids as fastgpt: whole pieces found in the vocabulary
    are looked up directly (`ignore_merges`), as tiktoken and fastgpt do."""
    text = {i: token_to_text(b) for b, i in ranks}
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": s,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for s, i in sorted(specials.items(), key=lambda item: item[1])
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": oniguruma_pattern(pattern)},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": {text[i]: i for _, i in ranks},
            "merges": [[text[a], text[b]] for a, b in merges],
        },
    }
    return json.dumps(doc, ensure_ascii=False)
