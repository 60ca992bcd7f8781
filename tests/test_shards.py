"""The one sharding layer: shard choice (flags, Slurm), names, completion, executors."""

from __future__ import annotations

import os

import pytest

from fastgpt._util import shards
from fastgpt._util.shards import Shard, completed, manifest_path, piece_path, resolve_shard, shard_path


def test_names_follow_one_scheme(tmp_path):
    assert shard_path("d/train.bin", 3, 8) == shards.Path("d/train.00003-of-00008.bin")
    assert shard_path("c.jsonl", 0, 2).name == "c.00000-of-00002.jsonl"
    assert shard_path("c.jsonl.gz", 1, 2).name == "c.00001-of-00002.jsonl.gz"
    assert piece_path("train.bin", 3).name == "train_000003.bin"
    assert piece_path(shard_path("train.bin", 3, 8), 0).name == "train.00003-of-00008_000000.bin"
    assert manifest_path("out/train.bin") == shards.Path("out/train.bin.done")
    assert Shard().path("x.bin") == shards.Path("x.bin")
    assert Shard(1, 2, sharded=True).path("x.bin").name == "x.00001-of-00002.bin"


def test_shard_from_flags_then_slurm_then_whole(monkeypatch):
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT", raising=False)
    assert resolve_shard() == Shard(0, 1, sharded=False)
    assert resolve_shard(2, 4) == Shard(2, 4, sharded=True)
    assert resolve_shard(world_size=3) == Shard(0, 3, sharded=True)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert resolve_shard() == Shard(1, 3, sharded=True)
    assert resolve_shard(0, 2) == Shard(0, 2, sharded=True), "flags win over the environment"
    assert Shard(1, 3).select(list(range(8))) == [1, 4, 7]
    for rank, world in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match="rank must be in|world_size must be"):
            resolve_shard(rank, world)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "x")
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_ID='x'"):
        resolve_shard()


def test_complete_only_when_every_listed_file_is_whole(tmp_path):
    out = tmp_path / "t.bin"
    parts = [piece_path(out, i) for i in range(3)]
    assert completed(out) is None
    shards.begin(out)
    for p in parts:
        p.write_bytes(b"x" * 10)
    shards.finish(out, parts, {"tokens": 30})
    assert completed(out)["info"] == {"tokens": 30}
    parts[2].write_bytes(b"x" * 9)  # a piece cut short or replaced
    assert completed(out) is None
    parts[2].write_bytes(b"x" * 10)
    parts[1].unlink()
    assert completed(out) is None
    parts[1].write_bytes(b"x" * 10)
    assert completed(out) is not None
    shards.begin(out)  # a restarted shard is not complete until it finishes again
    assert completed(out) is None and not manifest_path(out).exists()
    manifest_path(out).write_text("{not json")
    assert completed(out) is None
    (tmp_path / "side").mkdir()
    (tmp_path / "side" / "rejects.jsonl").write_bytes(b"r")
    shards.finish(out, [*parts, tmp_path / "side" / "rejects.jsonl"], {})
    assert completed(out) is not None
    (tmp_path / "side" / "rejects.jsonl").unlink()
    assert completed(out) is None


def test_begin_removes_dead_temporaries(tmp_path):
    out = tmp_path / "t.bin"
    dead = tmp_path / ".t.bin.tmp-999999999-abcd"
    dead.write_bytes(b"half")
    shards.begin(out)
    assert not dead.exists()


def _square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_local_executor_in_process_and_in_a_pool():
    args = [(i,) for i in range(5)]
    inline = dict(shards.map_unordered(_square, args))
    assert {i: r[0] for i, r in inline.items()} == {i: i * i for i in range(5)}
    assert {r[1] for r in inline.values()} == {os.getpid()}
    warmed = []
    pooled = dict(shards.map_unordered(_square, args, workers=2, before_fork=lambda: warmed.append(1)))
    assert {i: r[0] for i, r in pooled.items()} == {i: i * i for i in range(5)}
    assert os.getpid() not in {r[1] for r in pooled.values()} and warmed == [1]
    with pytest.raises(ValueError, match="backend must be one of local, ray"):
        list(shards.map_unordered(_square, args, backend="slurm"))
