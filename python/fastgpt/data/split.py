"""`fastgpt split`: a shuffled train/eval split of a corpus, streaming.

Inputs are read by `fastgpt.data.inputs`, as pretokenize and tokenizer training read them
(files, globs, directories; .txt with one document per line, .jsonl; plain, .gz or .zst;
.parquet and .arrow, one document per row, read by `fastgpt.data.parquet`).
The side of a document is decided by a seeded hash of its text, so identical documents
always land on the same side and the split does not depend on input order or size.
Shuffling goes through bucket files on disk (each small enough to shuffle in memory), so
the corpus is never held in RAM whole. The same seed gives the same bytes.

Outputs read back as the same documents: `.jsonl` keeps each input record as it was (a
`{"text": ...}` record for a text line, a Parquet row as a JSON object: timestamps as ISO
text), `.parquet` (zstd) keeps each record's fields as columns (a Parquet input's own
schema when all inputs share one), and `.txt` (one document per line) takes only
documents without a line break; any other is an error naming it, never a flattened copy.
The order of the documents does not depend on the output format.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import os
import pickle
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from fastgpt._util.atomic import atomic_path, remove_stale, temp_name
from fastgpt.data import parquet
from fastgpt.data.inputs import (
    COMPRESSED_SUFFIXES,
    JSONL_SUFFIXES,
    CorpusStats,
    Document,
    check_outputs,
    expand_inputs,
    read_documents,
)

# Compressed inputs are counted at this many times their size when sizing the buckets.
COMPRESSION_GUESS = 4


def _is_jsonl(path: str | os.PathLike) -> bool:
    return str(path).endswith(JSONL_SUFFIXES)


def _kind(path: Path) -> str:
    if parquet.is_parquet(path):
        return "parquet"
    return "jsonl" if _is_jsonl(path) else "txt"


def _documents(path: Path, text_field: str, stats: CorpusStats) -> Iterator[tuple[Document, dict | None]]:
    """(document, row): a Parquet or Arrow file's rows come whole (every column), to be kept."""
    if not parquet.is_columnar(path):
        for doc in read_documents([path], "line", text_field, stats):
            yield doc, None
        return
    stats.files += 1
    for number, row in enumerate(parquet.iter_rows(path, text_field), 1):
        if row[text_field]:
            stats.documents += 1
            yield Document(row[text_field], path, number, None), row


def _json_value(value):
    """JSON for the values a Parquet row may hold that json cannot write."""
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")


def _out_row(doc: Document, row: dict | None) -> dict:
    """The document as a Parquet row: the input row, the JSON record's fields, or just its text."""
    if row is not None:
        return row
    return json.loads(doc.record) if doc.record is not None else {"text": doc.text}


def _out_line(doc: Document, jsonl: bool, row: dict | None = None) -> str:
    if jsonl:
        if row is not None:
            return json.dumps(row, ensure_ascii=False, default=_json_value)
        return doc.record if doc.record is not None else json.dumps({"text": doc.text}, ensure_ascii=False)
    if "\n" in doc.text or doc.text.endswith("\r"):
        unit = "row" if parquet.is_columnar(doc.path) else "line"
        where = f"{doc.path}, {unit} {doc.line}" if doc.line else str(doc.path)
        raise ValueError(
            f"{where}: the document spans lines, and a .txt output holds one document per line; "
            "write .jsonl to keep documents whole"
        )
    return doc.text


