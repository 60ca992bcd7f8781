"""Columnar corpora: Parquet files (FineWeb, DCLM, The Stack...), Arrow files of a Hugging
Face `datasets` cache, and in-memory `datasets.Dataset` / `IterableDataset` / iterables of
str or dicts. Each row is one document, its text in one string column (`text_field`).

Files are read by row group, in record batches of about `BATCH_ROWS` rows, never whole, so
memory is bounded by a row group whatever the file size. A row group is also the unit
that splits one big Parquet file across workers (`work_units`; `fastgpt._util.shards`
picks a shard's units).

Bad input is an error naming the file, never a silent skip: a missing column names the
columns the file has; a column that is not text, or a null in it, names the column (and the
row); a truncated or corrupt file names the file and what pyarrow could not read. Empty
strings are skipped, as empty lines of a text file are.

pyarrow is the `parquet` extra (`pip install 'fastgpt[parquet]'`); without it a Parquet or
Arrow input is one clear error saying so.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastgpt._util.atomic import atomic_path

PARQUET_SUFFIXES = (".parquet", ".pq")
ARROW_SUFFIXES = (".arrow",)
# Files a `datasets` cache or save_to_disk directory holds beside its .arrow files: metadata, not corpus.
DATASETS_METADATA = ("dataset_info.json", "state.json", "dataset_dict.json")
EXTRA_HINT = "pip install 'fastgpt[parquet]'"
# Rows per record batch read: a few MB of typical web documents.
BATCH_ROWS = 1024
# Rows per row group written (FineWeb's files use row groups of about this size).
WRITE_ROWS = 10_000


def require_pyarrow(what: object = "Parquet"):
    """The pyarrow module, or a clear error naming the extra to install."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ValueError(f"{what}: reading or writing Parquet and Arrow files needs pyarrow: {EXTRA_HINT}") from None
    return pyarrow


def is_parquet(path: str | os.PathLike) -> bool:
    return str(path).endswith(PARQUET_SUFFIXES)


def is_arrow(path: str | os.PathLike) -> bool:
    return str(path).endswith(ARROW_SUFFIXES)


def is_columnar(path: str | os.PathLike) -> bool:
    return is_parquet(path) or is_arrow(path)


@dataclass(frozen=True)
class Unit:
    """A piece of work: a whole file, or some row groups (by index) of a Parquet file."""

    path: Path
    row_groups: tuple[int, ...] | None = None


def _open_parquet(path: Path):
    pa = require_pyarrow(path)
    try:
        # Buffered reads without pre-buffering: one page at a time, not a whole column chunk.
        return pa.parquet.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable Parquet file: {exc}") from None


def _open_arrow(path: Path):
    """(schema, record batches) of an Arrow IPC file or stream (`datasets` writes streams).
    Batches are read from the file one at a time, not memory-mapped, so a large file does not
    pile up in memory; the file closes when the batches are exhausted."""
    pa = require_pyarrow(path)
    source = pa.OSFile(str(path))
    try:
        try:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_stream(source)
            batches = iter(reader)
    except (pa.ArrowException, OSError) as exc:
        source.close()
        raise ValueError(f"{path}: not a readable Arrow file: {exc}") from None

    def closing():
        try:
            yield from batches
        finally:
            source.close()

    return reader.schema, closing()


def _check_column(path: Path, schema, field: str) -> None:
    pa = require_pyarrow(path)
    if field not in schema.names:
        raise ValueError(
            f"{path}: no column {field!r}; the columns are {', '.join(schema.names)} (use --text_field to name one)"
        )
    kind = schema.field(field).type
    is_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or is_view(kind)):
        raise ValueError(f"{path}: column {field!r} holds {kind}, not text (use --text_field to name a string column)")


def work_units(paths: Iterable[Path]) -> list[Unit]:
    """One unit per row group of each Parquet file (reading only footers), one per other file."""
    units: list[Unit] = []
    for path in paths:
        path = Path(path)
        if is_parquet(path):
            units.extend(Unit(path, (i,)) for i in range(_open_parquet(path).metadata.num_row_groups))
        else:
            units.append(Unit(path))
    return units


