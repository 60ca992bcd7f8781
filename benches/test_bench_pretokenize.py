"""Text → .bin throughput against in-memory batch encoding of the same documents (the bar:
≥ 90%), and peak RSS of pretokenizing growing inputs (the bar: flat).

    pytest benches/test_bench_pretokenize.py --benchmark-enable
"""

from __future__ import annotations

import functools
import subprocess
import sys

import pytest
from references import rank_file, stdlib_sources

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
    summary = benchmark.pedantic(pretokenize, args=(path, tokenizer(), tmp_path / "out.bin"), kwargs={"progress": False}, rounds=3)
    assert summary.tokens > 0


def test_in_memory_batch_encode(benchmark, corpus):
    path, lines = corpus
    benchmark.group = "pretokenize vs in-memory batch encode (cl100k, all threads)"
    benchmark.extra_info["bytes"] = path.stat().st_size
    benchmark.pedantic(tokenizer().encode_ordinary_batch, args=(lines,), rounds=3)


PEAK_RSS = """
import resource, sys
from fastgpt import pretokenize
pretokenize(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.parametrize("copies", [1, 4])
def test_peak_rss_is_flat(benchmark, corpus, tmp_path, copies):
    """The same corpus repeated 1× and 4×: peak RSS should not grow with it."""
    path, _ = corpus
    big = tmp_path / "big.txt"
    big.write_bytes(path.read_bytes() * copies)
    tok_dir = tokenizer().save(tmp_path / "tok")
    benchmark.group = "pretokenize peak RSS"
    benchmark.extra_info["bytes"] = big.stat().st_size

    def run():
        out = subprocess.run([sys.executable, "-c", PEAK_RSS, str(big), str(tok_dir), str(tmp_path / "o.bin")], capture_output=True, text=True, check=True)
        return int(out.stdout)

    benchmark.extra_info["peak_rss_mb"] = benchmark.pedantic(run, rounds=1) / 1024
