"""Shared fixtures: real OpenAI vocabularies (shipped by the `bpe-openai` package, so
nothing downloads) with tiktoken's own encodings of them as the reference, a tiny byte
tokenizer, and the CPython standard library's sources as a real corpus."""

from __future__ import annotations

import base64
import gzip
import sysconfig
from pathlib import Path

import pytest

from fastgpt import Tokenizer


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
    return tiktoken.Encoding(spec["name"], pat_str=spec["pat_str"], mergeable_ranks=ranks, special_tokens=spec["special_tokens"])


@pytest.fixture(scope="session", params=["cl100k_base", "o200k_base"])
def openai_pair(request):
    """(fastgpt Tokenizer, tiktoken Encoding) for one real vocabulary."""
    return Tokenizer.from_tiktoken(rank_file(request.param)), reference_encoding(request.param)


@pytest.fixture(scope="session")
def cl100k():
    return Tokenizer.from_tiktoken(rank_file("cl100k_base"))


@pytest.fixture(scope="session")
def cl100k_reference():
    return reference_encoding("cl100k_base")


@pytest.fixture(scope="session")
def byte_tokenizer() -> Tokenizer:
    """256 byte tokens plus <|endoftext|> = 256: tiny, for tests of other parts."""
    return Tokenizer.from_ranks({bytes([i]): i for i in range(256)}, pattern="gpt2", special_tokens={"<|endoftext|>": 256})


def stdlib_sources() -> list[Path]:
    """The standard library's own .py files (without site-packages), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)


@pytest.fixture(scope="session")
def stdlib_texts() -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace") for p in stdlib_sources()]
