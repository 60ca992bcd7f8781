"""Data loading: training batches from a `.bin` file, fastgpt's `Batches` against the
nanoGPT-style `get_batch` (a fresh `np.memmap` per batch, random offsets, `torch.stack`),
both producing (B, T) int64 tensors on the CPU from the same file.

    pytest benches/test_bench_data.py --benchmark-enable
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastgpt.data.tokens import Batches, TokenDataset, write_tokens  # noqa: E402

TOKENS = 20_000_000
BATCH, SEQ = 64, 256
STEPS = 50


@pytest.fixture(scope="module")
def bin_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.bin"
    write_tokens(path, np.random.default_rng(0).integers(0, 50_000, TOKENS, dtype=np.uint32), vocab_size=50_257)
    return path


def nanogpt_batches(path, steps: int):
    """nanoGPT's train.py get_batch, adapted to skip our 1024-byte header."""
    for _ in range(steps):
        data = np.memmap(path, dtype=np.uint16, mode="r", offset=1024)
        ix = torch.randint(len(data) - SEQ, (BATCH,))
        x = torch.stack([torch.from_numpy(data[i : i + SEQ].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + SEQ].astype(np.int64)) for i in ix])
        yield x, y


def fastgpt_batches(path, steps: int):
    batches = Batches(TokenDataset(path, SEQ), BATCH, seed=0)
    for _ in range(steps):
        yield next(batches)


@pytest.mark.parametrize("which", ["fastgpt", "nanogpt_reference"])
def test_random_batches(benchmark, bin_file, which):
    load = fastgpt_batches if which == "fastgpt" else nanogpt_batches
    benchmark.group = "data loading: random (64, 256) batches from a .bin file"
    benchmark.extra_info["tokens"] = STEPS * BATCH * SEQ

    def run():
        return sum(int(x.shape[0]) for x, _ in load(bin_file, STEPS))

    assert benchmark.pedantic(run, rounds=3, warmup_rounds=1) == STEPS * BATCH
