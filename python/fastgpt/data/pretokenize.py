"""Corpus → `.bin` token files, on all cores, in constant memory.

    >>> from fastgpt import pretokenize
    >>> pretokenize(["data/train.txt"], "artifacts/tokenizer", "data/train.bin")   # doctest: +SKIP
    PretokenizeSummary(outputs=['data/train.bin'], documents=..., tokens=..., ...)

Documents are read in Python (a background thread, so reading overlaps encoding) and
encoded in Rust with the GIL released, in batches of about `batch_bytes`; memory stays
bounded by a few batches whatever the corpus size. Each document is followed by the
end-of-text token. Output is written under a temporary name and renamed when complete.

Beyond one machine, `rank`/`world_size` (or Slurm's array variables) pick shard `rank`
of the inputs, written to its own numbered output; a shard whose completion manifest holds
is skipped, so a rerun after a crash resumes. `backend="ray"` runs every shard as a Ray
task. Shard choice, names and completion are `fastgpt._util.shards`'. The units shards
take are files, and a Parquet file's row groups, so one big Parquet file spreads over workers.

`inputs` may also be a `datasets.Dataset` / `IterableDataset` or any iterable of str or of
dicts holding `text_field`, streamed batch by batch (see `fastgpt.data.parquet`).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from fastgpt import _core
from fastgpt._util import shards
from fastgpt._util.atomic import check_writable, remove_stale
from fastgpt.data import parquet
from fastgpt.data.inputs import (
    COMPRESSED_SUFFIXES,
    DOC_SEPS,
    CorpusStats,
    DocSep,
    base_name,
    batched,
    check_outputs,
    decode,
    expand_inputs,
    has_records,
    iter_blocks,
    iter_documents,
    iter_raw_blocks,
    safe_runs,
)
from fastgpt.tokenizer import Tokenizer

BATCH_BYTES = 2 << 20  # per Rust call: enough to keep the cores busy; memory is a few of these
# A whole-file document is encoded in runs of about this size (see `_file_chunks`).
CHUNK_BYTES = 1 << 20


@dataclasses.dataclass
class PretokenizeSummary:
    outputs: list[str]
    files: int
    documents: int
    bytes: int
    tokens: int
    seconds: float
    invalid_utf8: int = 0
    skipped: bool = False

    @classmethod
    def combine(cls, parts: list[PretokenizeSummary], seconds: float) -> PretokenizeSummary:
        """One summary of several shards run at once (`seconds`: the wall time of all)."""
        return cls(
            [o for p in parts for o in p.outputs],
            sum(p.files for p in parts),
            sum(p.documents for p in parts),
            sum(p.bytes for p in parts),
            sum(p.tokens for p in parts),
            seconds,
            sum(p.invalid_utf8 for p in parts),
            skipped=all(p.skipped for p in parts),
        )

    @property
    def mb_per_s(self) -> float:
        return self.bytes / max(self.seconds, 1e-9) / 1e6

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def default_output(path: Path, fmt: str = "bin") -> Path:
    """`data/train.txt.gz` → `data/train.bin`."""
    return path.with_name(Path(base_name(path)).stem + f".{fmt}")


def pretokenize(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike | Iterable,
    tokenizer: Tokenizer | str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    format: str = "bin",
    doc_sep: str = "line",
    text_field: str = "text",
    threads: int | None = None,
    shard_tokens: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    backend: str = "local",
    overwrite: bool = False,
    progress: bool = True,
    batch_bytes: int = BATCH_BYTES,
) -> PretokenizeSummary:
    """Encodes `inputs` (files, globs, directories of .txt/.jsonl, optionally .gz/.zst, and
    .parquet/.arrow with the text in column `text_field`) into `output` (default: the first
    input with a `.bin` suffix). `inputs` may instead be a `datasets.Dataset`, an
    `IterableDataset` or an iterable of str or dicts (then `output` is required). Returns a
    summary (of every shard together with `backend="ray"`). A sharded run skips a complete
    shard unless `overwrite`."""
    from fastgpt.tokenizer.bpe_train import is_file_inputs

    if not is_file_inputs(inputs):
        return _pretokenize_source(
            inputs, tokenizer, output, format, doc_sep, text_field, threads, shard_tokens, rank, world_size, backend,
            overwrite, progress, batch_bytes,
        )  # fmt: skip
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = expand_inputs(inputs)
    if format not in ("bin", "pt"):
        raise ValueError(f"format must be 'bin' or 'pt', got {format!r}")
    if doc_sep not in DOC_SEPS:
        raise ValueError(f"doc_sep must be one of {', '.join(DOC_SEPS)}, got {doc_sep!r}")
    if shard_tokens is not None and (shard_tokens < 1 or format != "bin"):
        raise ValueError(f"shard_tokens must be a positive count and needs format='bin', got {shard_tokens}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    output = Path(output) if output is not None else default_output(paths[0], format)
    check_outputs({"the output": output}, paths)
    check_writable(output)
    tokenizer_dir = None if isinstance(tokenizer, Tokenizer) else tokenizer
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.load(tokenizer)
    options: dict[str, Any] = dict(
        format=format,
        doc_sep=doc_sep,
        text_field=text_field,
        threads=threads,
        shard_tokens=shard_tokens,
        batch_bytes=batch_bytes,
    )

    if backend == "ray":
        if tokenizer_dir is None:
            raise ValueError("backend='ray' needs the tokenizer as a path, so workers can load it")
        # By default one shard per unit: a file, or a row group of a Parquet file.
        world_size = world_size or len(parquet.work_units(paths))
        return _run_ray(paths, str(tokenizer_dir), output, world_size, dict(options, overwrite=overwrite))
    if backend not in shards.BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(shards.BACKENDS)}, got {backend!r}")
    shard = shards.resolve_shard(rank, world_size)
    if not shard.sharded:
        return _pretokenize([parquet.Unit(p) for p in paths], tok, output, progress=progress, **options)
    output = shard.path(output)
    if not overwrite and (done := shards.completed(output)) is not None:
        return PretokenizeSummary(
            [str(output.parent / f["name"]) for f in done["files"]], 0, 0, 0, 0, 0.0, skipped=True
        )
    units = parquet.work_units(paths)
    if not (mine := shard.select(units)):
        raise ValueError(
            f"shard {shard.rank} of {shard.world_size} has no input (only {len(units)} files and Parquet row groups)"
        )
    shards.begin(output)
    summary = _pretokenize(mine, tok, output, progress=progress, **options)
    shards.finish(output, summary.outputs, {"tokens": summary.tokens, "documents": summary.documents})
    return summary


def _pretokenize_source(
    data, tokenizer, output, format, doc_sep, text_field, threads, shard_tokens, rank, world_size, backend,
    overwrite, progress, batch_bytes,
) -> PretokenizeSummary:  # fmt: skip
    """`pretokenize` of a `datasets` dataset or an iterable of texts or dicts. A `datasets.Dataset`
    shards (rank/world_size, Slurm) into contiguous slices of rows."""
    if output is None:
        raise ValueError("output= is required when the inputs are a dataset or an iterable, not files")
    if backend != "local":
        raise ValueError("backend='ray' needs files as inputs (workers read them); save the dataset to Parquet first")
    if format not in ("bin", "pt"):
        raise ValueError(f"format must be 'bin' or 'pt', got {format!r}")
    if shard_tokens is not None and (shard_tokens < 1 or format != "bin"):
        raise ValueError(f"shard_tokens must be a positive count and needs format='bin', got {shard_tokens}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    output = Path(output)
    check_writable(output)
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.load(tokenizer)
    options: dict[str, Any] = dict(
        format=format, doc_sep=doc_sep, text_field=text_field, threads=threads, shard_tokens=shard_tokens,
        batch_bytes=batch_bytes, progress=progress,
    )  # fmt: skip
    shard = shards.resolve_shard(rank, world_size)
    if not shard.sharded:
        return _pretokenize(data, tok, output, **options)
    datasets = sys.modules.get("datasets")
    if datasets is None or not isinstance(data, datasets.Dataset):
        raise ValueError("rank/world_size need files or a datasets.Dataset (which can be sharded) as inputs")
    output = shard.path(output)
    if not overwrite and (done := shards.completed(output)) is not None:
        return PretokenizeSummary(
            [str(output.parent / f["name"]) for f in done["files"]], 0, 0, 0, 0, 0.0, skipped=True
        )
    shards.begin(output)
    mine = data.shard(num_shards=shard.world_size, index=shard.rank, contiguous=True)
    summary = _pretokenize(mine, tok, output, **options)
    shards.finish(output, summary.outputs, {"tokens": summary.tokens, "documents": summary.documents})
    return summary


def _pretokenize(
    units, tok: Tokenizer, output: Path, *, format, doc_sep, text_field, threads, shard_tokens, batch_bytes, progress
) -> PretokenizeSummary:
    """Encodes `units` (a list of `parquet.Unit`: files or row groups) or an in-memory source."""
    from tqdm import tqdm

    check_writable(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(output)
    stats = CorpusStats()
    if isinstance(units, list):
        work = _batches(units, tok, doc_sep, text_field, stats, batch_bytes)
        # Text bytes of compressed or columnar files are not known up front: no total then.
        sized = not any(u.path.name.endswith(COMPRESSED_SUFFIXES) or u.row_groups for u in units)
        total = sum(u.path.stat().st_size for u in units) if sized and not any(map(_columnar, units)) else None
    else:
        work = _source_batches(units, text_field, stats, batch_bytes)
        total = None
    bar = tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=f"pretokenize → {output.name}",
        disable=not progress or not sys.stderr.isatty(),
    )
    start = time.perf_counter()
    chunks: list = []
    if format == "bin":
        sink = _core.TokenWriter(str(output), tok.n_vocab, tok.eot_token, shard_tokens)
    try:
        for item in _prefetch(work):
            if format == "bin" and isinstance(item, (bytes, _Columns)):
                _write_raw(sink, tok, item, stats, threads)
            else:
                texts, ends = _as_texts(item, stats)
                if format == "bin":
                    sink.write_texts(tok._core, texts, ends, threads)
                else:
                    chunks.extend(_encode_pt(tok, texts, ends, threads))
            bar.update(stats.bytes_read - bar.n)
            elapsed = time.perf_counter() - start
            written = sink.num_tokens if format == "bin" else sum(len(c) for c in chunks)
            bar.set_postfix_str(f"{written / max(elapsed, 1e-9) / 1e6:.2f}M tok/s")
        if format == "bin":
            tokens = sink.num_tokens
            outputs = _place(sink.finish(), output, shard_tokens is not None)
        else:
            from fastgpt.data.tokens import write_pt_tokens

            tokens, outputs = write_pt_tokens(output, chunks), [str(output)]
    except BaseException:
        if format == "bin":
            sink.abort()
        raise
    finally:
        bar.close()
    if stats.invalid_utf8:
        print(f"fastgpt: warning: replaced {stats.invalid_utf8} invalid UTF-8 sequences with U+FFFD", file=sys.stderr)
    return PretokenizeSummary(
        outputs, stats.files, stats.documents, stats.bytes_read, tokens, time.perf_counter() - start, stats.invalid_utf8
    )


def _place(temporaries: list[str], output: Path, pieces: bool) -> list[str]:
    """Renames the writer's finished temporaries to their names (`shards.piece_path` for
    pieces), all only once every one is complete, so a failed run leaves none in place."""
    names = [shards.piece_path(output, i) if pieces else output for i in range(len(temporaries))]
    placed: list[Path] = []
    try:
        for tmp, name in zip(temporaries, names):
            os.replace(tmp, name)
            placed.append(name)
    except BaseException:
        for path in [*map(Path, temporaries), *placed]:
            path.unlink(missing_ok=True)
        raise
    return [str(n) for n in names]


def _columnar(unit: parquet.Unit) -> bool:
    return parquet.is_columnar(unit.path)


@dataclasses.dataclass
class _Columns:
    """A work item of Arrow string arrays (of a Parquet or Arrow file): their non-empty
    strings are the documents."""

    arrays: list[Any]


def _columns(path: Path, text_field: str, stats: CorpusStats, row_groups, batch_bytes: int) -> Iterator[_Columns]:
    """The text column of a Parquet or Arrow file in work items of about `batch_bytes`; the
    first is one record batch, so that encoding starts as soon as one is read (the cores
    waited 8-18 ms of a 16 MB file's 55-65 for a first item of two)."""
    stats.files += 1
    arrays: list[Any] = []
    size = 0
    first = True
    for column in parquet.iter_text_arrays(path, text_field, row_groups):
        arrays.append(column)
        size += (n := parquet.text_bytes(column))
        stats.bytes_read += n
        if size >= batch_bytes or first:
            first = False
            yield _Columns(arrays)
            arrays, size = [], 0
    if arrays:
        yield _Columns(arrays)


def _write_raw(sink, tok: Tokenizer, item: bytes | _Columns, stats: CorpusStats, threads) -> None:
    """The documents of a text file's block, or of Arrow arrays, into `sink`, read in Rust
    from their bytes; where those are not UTF-8 (or the arrays are string views), from
    Python strs instead (`_as_texts`: invalid bytes replaced and counted)."""
    try:
        if isinstance(item, bytes):
            stats.documents += sink.write_lines(tok._core, item, threads)[1]
            return
        exports = [parquet.text_export(a) for a in item.arrays]
        if all(e is not None for e in exports):
            stats.documents += sink.write_strings(tok._core, exports, threads)[1]
            return
    except UnicodeDecodeError:  # nothing was written
        pass
    texts, ends = _as_texts(item, stats)
    sink.write_texts(tok._core, texts, ends, threads)


def _as_texts(
    item: bytes | _Columns | tuple[list[str], list[bool]], stats: CorpusStats
) -> tuple[list[str], list[bool]]:
    """A work item's documents as (texts, ends), decoded in Python, invalid UTF-8 replaced."""
    if isinstance(item, bytes):
        return _lines_as_documents(decode(item, stats), stats)
    if isinstance(item, _Columns):
        texts = [t for a in item.arrays for t in parquet.decoded_texts(a, stats)]
        stats.documents += len(texts)
        return texts, [True] * len(texts)
    return item


def _regroup(batches: Iterable[list[str]], batch_bytes: int) -> Iterator[tuple[list[str], list[bool]]]:
    """Lists of documents joined into work items of about `batch_bytes` characters."""
    texts: list[str] = []
    size = 0
    for batch in batches:
        texts.extend(batch)
        size += sum(map(len, batch))
        if size >= batch_bytes:
            yield texts, [True] * len(texts)
            texts, size = [], 0
    if texts:
        yield texts, [True] * len(texts)


def _source_batches(data, text_field: str, stats: CorpusStats, batch_bytes: int):
    for texts, ends in _regroup(parquet.iter_source_batches(data, text_field), batch_bytes):
        stats.documents += len(texts)
        stats.bytes_read += sum(map(len, texts))
        yield texts, ends


def _batches(
    units: list[parquet.Unit], tok: Tokenizer, doc_sep: DocSep, text_field: str, stats: CorpusStats, batch_bytes: int
) -> Iterator[bytes | _Columns | tuple[list[str], list[bool]]]:
    """Work items: a block of a text file's bytes whose non-empty lines are the documents
    (the fast path for one document per line; checked and decoded in Rust), the text column
    of a Parquet or Arrow file (`_Columns`, read in place in Rust), or (texts, ends) where
    `ends[i]` says whether a document ends after `texts[i]`."""
    for path, group in itertools.groupby(units, key=lambda u: u.path):
        if parquet.is_columnar(path):
            # Parquet / Arrow by record batch (a shard's row groups of the file together), not record by record.
            row_groups = [g for u in group for g in u.row_groups or ()] or None
            yield from _columns(path, text_field, stats, row_groups, batch_bytes)
        elif has_records(path) or doc_sep == "blank":
            for batch in batched(iter_documents([path], doc_sep, text_field, stats), batch_bytes):
                yield batch, [True] * len(batch)
        elif doc_sep == "line":
            yield from iter_raw_blocks(path, stats, batch_bytes)
        else:
            texts: list[str] = []
            ends: list[bool] = []
            for chunk, end in _file_chunks(path, stats, chunkable=tok.pattern_name is not None):
                texts.append(chunk)
                ends.append(end)
                if sum(map(len, texts)) >= batch_bytes:
                    yield texts, ends
                    texts, ends = [], []
            if texts:
                yield texts, ends


def _lines_as_documents(block: str, stats: CorpusStats) -> tuple[list[str], list[bool]]:
    """What `write_lines` does in Rust, for the `.pt` path: each non-empty line a document."""
    texts = [doc for line in block.split("\n") if (doc := line.rstrip("\r\n"))]
    stats.documents += len(texts)
    return texts, [True] * len(texts)


def _file_chunks(path: Path, stats: CorpusStats, chunkable: bool) -> Iterator[tuple[str, bool]]:
    """A whole file as one document, as (text, is_last) runs. With a named pattern the
    runs are cut where no piece can cross (`corpus.safe_runs`), so encoding them one by one
    gives the ids of encoding the file at once; a custom pattern gets the file whole."""
    tail, seen = "", False
    for block in iter_blocks(path, stats, CHUNK_BYTES):
        seen = True
        if chunkable:
            tail = yield from _not_last(safe_runs(tail + block, CHUNK_BYTES))
        else:
            tail += block
    if seen:
        stats.documents += 1
        yield tail, True


def _not_last(runs: Iterator[str]):
    """(run, False) for each run of `runs`; returns what `runs` returns."""
    while True:
        try:
            run = next(runs)
        except StopIteration as stop:
            return stop.value
        yield run, False


def _prefetch(batches: Iterator, depth: int = 2) -> Iterator:
    """Runs `batches` in a background thread, `depth` ahead, so reading overlaps encoding."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in batches:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    thread = threading.Thread(target=produce, daemon=True, name="fastgpt-reader")
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def _encode_pt(tok: Tokenizer, texts: list[str], ends: list[bool], threads):
    import numpy as np

    eot = [] if tok.eot_token is None else [tok.eot_token]
    for ids, end in zip(tok.encode_ordinary_batch(texts, num_threads=threads), ends):
        yield np.asarray(ids + eot if end else ids, dtype=np.int64)


def _run_ray(paths, tokenizer_dir: str, output: Path, world_size: int, options: dict) -> PretokenizeSummary:
    start = time.perf_counter()
    args = [([str(p) for p in paths], tokenizer_dir, str(output), r, world_size, options) for r in range(world_size)]
    results = dict(shards.map_unordered(_ray_shard, args, backend="ray"))
    return PretokenizeSummary.combine([results[r] for r in range(world_size)], time.perf_counter() - start)


def _ray_shard(
    paths: list[str], tokenizer_dir: str, output: str, rank: int, world_size: int, options: dict
) -> PretokenizeSummary:
    return pretokenize(paths, tokenizer_dir, output, rank=rank, world_size=world_size, progress=False, **options)
