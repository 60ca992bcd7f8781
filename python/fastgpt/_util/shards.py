"""Where corpus work runs and how its outputs are named and known to be done.

One layer for every sharded job (`pretokenize`, `cc extract`, ...), kept apart from
*what* the job does, as datatrove keeps executors apart from pipeline steps:

- **Which shard**: `resolve_shard(rank, world_size)` takes the flags, else a Slurm
  job array's variables, else the whole job (rank 0 of 1). `Shard.select` picks every
  `world_size`-th input starting at `rank`: deterministic, so a rerun redoes the same work.
- **Names** (the one scheme): shard `rank` of `world_size` of `train.bin` is
  `train.00003-of-00008.bin` (`shard_path`); an output cut into pieces of a fixed size
  (`--shard_tokens`) is `train_000000.bin`, `train_000001.bin`, ... (`piece_path`, llm.c's
  naming); both together give `train.00003-of-00008_000000.bin`.
- **Completion** (the one rule): a shard is complete when its manifest
  `NAME.done` (JSON, written atomically after every output file is in place) exists and
  every file it lists exists with the size it records (`completed`). Starting a shard
  first deletes its manifest (`begin`), so a run killed at any point never looks complete,
  and sharded reruns skip exactly the shards whose manifest holds.
- **Where it runs**: `map_unordered` runs a function over items in this process, a local
  process pool, or as Ray tasks, yielding (index, result) as each finishes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fastgpt._util.atomic import atomic_path, remove_stale

T = TypeVar("T")
R = TypeVar("R")

BACKENDS = ("local", "ray")
COMPRESSED = (".gz", ".zst", ".bz2", ".xz")
MANIFEST_SUFFIX = ".done"


@dataclass(frozen=True)
class Shard:
    """Shard `rank` of `world_size`; `sharded` is False for a whole, unsharded job."""

    rank: int = 0
    world_size: int = 1
    sharded: bool = False

    def select(self, items: Sequence[T]) -> list[T]:
        """This shard's items: every `world_size`-th one from `rank`."""
        return list(items[self.rank :: self.world_size])

    def path(self, output: str | os.PathLike[str]) -> Path:
        """This shard's output name (the output itself when the job is not sharded)."""
        return shard_path(output, self.rank, self.world_size) if self.sharded else Path(output)


def slurm_shard(environ: dict[str, str] | None = None) -> tuple[int, int] | None:
    """(rank, world_size) of this Slurm job-array task, or None outside one."""
    env = os.environ if environ is None else environ
    task, count = env.get("SLURM_ARRAY_TASK_ID"), env.get("SLURM_ARRAY_TASK_COUNT")
    if task is None or count is None:
        return None
    try:
        return int(task) - int(env.get("SLURM_ARRAY_TASK_MIN", "0")), int(count)
    except ValueError:
        raise ValueError(f"SLURM_ARRAY_TASK_ID={task!r}, SLURM_ARRAY_TASK_COUNT={count!r}: not integers") from None


def resolve_shard(rank: int | None = None, world_size: int | None = None) -> Shard:
    """The shard from the flags, else from a Slurm job array, else the whole job."""
    if rank is None and world_size is None:
        slurm = slurm_shard()
        if slurm is None:
            return Shard()
        rank, world_size = slurm
    rank = 0 if rank is None else rank
    world_size = 1 if world_size is None else world_size
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..world_size-1, got rank {rank} of {world_size}")
    return Shard(rank, world_size, sharded=True)


def _split_suffix(name: str) -> tuple[str, str]:
    """`train.bin` → (`train`, `.bin`); `c.jsonl.gz` → (`c`, `.jsonl.gz`): a compression suffix stays with its format."""
    path = Path(name)
    suffix = path.suffix
    if suffix in COMPRESSED and Path(path.stem).suffix:
        suffix = Path(path.stem).suffix + suffix
    return name[: len(name) - len(suffix)], suffix


def shard_path(output: str | os.PathLike[str], rank: int, world_size: int) -> Path:
    """`train.bin` → `train.00003-of-00008.bin`: shard `rank` of `world_size`."""
    output = Path(output)
    stem, suffix = _split_suffix(output.name)
    return output.with_name(f"{stem}.{rank:05d}-of-{world_size:05d}{suffix}")


def piece_path(output: str | os.PathLike[str], index: int) -> Path:
    """`train.bin` → `train_000003.bin`: piece `index` of an output cut into fixed-size pieces."""
    output = Path(output)
    stem, suffix = _split_suffix(output.name)
    return output.with_name(f"{stem}_{index:06d}{suffix}")


def manifest_path(output: str | os.PathLike[str]) -> Path:
    """The completion manifest of `output`: `train.bin` → `train.bin.done`."""
    output = Path(output)
    return output.with_name(output.name + MANIFEST_SUFFIX)


def completed(output: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of `output` if the shard is complete (every listed file present with its
    recorded size), else None."""
    manifest = manifest_path(output)
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        files = data["files"]
        for entry in files:
            if (manifest.parent / entry["name"]).stat().st_size != entry["bytes"]:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def begin(output: str | os.PathLike[str]) -> None:
    """Start (or restart) the shard writing `output`: it stops counting as complete, and
    temporaries that killed runs left for it are deleted."""
    manifest_path(output).unlink(missing_ok=True)
    remove_stale(output)


def finish(output: str | os.PathLike[str], files: Sequence[str | os.PathLike[str]], info: dict[str, Any]) -> Path:
    """Mark `output` complete: write its manifest listing `files` (already in place, with
    their sizes) and `info`."""
    manifest = manifest_path(output)
    entries = []
    for f in files:
        # Relative to the manifest, so a finished output directory can be moved as a whole.
        entries.append({"name": os.path.relpath(f, manifest.parent), "bytes": os.stat(f).st_size})
    with atomic_path(manifest) as tmp:
        tmp.write_text(json.dumps({"files": entries, "info": info}, indent=1) + "\n", encoding="utf-8")
    return manifest


def ray_init(address: str | None = None) -> Any:
    """Ray, connected to `address` (default: $RAY_ADDRESS, else a local cluster), or a clear error."""
    try:
        import ray
    except ImportError:
        raise ValueError("backend 'ray' needs Ray: pip install 'fastgpt[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    return ray


def map_unordered(
    fn: Callable[..., R],
    args: Sequence[tuple[Any, ...]],
    *,
    backend: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    before_fork: Callable[[], object] | None = None,
) -> Iterator[tuple[int, R]]:
    """`fn(*args[i])` for every i, yielded as (i, result) in the order they finish.

    `local` with one worker (or one item) runs in this process; with more, in a process
    pool, forked so what `before_fork` loads (a model) is shared, or spawned when a Ray
    client runs here (fork would copy its threads mid-state). `ray` runs one task per item.
    """
    if backend == "ray":
        ray = ray_init(ray_address)
        task = ray.remote(num_cpus=1)(fn)
        refs = {task.remote(*a): i for i, a in enumerate(args)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield refs[ref], ray.get(ref)
        return
    if backend != "local":
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if workers <= 1 or len(args) <= 1:
        for i, a in enumerate(args):
            yield i, fn(*a)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ray = sys.modules.get("ray")
    ctx: multiprocessing.context.BaseContext
    if ray is not None and ray.is_initialized():
        ctx = multiprocessing.get_context("spawn")
    else:
        if before_fork is not None:
            before_fork()
        ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(workers, len(args)), mp_context=ctx) as pool:
        futures = {pool.submit(fn, *a): i for i, a in enumerate(args)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