def iter_text_arrays(
    path: str | os.PathLike, text_field: str = "text", row_groups: Iterable[int] | None = None
) -> Iterator[Any]:
    """The text column of a Parquet or Arrow file as pyarrow arrays of one record batch each,
    checked for type and nulls. `row_groups` (Parquet only) reads those row groups, in order."""
    path = Path(path)
    pa = require_pyarrow(path)
    try:
        if is_parquet(path):
            pf = _open_parquet(path)
            _check_column(path, pf.schema_arrow, text_field)
            meta = pf.metadata
            starts = [0]
            for i in range(meta.num_row_groups):
                starts.append(starts[-1] + meta.row_group(i).num_rows)
            for group in range(meta.num_row_groups) if row_groups is None else row_groups:
                batches = pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=[text_field])
                yield from _checked(path, batches, text_field, starts[group])
        else:
            if row_groups is not None:
                raise ValueError(f"{path}: only Parquet files split by row groups")
            schema, batches = _open_arrow(path)
            _check_column(path, schema, text_field)
            yield from _checked(path, batches, text_field, 0)
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot read (truncated or corrupt?): {exc}") from None


def _checked(path: Path, batches, text_field: str, row: int) -> Iterator[Any]:
    """The text column of each batch; a null is an error naming its row (from `row`)."""
    for batch in batches:
        column = batch.column(text_field)
        if column.null_count:
            first = column.is_null().to_pylist().index(True)
            raise ValueError(
                f"{path}, row {row + first}: null in column {text_field!r} "
                f"({column.null_count} in this batch); drop or fill nulls first"
            )
        row += len(column)
        yield column


def text_bytes(column) -> int:
    """UTF-8 bytes of the strings in an Arrow string array (string views too, which
    `binary_length` does not take)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.large_string())
    return int(pc.sum(pc.binary_length(column)).as_py() or 0)


def text_export(column) -> tuple[Any, Any] | None:
    """A string or large_string array's (schema, array) capsules of the Arrow C data
    interface, through which `TokenWriter.write_strings` reads its strings in place, with no
    copy and no str per row; None for other layouts (string views)."""
    import pyarrow as pa

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return None
    return column.__arrow_c_array__()


def decoded_texts(column, stats) -> list[str]:
    """The non-empty strings of a text array. pyarrow's Parquet reader does not check that
    strings are UTF-8: invalid bytes become U+FFFD, counted in `stats`, as in text files."""
    try:
        return [t for t in column.to_pylist() if t]
    except UnicodeDecodeError:
        import pyarrow as pa

        from fastgpt.data.inputs import decode

        raw = column.cast(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())
        return [t for b in raw.to_pylist() if (t := decode(b, stats))]


def iter_records(path: Path, text_field: str, stats) -> Iterator[tuple[str, int, None]]:
    """`fastgpt.data.inputs`' record reader for Parquet and Arrow files: (text, row number from 1,
    None) per row. Each row counts its own UTF-8 bytes, so byte budgets cut between rows."""
    import pyarrow.compute as pc

    stats.files += 1
    row = 0
    for column in iter_text_arrays(path, text_field):
        sizes = pc.binary_length(column).to_pylist()
        for text, size in zip(column.to_pylist(), sizes):
            row += 1
            stats.bytes_read += size
            yield text, row, None


def uncompressed_size(path: str | os.PathLike) -> int:
    """Bytes of a Parquet file's data once decompressed (from its footer)."""
    meta = _open_parquet(Path(path)).metadata
    return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))


# --- in-memory sources: datasets.Dataset, IterableDataset, iterables of str or dicts ---------


def is_hf_dataset(data) -> bool:
    """A `datasets.Dataset` or `IterableDataset` (without importing `datasets` when it is not loaded)."""
    import sys

    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(data, (datasets.Dataset, datasets.IterableDataset))


