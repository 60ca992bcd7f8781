"""`fastgpt split`: a shuffled train/eval split of a corpus, streaming.

Inputs are read by `fastgpt.data.inputs`, as pretokenize and tokenizer training read them
(files, globs, directories; .txt with one document per line, .jsonl; plain, .gz or .zst).
The side of a document is decided by a seeded hash of its text, so identical documents
always land on the same side and the split does not depend on input order or size.
Shuffling goes through bucket files on disk (each small enough to shuffle in memory), so
the corpus is never held in RAM whole. The same seed gives the same bytes.

Outputs read back as the same documents: `.jsonl` keeps each input record as it was (a
`{"text": ...}` record for a text line), and `.txt` (one document per line) takes only
documents without a line break; any other is an error naming it, never a flattened copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import TextIO

from fastgpt._util.atomic import atomic_path, remove_stale, temp_name
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


def _out_line(doc: Document, jsonl: bool) -> str:
    if jsonl:
        return doc.record if doc.record is not None else json.dumps({"text": doc.text}, ensure_ascii=False)
    if "\n" in doc.text or doc.text.endswith("\r"):
        where = f"{doc.path}, line {doc.line}" if doc.line else str(doc.path)
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
    """Split the documents of `inputs` into shuffled `train` and `eval` files (.txt or .jsonl).
    Returns the document counts, the bucket count and the invalid UTF-8 sequences replaced."""
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1], got {eval_fraction}")
    outs = {"train": Path(train), "eval": Path(eval)}
    for side, path in outs.items():
        if not path.name.endswith((".txt", *JSONL_SUFFIXES)):
            raise ValueError(f"{path}: the --{side} output must end in .txt or .jsonl")
    paths = expand_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)
    check_outputs({f"--{side}": path for side, path in outs.items()}, paths)
    total = sum(p.stat().st_size * (COMPRESSION_GUESS if p.name.endswith(COMPRESSED_SUFFIXES) else 1) for p in paths)
    # Buckets of about memory_mb / 2 each: a bucket plus its shuffled list fit in memory_mb.
    n_buckets = max(1, -(-total // (max(1, memory_mb) << 19)))
    threshold = int(eval_fraction * (1 << 64))
    key = seed.to_bytes(8, "little", signed=True)
    jsonl = {side: _is_jsonl(path) for side, path in outs.items()}
    counts = {"train": 0, "eval": 0}
    stats = CorpusStats()
    for path in outs.values():
        remove_stale(path)  # what a killed split left: its buckets and half-written outputs
    # The buckets are temporaries of the train output, named as every fastgpt temporary is.
    tmpdir = temp_name(outs["train"])
    tmpdir.parent.mkdir(parents=True, exist_ok=True)
    tmpdir.mkdir()
    buckets: dict[tuple[str, int], TextIO] = {}
    try:
        # newline="\n" everywhere: a "\r" inside a document is text, not a line end.
        for side in outs:
            for b in range(n_buckets):
                buckets[side, b] = open(os.path.join(tmpdir, f"{side}-{b}"), "w", encoding="utf-8", newline="\n")
        for doc in read_documents(paths, "line", text_field, stats):
            h = int.from_bytes(hashlib.blake2b(doc.text.encode(), digest_size=16, key=key).digest(), "little")
            side = "eval" if (h & ((1 << 64) - 1)) < threshold else "train"
            buckets[side, (h >> 64) % n_buckets].write(_out_line(doc, jsonl[side]) + "\n")
            counts[side] += 1
        for f in buckets.values():
            f.close()
        with atomic_path(outs["train"]) as train_tmp, atomic_path(outs["eval"]) as eval_tmp:
            for side, tmp in (("train", train_tmp), ("eval", eval_tmp)):
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
