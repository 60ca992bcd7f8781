"""Text → .bin throughput against in-memory batch encoding of the same documents (the bar:
≥ 90%) and against a nanoGPT-style pipeline (tiktoken's batch encode, then a numpy memmap
write; the bar: ≥ 3×), and peak RSS of pretokenizing 100 MB and 1 GB (the bar: ≤ 1.2×).

    pytest benches/test_bench_pretokenize.py --benchmark-enable
"""

from __future__ import annotations

import functools

import pytest

from benchlib import python_peak_rss, rank_file, stdlib_sources, tiktoken_encoding
from fastgpt import Tokenizer, pretokenize

CORPUS_BYTES = 8_000_000


@functools.cache
def tokenizer() -> Tokenizer:
    return Tokenizer.from_tiktoken(rank_file("cl100k_base"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Standard library sources, one line per document."""
    lines, size = [], 0
    for path in stdlib_sources():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip():
                lines.append(line)
                size += len(line) + 1
        if size >= CORPUS_BYTES:
            break
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, lines


def test_pretokenize_to_bin(benchmark, corpus, tmp_path):
    path, _ = corpus
    benchmark.group = "pretokenize vs in-memory batch encode (cl100k, all threads)"
    benchmark.extra_info["bytes"] = path.stat().st_size
    summary = benchmark.pedantic(
        pretokenize, args=(path, tokenizer(), tmp_path / "out.bin"), kwargs={"progress": False}, rounds=3
    )
    assert summary.tokens > 0


def test_in_memory_batch_encode(benchmark, corpus):
    path, lines = corpus
    benchmark.group = "pretokenize vs in-memory batch encode (cl100k, all threads)"
    benchmark.extra_info["bytes"] = path.stat().st_size
    benchmark.pedantic(tokenizer().encode_ordinary_batch, args=(lines,), rounds=3)


def nanogpt_style(lines: list[str], path) -> int:
    """What nanoGPT's prepare scripts do: encode every document with tiktoken, append the
    end-of-text token, and write the ids through a numpy memmap."""
    import numpy as np

    enc = tiktoken_encoding(rank_file("cl100k_base"))
    ids = enc.encode_ordinary_batch(lines, num_threads=2)
    total = sum(len(i) + 1 for i in ids)
    out = np.memmap(path, dtype=np.uint32, mode="w+", shape=(total,))
    pos = 0
    for doc in ids:
        out[pos : pos + len(doc)] = doc
        out[pos + len(doc)] = enc.eot_token
        pos += len(doc) + 1
    out.flush()
    return total


def test_nanogpt_style_pipeline(benchmark, corpus, tmp_path):
    path, lines = corpus
    benchmark.group = "pretokenize vs in-memory batch encode (cl100k, all threads)"
    benchmark.extra_info["bytes"] = path.stat().st_size
    benchmark.pedantic(nanogpt_style, args=(lines, tmp_path / "nano.bin"), rounds=2)


PRETOKENIZE = """
import sys
from fastgpt import pretokenize
pretokenize(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)
"""


@pytest.mark.parametrize("megabytes", [100, 1000])
def test_peak_rss_is_flat(benchmark, corpus, tmp_path, megabytes):
    """The corpus repeated to 100 MB and to 1 GB: peak RSS should not grow with it."""
    path, _ = corpus
    big = tmp_path / "big.txt"
    data = path.read_bytes()
    with open(big, "wb") as f:
        for _ in range(max(1, megabytes * 1_000_000 // len(data))):
            f.write(data)
    tok_dir = tokenizer().save(tmp_path / "tok")
    benchmark.group = "pretokenize peak RSS"
    benchmark.extra_info["bytes"] = big.stat().st_size

    def run():
        return python_peak_rss(PRETOKENIZE, str(big), str(tok_dir), str(tmp_path / "o.bin"))

    benchmark.extra_info["peak_rss_mb"] = benchmark.pedantic(run, rounds=1) / 2**20
