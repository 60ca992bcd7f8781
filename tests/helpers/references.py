"""Reference data shared by tests and benchmarks: real OpenAI vocabularies (shipped by the
`bpe-openai` package, so nothing downloads), tiktoken's own encodings of them, and the
CPython standard library as a real corpus."""

from __future__ import annotations

import base64
import gzip
import sysconfig
from pathlib import Path

import pytest


def rank_file(name: str) -> Path:
    bpe_openai = pytest.importorskip("bpe_openai")
    return Path(bpe_openai.__file__).parent / "data" / f"{name}.tiktoken.gz"


def reference_encoding(name: str):
    """tiktoken's own definition of `name` (pattern, special tokens), with the ranks
    read from the offline rank file instead of downloaded."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken_ext import openai_public

    raw = gzip.decompress(rank_file(name).read_bytes())
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in raw.splitlines() if line)}
    original = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = lambda *args, **kwargs: ranks
    try:
        spec = getattr(openai_public, name)()
    finally:
        openai_public.load_tiktoken_bpe = original
    return tiktoken.Encoding(
        spec["name"], pat_str=spec["pat_str"], mergeable_ranks=ranks, special_tokens=spec["special_tokens"]
    )


def stdlib_sources() -> list[Path]:
    """The standard library's own .py files (without site-packages), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)


def prose_text() -> str:
    """English prose: the Python documentation's topic pages, shipped with CPython."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics.values())
