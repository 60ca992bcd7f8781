"""BPE training time: fastgpt side by side with Hugging Face tokenizers, rustbpe and bpeasy
on the same corpus (about 8 MB of the CPython standard library), split pattern (cl100k) and
vocabulary size (peers skipped if not installed).

    pytest benches/test_bench_train_bpe.py --benchmark-enable

Peak RSS and bytes per token need a process per trainer: benches/train_bpe_peers.py.
"""

from __future__ import annotations

import functools

import pytest

from benchlib import stdlib_sources
from train_bpe_peers import PEERS, train

CORPUS_BYTES = 8_000_000


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "train.txt"
    size = 0
    with open(path, "w", encoding="utf-8") as f:
        for source in stdlib_sources():
            text = source.read_text(encoding="utf-8", errors="replace")
            f.write(text if text.endswith("\n") else text + "\n")
            size += len(text)
            if size >= CORPUS_BYTES:
                break
    return str(path)


@functools.cache
def available(which: str) -> bool:
    module = {"fastgpt": "fastgpt", "hf_tokenizers": "tokenizers", "rustbpe": "rustbpe", "bpeasy": "bpeasy"}[which]
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("vocab_size", [8192, 32768])
@pytest.mark.parametrize("which", PEERS)
def test_train(benchmark, corpus_file, which, vocab_size):
    if not available(which):
        pytest.skip(f"{which} is not installed")
    benchmark.group = f"train-bpe-{vocab_size // 1024}k"
    benchmark.extra_info["bytes"] = len(open(corpus_file, "rb").read())
    benchmark.pedantic(train, args=(which, corpus_file, vocab_size), rounds=1, iterations=1)
