"""`fastgpt split`: a shuffled train/eval split of a one-document-per-line corpus, streaming.

The side of a document is decided by a seeded hash of its text, so identical documents
always land on the same side and the split does not depend on input order or size.
Shuffling goes through bucket files on disk (each small enough to shuffle in memory), so
the corpus is never held in RAM whole. The same seed gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil

from fastgpt._util.atomic import atomic_path, remove_stale, temp_name


def _is_jsonl(path: str) -> bool:
    return path.endswith((".jsonl", ".json"))


def _doc_text(line: str, jsonl: bool, where: str) -> str:
    if not jsonl:
        return line
    try:
        return json.loads(line)["text"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f'{where}: not a JSON object with a "text" field') from None


def _format(line: str, text: str, in_jsonl: bool, out_jsonl: bool) -> str:
    if in_jsonl == out_jsonl:
        return line
    if out_jsonl:
        return json.dumps({"text": text}, ensure_ascii=False)
    return text.replace("\n", "\\n")  # the .txt convention of cc extract: one line per document


def split(inputs, train: str, eval: str, eval_fraction: float = 0.01, seed: int = 0, memory_mb: int = 512) -> dict:
    """Split the documents of `inputs` (.jsonl or .txt) into shuffled `train` and `eval` files."""
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1], got {eval_fraction}")
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    total = sum(os.path.getsize(p) for p in inputs)
    # Buckets of about memory_mb / 2 each: a bucket plus its shuffled list fit in memory_mb.
    n_buckets = max(1, -(-total // (max(1, memory_mb) << 19)))
    threshold = int(eval_fraction * (1 << 64))
    key = seed.to_bytes(8, "little", signed=True)
    outs = {"train": train, "eval": eval}
    counts = {"train": 0, "eval": 0}
    for out in outs.values():
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    # Scratch space named as atomic.py names temporaries, so a killed run's is cleaned on rerun.
    remove_stale(train)
    tmpdir = temp_name(train)
    tmpdir.mkdir()
    try:
        buckets = {
            (side, b): open(os.path.join(tmpdir, f"{side}-{b}"), "w", encoding="utf-8")
            for side in outs
            for b in range(n_buckets)
        }
        for path in inputs:
            in_jsonl = _is_jsonl(path)
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    line = line.rstrip("\n")
                    if not line.strip():
                        continue
                    text = _doc_text(line, in_jsonl, f"{path}:{lineno}")
                    h = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16, key=key).digest(), "little")
                    side = "eval" if (h & ((1 << 64) - 1)) < threshold else "train"
                    out_line = _format(line, text, in_jsonl, _is_jsonl(outs[side]))
                    buckets[side, (h >> 64) % n_buckets].write(out_line + "\n")
                    counts[side] += 1
        for f in buckets.values():
            f.close()
        for side, dest in outs.items():
            with atomic_path(dest) as tmp, open(tmp, "w", encoding="utf-8") as result:
                for b in range(n_buckets):
                    with open(os.path.join(tmpdir, f"{side}-{b}"), encoding="utf-8") as f:
                        lines = f.readlines()
                    random.Random(f"{seed}-{side}-{b}").shuffle(lines)
                    result.writelines(lines)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return {"train": counts["train"], "eval": counts["eval"], "buckets": n_buckets}