def split(
    inputs,
    train: str | os.PathLike,
    eval: str | os.PathLike,
    eval_fraction: float = 0.01,
    seed: int = 0,
    memory_mb: int = 512,
    text_field: str = "text",
) -> dict:
    """Split the documents of `inputs` into shuffled `train` and `eval` files (.txt, .jsonl or .parquet).
    Returns the document counts, the bucket count and the invalid UTF-8 sequences replaced."""
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1], got {eval_fraction}")
    outs = {"train": Path(train), "eval": Path(eval)}
    for side, path in outs.items():
        if not path.name.endswith((".txt", *JSONL_SUFFIXES, ".parquet")):
            raise ValueError(f"{path}: the --{side} output must end in .txt, .jsonl or .parquet")
        if _kind(path) == "parquet":
            parquet.require_pyarrow(path)
    paths = expand_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)
    check_outputs({f"--{side}": path for side, path in outs.items()}, paths)
    total = sum(_size_in_memory(p) for p in paths)
    # Parquet output keeps the input's schema when all inputs are Parquet files with one schema.
    schemas = {str(parquet.read_schema(p)) for p in paths if parquet.is_parquet(p)}
    schema = parquet.read_schema(paths[0]) if len(schemas) == 1 and all(map(parquet.is_parquet, paths)) else None
    # Buckets of about memory_mb / 2 each: a bucket plus its shuffled list fit in memory_mb.
    n_buckets = max(1, -(-total // (max(1, memory_mb) << 19)))
    threshold = int(eval_fraction * (1 << 64))
    key = seed.to_bytes(8, "little", signed=True)
    kinds = {side: _kind(path) for side, path in outs.items()}
    counts = {"train": 0, "eval": 0}
    stats = CorpusStats()
    for path in outs.values():
        remove_stale(path)  # what a killed split left: its buckets and half-written outputs
    # The buckets are temporaries of the train output, named as every fastgpt temporary is.
    tmpdir = temp_name(outs["train"])
    tmpdir.parent.mkdir(parents=True, exist_ok=True)
    tmpdir.mkdir()
    buckets: dict[tuple[str, int], IO[Any]] = {}
    try:
        # newline="\n" everywhere: a "\r" inside a document is text, not a line end.
        for side in outs:
            for b in range(n_buckets):
                name = os.path.join(tmpdir, f"{side}-{b}")
                # Rows for Parquet are pickled, so every column type survives the bucket.
                binary = kinds[side] == "parquet"
                buckets[side, b] = open(name, "wb") if binary else open(name, "w", encoding="utf-8", newline="\n")
        for path in paths:
            for doc, row in _documents(path, text_field, stats):
                h = int.from_bytes(hashlib.blake2b(doc.text.encode(), digest_size=16, key=key).digest(), "little")
                side = "eval" if (h & ((1 << 64) - 1)) < threshold else "train"
                bucket = buckets[side, (h >> 64) % n_buckets]
                if kinds[side] == "parquet":
                    pickle.dump(_out_row(doc, row), bucket, protocol=pickle.HIGHEST_PROTOCOL)
                else:
                    bucket.write(_out_line(doc, kinds[side] == "jsonl", row) + "\n")
                counts[side] += 1
        for f in buckets.values():
            f.close()
        with atomic_path(outs["train"]) as train_tmp, atomic_path(outs["eval"]) as eval_tmp:
            for side, tmp in (("train", train_tmp), ("eval", eval_tmp)):
                if kinds[side] == "parquet":
                    _write_parquet(tmpdir, side, tmp, n_buckets, seed, schema)
                    continue
                with open(tmp, "w", encoding="utf-8", newline="\n") as out:
                    for b in range(n_buckets):
                        with open(os.path.join(tmpdir, f"{side}-{b}"), encoding="utf-8", newline="\n") as f:
                            lines = f.readlines()
                        random.Random(f"{seed}-{side}-{b}").shuffle(lines)
                        out.writelines(lines)
    finally:
        for f in buckets.values():
            f.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
    return {**counts, "buckets": n_buckets, "invalid_utf8": stats.invalid_utf8}


def _size_in_memory(path: Path) -> int:
    """About the bytes of a file's documents once read (Parquet: uncompressed, from its footer)."""
    if parquet.is_parquet(path):
        return parquet.uncompressed_size(path)
    return path.stat().st_size * (COMPRESSION_GUESS if path.name.endswith(COMPRESSED_SUFFIXES) else 1)


def _write_parquet(tmpdir: str | Path, side: str, dest: Path, n_buckets: int, seed: int, schema) -> None:
    """The side's buckets of pickled rows, each shuffled as the text buckets are, into `dest`."""
    with parquet.ParquetRows(dest, schema, atomic=False) as out:
        for b in range(n_buckets):
            rows = []
            with open(os.path.join(tmpdir, f"{side}-{b}"), "rb") as f:
                while True:
                    try:
                        rows.append(pickle.load(f))
                    except EOFError:
                        break
            random.Random(f"{seed}-{side}-{b}").shuffle(rows)
            for row in rows:
                out.write(row)
