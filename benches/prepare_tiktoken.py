"""nanoGPT's `prepare.py`, unchanged, on tiktoken and then on fastgpt through
`fastgpt.patch_tiktoken()`: documents → `encode_ordinary_batch` → + eot → a token memmap.

    python benches/prepare_tiktoken.py [--max_mb 10] [--rounds 3]

The documents are the CPython standard library's .py files (real text that ships with
Python). Offline: tiktoken's cache is pointed at a temporary folder holding cl100k_base's
rank file (from bpe-openai, under tiktoken's own name for it), so `tiktoken.get_encoding`
loads it there as it would after a download. cl100k ids pass 65535, so the memmap is
uint32 (nanoGPT's uint16 holds gpt2's 50257 ids). Prints seconds per run for each and the
speed-up, best of `--rounds`, alternating the two so both see the same machine load.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np


def documents(max_mb: float) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    docs, size = [], 0
    for path in sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts):
        text = path.read_text(encoding="utf-8", errors="replace")
        docs.append(text)
        size += len(text.encode())
        if size >= max_mb * 1e6:
            break
    return docs


def prepare(tiktoken, docs: list[str], out: Path) -> int:
    """The loop of nanoGPT's data/openwebtext/prepare.py, as a tiktoken user writes it."""
    enc = tiktoken.get_encoding("cl100k_base")
    ids = enc.encode_ordinary_batch(docs)
    for doc in ids:
        doc.append(enc.eot_token)
    total = sum(len(doc) for doc in ids)
    arr = np.memmap(out, dtype=np.uint32, mode="w+", shape=(total,))
    pos = 0
    for doc in ids:
        arr[pos : pos + len(doc)] = doc
        pos += len(doc)
    arr.flush()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_mb", type=float, default=10.0, help="megabytes of documents (10)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, alternating (3)")
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="tiktoken-cache-"))
    try:
        run(args, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def run(args: argparse.Namespace, cache: Path) -> None:
    import fastgpt
    from fastgpt.tokenizer import registry

    data, _ = registry.find_rank_file("cl100k_base", registry.CL100K, allow_download=False)
    (cache / hashlib.sha1(registry.CL100K.url.encode()).hexdigest()).write_bytes(data)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    import tiktoken

    docs = documents(args.max_mb)
    mb = sum(len(d.encode()) for d in docs) / 1e6
    tiktoken.get_encoding("cl100k_base")  # both load their rank file before the clock starts
    fastgpt.get_encoding("cl100k_base")
    times: dict[str, list[float]] = {"tiktoken": [], "fastgpt": []}
    outputs = {}
    for _ in range(args.rounds):
        for name in times:
            if name == "fastgpt":
                fastgpt.patch_tiktoken()
            try:
                start = time.perf_counter()
                tokens = prepare(tiktoken, docs, cache / f"{name}.bin")
                times[name].append(time.perf_counter() - start)
            finally:
                fastgpt.unpatch_tiktoken()
            outputs[name] = (cache / f"{name}.bin").read_bytes()
    assert outputs["tiktoken"] == outputs["fastgpt"], "the two .bin files differ"
    best = {name: min(t) for name, t in times.items()}
    print(f"{len(docs)} documents, {mb:.1f} MB, {tokens} tokens, {os.cpu_count()} cores; identical .bin files")
    for name, seconds in best.items():
        print(f"{name:9s} {seconds:6.2f} s  {mb / seconds:6.1f} MB/s")
    print(f"speed-up  {best['tiktoken'] / best['fastgpt']:.1f}x")


if __name__ == "__main__":
    main()
