"""`fastgpt split`: a shuffled train/eval split of a corpus, streaming.

Inputs are files, globs or directories of `.txt` (one document per line), `.jsonl` and
`.parquet` / `.arrow` (one document per row); outputs are `.txt`, `.jsonl` or `.parquet`,
converted as needed (a JSON record or Parquet row keeps all its fields when the output
holds fields, `.jsonl` or `.parquet`; `.txt` keeps the text only).

The side of a document is decided by a seeded hash of its text, so identical documents
always land on the same side and the split does not depend on input order or size.
Shuffling goes through bucket files on disk (each small enough to shuffle in memory), so
the corpus is never held in RAM whole. The same seed gives the same documents in the same
order, whatever the output format.
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
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fastgpt._util.atomic import atomic_path
from fastgpt.data import inputs as corpus
from fastgpt.data import parquet


def _kind(path: str | os.PathLike) -> str:
    """The format of a file: txt, jsonl or parquet (an Arrow input reads as Parquet does)."""
    if parquet.is_columnar(path):
        return "parquet"
    return "jsonl" if corpus.is_jsonl(Path(path)) else "txt"


def _documents(path: Path, text_field: str, stats: corpus.CorpusStats) -> Iterator[tuple[str, str | dict]]:
    """(text, record) per document: the line for .txt and .jsonl, the row dict for Parquet."""
    kind = _kind(path)
    if kind == "parquet":
        for row in parquet.iter_rows(path, text_field):
            if row[text_field]:
                yield row[text_field], row
        return
    for lineno, line in enumerate(corpus.iter_lines(path, stats), 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if kind == "txt":
            yield line, line
            continue
        try:
            text = json.loads(line)[text_field]
        except (ValueError, KeyError, TypeError):
            text = None
        if not isinstance(text, str):
            raise ValueError(f'{path}:{lineno}: not a JSON object with a string "{text_field}" field') from None
        if text:  # empty documents are dropped, as from Parquet and by pretokenize
            yield text, line


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


def _convert(text: str, record: str | dict, kind_in: str, kind_out: str, text_field: str):
    """The document as the output wants it: a line (.txt, .jsonl) or a row dict (.parquet)."""
    if kind_out == "txt":
        return record if kind_in == "txt" else text.replace("\n", "\\n")  # the .txt convention of cc extract
    if kind_out == "jsonl":
        if kind_in == "jsonl":
            return record
        if kind_in == "txt":
            return json.dumps({text_field: text}, ensure_ascii=False)
        return json.dumps(record, ensure_ascii=False, default=_json_value)
    if kind_in == "txt":
        return {text_field: text}
    return json.loads(record) if kind_in == "jsonl" else record


def _input_bytes(path: Path) -> int:
    """The in-memory size of a file's documents, about (Parquet: uncompressed, from the footer)."""
    if parquet.is_parquet(path):
        return parquet.uncompressed_size(path)
    return path.stat().st_size


def split(
    inputs,
    train: str,
    eval: str,
    eval_fraction: float = 0.01,
    seed: int = 0,
    memory_mb: int = 512,
    text_field: str = "text",
) -> dict:
    """Split the documents of `inputs` (.txt, .jsonl, .parquet, .arrow; files, globs or
    directories) into shuffled `train` and `eval` files (.txt, .jsonl or .parquet)."""
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1], got {eval_fraction}")
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    paths = corpus.expand_inputs(inputs)
    outs = {"train": train, "eval": eval}
    kinds = {side: _kind(dest) for side, dest in outs.items()}
    for dest in outs.values():
        if any(Path(dest).resolve() == p.resolve() for p in paths):
            raise ValueError(f"{dest}: the output would overwrite an input")
        if parquet.is_arrow(dest):
            raise ValueError(f"{dest}: write .parquet, .jsonl or .txt (Arrow files are inputs only)")
        if _kind(dest) == "parquet":
            parquet.require_pyarrow(dest)
    # Parquet output keeps the input's columns when all inputs are Parquet with one schema.
    schemas = {str(parquet.read_schema(p)) for p in paths if parquet.is_parquet(p)}
    schema = parquet.read_schema(paths[0]) if len(schemas) == 1 and all(map(parquet.is_parquet, paths)) else None
    total = sum(_input_bytes(p) for p in paths)
    # Buckets of about memory_mb / 2 each: a bucket plus its shuffled list fit in memory_mb.
    n_buckets = max(1, -(-total // (max(1, memory_mb) << 19)))
    threshold = int(eval_fraction * (1 << 64))
    key = seed.to_bytes(8, "little", signed=True)
    counts = {"train": 0, "eval": 0}
    stats = corpus.CorpusStats()
    for out in outs.values():
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmpdir = tempfile.mkdtemp(prefix=".split-", dir=os.path.dirname(os.path.abspath(train)))
    try:
        # Row dicts (for Parquet) are pickled, so every column type survives; lines are text.
        buckets = {
            (side, b): open(os.path.join(tmpdir, f"{side}-{b}"), "wb" if kinds[side] == "parquet" else "w")
            for side in outs
            for b in range(n_buckets)
        }
        for path in paths:
            kind_in = _kind(path)
            for text, record in _documents(path, text_field, stats):
                h = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16, key=key).digest(), "little")
                side = "eval" if (h & ((1 << 64) - 1)) < threshold else "train"
                out = _convert(text, record, kind_in, kinds[side], text_field)
                bucket = buckets[side, (h >> 64) % n_buckets]
                if kinds[side] == "parquet":
                    pickle.dump(out, bucket, protocol=pickle.HIGHEST_PROTOCOL)
                else:
                    bucket.write(out + "\n")
                counts[side] += 1
        for f in buckets.values():
            f.close()
        for side, dest in outs.items():
            if kinds[side] == "parquet":
                _write_parquet(tmpdir, side, dest, n_buckets, seed, schema)
                continue
            with atomic_path(dest) as tmp, open(tmp, "w", encoding="utf-8") as out:
                for b in range(n_buckets):
                    with open(os.path.join(tmpdir, f"{side}-{b}"), encoding="utf-8") as f:
                        lines = f.readlines()
                    random.Random(f"{seed}-{side}-{b}").shuffle(lines)
                    out.writelines(lines)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return {"train": counts["train"], "eval": counts["eval"], "buckets": n_buckets}


def _write_parquet(tmpdir: str, side: str, dest: str, n_buckets: int, seed: int, schema) -> None:
    with parquet.ParquetRows(dest, schema) as out:
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
