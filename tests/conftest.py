"""Shared fixtures: real vocabularies with tiktoken's encodings as the reference, a tiny
byte tokenizer, and the standard library's sources as a real corpus (see references.py)."""

from __future__ import annotations

import pytest

from fastgpt import Tokenizer
from helpers.references import rank_file, reference_encoding, stdlib_sources


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
    return Tokenizer.from_ranks(
        {bytes([i]): i for i in range(256)}, pattern="gpt2", special_tokens={"<|endoftext|>": 256}
    )


@pytest.fixture(scope="session")
def stdlib_texts() -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace") for p in stdlib_sources()]


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models: extra threads only add overhead, and badly so when other jobs share the cores."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