def iter_source_batches(data, text_field: str = "text", batch_rows: int = BATCH_ROWS) -> Iterator[list[str]]:
    """Lists of texts from a `datasets.Dataset` (its Arrow column, batch by batch: nothing is
    materialised), an `IterableDataset`, or any iterable of str or of dicts holding `text_field`.
    A missing field, a non-string or None text is an error naming the item; empty texts are skipped."""
    import sys

    datasets = sys.modules.get("datasets")
    if datasets is not None and isinstance(data, datasets.Dataset):
        if text_field not in data.column_names:
            raise ValueError(
                f"dataset: no column {text_field!r}; the columns are {', '.join(data.column_names)} "
                "(use text_field= to name one)"
            )
        table = data.select_columns([text_field]).with_format("arrow")
        _check_column(Path("dataset"), table.features.arrow_schema, text_field)
        row = 0
        for batch in table.iter(batch_size=batch_rows):
            column = batch.column(text_field)
            if column.null_count:
                first = column.is_null().to_pylist().index(True)
                raise ValueError(f"dataset, row {row + first}: null in column {text_field!r}; drop or fill nulls first")
            row += len(column)
            yield [t for t in column.to_pylist() if t]
        return
    if datasets is not None and isinstance(data, datasets.IterableDataset):
        if data.column_names is not None and text_field not in data.column_names:
            raise ValueError(
                f"dataset: no column {text_field!r}; the columns are {', '.join(data.column_names)} "
                "(use text_field= to name one)"
            )
        data = iter(data)  # dicts, one per row, streamed
    if isinstance(data, (str, bytes, dict)):
        raise TypeError(f"expected files or an iterable of texts, got a {type(data).__name__}")
    texts: list[str] = []
    for i, item in enumerate(data):
        text = item.get(text_field) if isinstance(item, dict) else item
        if not isinstance(text, str):
            what = f"field {text_field!r} of item {i}" if isinstance(item, dict) else f"item {i}"
            raise TypeError(f"{what} is {type(text).__name__}, not str (texts must be str, or dicts holding them)")
        if text:
            texts.append(text)
            if len(texts) >= batch_rows:
                yield texts
                texts = []
    if texts:
        yield texts


# --- writing -----------------------------------------------------------------------------------


class ParquetRows:
    """Writes dict rows to a Parquet file (zstd, row groups of `WRITE_ROWS`). With `atomic`
    (the default) the file is written under a temporary name and renamed when `close`
    succeeds; `abort` (or an exception in `with`) leaves nothing. Without it the caller
    owns `path` (a temporary of its own). The schema is `schema` if given, else inferred
    from the first row group."""

    def __init__(self, path: str | os.PathLike, schema=None, row_group_rows: int = WRITE_ROWS, atomic: bool = True):
        self._pa = require_pyarrow(path)
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self._pending: list[dict] = []
        self._group = row_group_rows
        self._writer: Any = None
        self._atomic = atomic_path(self.path) if atomic else None
        self._tmp = self._atomic.__enter__() if self._atomic is not None else self.path

    def write(self, row: dict) -> None:
        self._pending.append(row)
        if len(self._pending) >= self._group:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        pa = self._pa
        try:
            table = pa.Table.from_pylist(self._pending, schema=self.schema)
        except (pa.ArrowException, TypeError) as exc:
            raise ValueError(f"{self.path}: rows do not fit the columns {self.schema}: {exc}") from None
        if self._writer is None:
            self.schema = table.schema
            self._writer = pa.parquet.ParquetWriter(self._tmp, self.schema, compression="zstd")
        self._writer.write_table(table, row_group_size=self._group)
        self.rows += len(self._pending)
        self._pending = []

    def close(self) -> None:
        try:
            self._flush()
            if self._writer is None:  # no rows: an empty file with the schema (or just a text column)
                schema = self.schema or self._pa.schema([("text", self._pa.string())])
                self._writer = self._pa.parquet.ParquetWriter(self._tmp, schema, compression="zstd")
            self._writer.close()
        except BaseException as exc:
            if self._atomic is not None:
                self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if self._atomic is not None:
            self._atomic.__exit__(None, None, None)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._atomic is not None:
            # Thrown into atomic_path, which deletes the temporary and hands the exception back.
            err = RuntimeError("aborted")
            self._atomic.__exit__(RuntimeError, err, None)

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def read_schema(path: str | os.PathLike):
    """The Arrow schema of a Parquet file (its footer only)."""
    return _open_parquet(Path(path)).schema_arrow


def iter_rows(path: str | os.PathLike, text_field: str = "text") -> Iterator[dict]:
    """The rows of a Parquet or Arrow file as dicts (all columns), checked like `iter_text_arrays`
    for the text column, batch by batch."""
    path = Path(path)
    pa = require_pyarrow(path)
    if is_parquet(path):
        pf = _open_parquet(path)
        _check_column(path, pf.schema_arrow, text_field)
        batches = pf.iter_batches(batch_size=BATCH_ROWS)
    else:
        schema, batches = _open_arrow(path)
        _check_column(path, schema, text_field)
    row = 0
    try:
        for batch in batches:
            column = batch.column(text_field)
            if column.null_count:
                first = column.is_null().to_pylist().index(True)
                raise ValueError(f"{path}, row {row + first}: null in column {text_field!r}; drop or fill nulls first")
            row += batch.num_rows
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path}: cannot read (truncated or corrupt?): {exc}") from None
