"""Encode throughput: fastgpt side by side with tiktoken, Hugging Face tokenizers,
bpe-openai and rs-bpe on the same vocabulary and text (peers skipped if not installed).

    make bench      # or: pytest benches --benchmark-enable -k encode

Each benchmark records the input size in `extra_info["bytes"]`; MB/s = bytes / mean.
"""

from __future__ import annotations

import functools
import os
import random
import string

import pytest

from fastgpt import Tokenizer
from helpers.references import prose_text, rank_file, reference_encoding, stdlib_sources

CODE_BYTES = 2_000_000
WORST_BYTES = 1_000_000
VOCABS = ["cl100k_base", "o200k_base"]


@functools.cache
def corpus(kind: str) -> str:
    if kind == "prose":
        return prose_text()
    text, size = [], 0
    for path in stdlib_sources():
        text.append(path.read_text(encoding="utf-8", errors="replace"))
        size += len(text[-1])
        if size >= CODE_BYTES:
            break
    return "".join(text)


@functools.cache
def documents(kind: str) -> list[str]:
    """The corpus cut into documents of about 4 KB, for batch encoding."""
    text = corpus(kind)
    return [text[i : i + 4096] for i in range(0, len(text), 4096)]


@functools.cache
def encoder(peer: str, vocab: str):
    """A callable encoding one text and one encoding a list of texts, or skip."""
    if peer == "fastgpt":
        tok = Tokenizer.from_tiktoken(rank_file(vocab))
        return tok.encode_ordinary, lambda texts, threads: tok.encode_ordinary_batch(texts, num_threads=threads)
    if peer == "tiktoken":
        enc = reference_encoding(vocab)
        return enc.encode_ordinary, lambda texts, threads: enc.encode_ordinary_batch(texts, num_threads=threads)
    if peer == "tokenizers":
        tokenizers = pytest.importorskip("tokenizers")
        import tempfile

        directory = tempfile.mkdtemp()
        Tokenizer.from_tiktoken(rank_file(vocab)).save(f"{directory}/tok")
        hf = tokenizers.Tokenizer.from_file(f"{directory}/tok/tokenizer.json")
        single = lambda text: hf.encode(text, add_special_tokens=False).ids  # noqa: E731

        def batch(texts, threads):
            # tokenizers sizes its thread pool from the environment once, at first use.
            os.environ["RAYON_NUM_THREADS"] = str(threads)
            return [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]

        return single, batch
    if peer == "bpe-openai":
        bpe_openai = pytest.importorskip("bpe_openai")
        enc = bpe_openai.get_encoding(vocab)
        return enc.encode_ordinary, lambda texts, threads: enc.encode_ordinary_batch(texts)
    if peer == "rs-bpe":
        rs_bpe = pytest.importorskip("rs_bpe")
        enc = getattr(rs_bpe.openai, vocab)()
        return enc.encode, lambda texts, threads: enc.encode_batch_parallel(texts)
    raise ValueError(peer)


PEERS = ["fastgpt", "tiktoken", "tokenizers", "bpe-openai", "rs-bpe"]


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("kind", ["prose", "code"])
@pytest.mark.parametrize("vocab", VOCABS)
def test_encode_single_thread(benchmark, vocab, kind, peer):
    single, _ = encoder(peer, vocab)
    text = corpus(kind)
    try:
        single(text[:100_000])  # bpe-openai refuses inputs it deems too long
        single(text)
    except ValueError as exc:
        pytest.skip(f"{peer} cannot encode this input: {exc}")
    benchmark.group = f"encode 1 thread: {vocab} {kind}"
    benchmark.extra_info["bytes"] = len(text.encode())
    ids = benchmark(single, text)
    assert len(ids) > len(text) / 10


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("peer", ["fastgpt", "tiktoken"])
def test_encode_batch(benchmark, peer, threads):
    _, batch = encoder(peer, "cl100k_base")
    texts = documents("code")
    benchmark.group = "encode batch: cl100k_base code, 4 KB documents"
    benchmark.extra_info["bytes"] = sum(len(t.encode()) for t in texts)
    benchmark.extra_info["threads"] = threads
    assert len(benchmark(batch, texts, threads)) == len(texts)


WORST_CASES = {
    "prose": lambda: corpus("prose")[:WORST_BYTES],
    "one letter": lambda: "a" * WORST_BYTES,
    "random letters": lambda: "".join(random.Random(0).choices(string.ascii_letters, k=WORST_BYTES)),
    "spaces then a letter": lambda: " " * WORST_BYTES + "a",
}


@pytest.mark.parametrize("peer", ["fastgpt", "tiktoken"])
@pytest.mark.parametrize("case", WORST_CASES)
def test_encode_worst_case(benchmark, case, peer):
    if peer == "tiktoken" and case == "spaces then a letter":
        pytest.skip("tiktoken's regex overflows its stack on a million spaces")
    single, _ = encoder(peer, "cl100k_base")
    text = WORST_CASES[case]()
    benchmark.group = f"worst case vs prose: cl100k_base, {peer}"
    benchmark.extra_info["bytes"] = len(text.encode())
    benchmark.pedantic(single, args=(text,), rounds=3, iterations=1, warmup_rounds=1)
