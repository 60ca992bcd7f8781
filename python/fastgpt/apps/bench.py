"""`fastgpt bench`: encoding and text → .bin throughput and peak RAM, optionally against tiktoken.

    >>> from fastgpt.apps.bench import run_bench, format_table
    >>> results = run_bench("data/sample.txt", "artifacts/tokenizer", compare=["tiktoken"])  # doctest: +SKIP
    >>> print(format_table(results))                                                      # doctest: +SKIP

Three cases, each for fastgpt and, with `compare`, for tiktoken on the same vocabulary:

- `encode, 1 thread`: `encode_ordinary` of the whole input as one string;
- `encode, N threads`: `encode_ordinary_batch` of the input cut into ~16 KB pieces at line ends;
- `text → .bin, N threads`: the input file to a token file, documents as `fastgpt pretokenize`
  reads them (one per line, or per record of a .jsonl), each followed by end-of-text. For
  tiktoken that is the loop a user would write: read, `encode_ordinary_batch`, write numpy.

Every case runs in its own process, so its peak RSS (VmHWM: the interpreter, the input text
and the encoder included) is its own and not the high-water mark of an earlier case.
Times are the best of `iterations` runs, which is the least disturbed by other load.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["BenchResult", "run_bench", "format_table", "results_json", "tiktoken_encoding", "LIBRARIES"]

LIBRARIES = ("fastgpt", "tiktoken")
PIECE_BYTES = 16 << 10  # batch pieces: large enough that per-item overhead is small for both libraries


@dataclass
class BenchResult:
    case: str  # "encode, 1 thread", "encode, 2 threads", "text → .bin, 2 threads"
    library: str
    seconds: float  # best of the iterations
    tokens: int
    bytes: int  # UTF-8 bytes of the text encoded (of the file, for text → .bin)
    peak_rss: int  # bytes: the whole process, input text included

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / max(self.seconds, 1e-9) / 1e6


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use, not all the machine's
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_bench(
    input: str | os.PathLike,
    tokenizer: str | os.PathLike,
    *,
    iterations: int = 3,
    threads: int | None = None,
    compare: list[str] | tuple[str, ...] = (),
    log: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Runs every case for fastgpt and each library in `compare`; returns the results in
    table order. A library that cannot be built on this tokenizer raises ValueError saying why."""
    from fastgpt.tokenizer import Tokenizer

    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    input, tokenizer = Path(input), Path(tokenizer)
    if not input.is_file():
        raise FileNotFoundError(f"--input {input}: no such file")
    if iterations < 1:
        raise ValueError(f"--iterations must be at least 1, got {iterations}")
    threads = default_threads() if threads is None else threads
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    for library in compare:
        if library not in LIBRARIES[1:]:
            raise ValueError(f"--compare {library}: unknown library; choose from {', '.join(LIBRARIES[1:])}")
    Tokenizer.load(tokenizer)  # fail here, with the loader's message, rather than in every worker
    if "tiktoken" in compare:
        tiktoken_encoding(tokenizer)  # the same: say why tiktoken cannot be built before running anything

    cases = [
        ("encode, 1 thread", "single", 1),
        (f"encode, {_threads(threads)}", "batch", threads),
        (f"text → .bin, {_threads(threads)}", "bin", threads),
    ]
    results = []
    for case, op, n in cases:
        for library in ("fastgpt", *compare):
            spec = dict(
                library=library, op=op, input=str(input), tokenizer=str(tokenizer), threads=n, iterations=iterations
            )
            r = BenchResult(case=case, library=library, **_run_worker(spec))
            say(
                f"{case}: {library} {r.mb_per_s:.2f} MB/s, {r.tokens_per_s / 1e6:.3f}M tokens/s, peak RSS {r.peak_rss / 2**20:.0f} MiB"
            )
            results.append(r)
    return results


def _threads(n: int) -> str:
    return f"{n} thread{'s' if n != 1 else ''}"


def _run_worker(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "fastgpt.apps.bench", json.dumps(spec)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ValueError(f"benchmark of {spec['library']} ({spec['op']}) on {spec['input']} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tiktoken_encoding(tokenizer: str | os.PathLike):
    """A `tiktoken.Encoding` with fastgpt's vocabulary: the directory's vocab.tiktoken with the
    pattern and special tokens of its fastgpt.json, or a bare .tiktoken file with the pattern
    fastgpt knows for it. ValueError says why when that cannot be done."""
    from fastgpt.tokenizer import Tokenizer

    path = Path(tokenizer)
    if path.is_dir():
        meta_path, rank_path = path / "fastgpt.json", path / "vocab.tiktoken"
        if not (meta_path.exists() and rank_path.exists()):
            raise ValueError(f"{path}: tiktoken needs vocab.tiktoken and fastgpt.json in the tokenizer directory")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("model") != "ranks":
            raise ValueError(
                f"{path}: a merges-ordered vocabulary (from a tokenizer.json); tiktoken's ids would differ"
            )
        pattern, specials = meta["pattern"]["regex"], meta["special_tokens"]
    elif ".tiktoken" in path.name:
        tok = Tokenizer.load(path)
        rank_path, pattern, specials = path, tok.pattern, tok.special_tokens
    else:
        raise ValueError(f"{path}: tiktoken can be built from a tokenizer directory or a .tiktoken file, not this")
    try:
        import tiktoken
    except ImportError:
        raise ValueError("--compare tiktoken needs tiktoken (pip install tiktoken)") from None
    raw = rank_path.read_bytes()
    if rank_path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in raw.splitlines() if line)}
    try:
        return tiktoken.Encoding(name=path.name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
    except Exception as exc:  # tiktoken's regex engine may reject a custom pattern
        raise ValueError(f"{path}: tiktoken cannot use this vocabulary: {exc}") from None


# ---- the worker: one case, one library, in a fresh process -----------------------------


def _load_text(path: Path) -> str:
    """The input as one string: the file's text, or a .jsonl's records joined by newlines."""
    from fastgpt.data.inputs import has_records, iter_documents, open_binary

    if has_records(path):
        return "\n".join(iter_documents([path]))
    with open_binary(path) as f:
        return f.read().decode("utf-8", errors="replace")


def _pieces(text: str, size: int = PIECE_BYTES) -> list[str]:
    """`text` cut after a newline every `size` characters or so (a piece never splits a line)."""
    pieces, start = [], 0
    while start < len(text):
        cut = text.find("\n", start + size)
        end = len(text) if cut < 0 else cut + 1
        pieces.append(text[start:end])
        start = end
    return pieces


def _tiktoken_to_bin(enc, path: Path, out: Path, threads: int) -> tuple[int, int]:
    """What a user writes with tiktoken: documents → encode_ordinary_batch → numpy → file."""
    import numpy as np

    from fastgpt.data.inputs import CorpusStats, batched, fix_surrogates, iter_documents

    eot = enc._special_tokens.get("<|endoftext|>")  # tiktoken's eot_token property raises when there is none
    dtype = np.uint16 if enc.n_vocab <= 1 << 16 else np.uint32
    stats, tokens = CorpusStats(), 0
    with open(out, "wb") as f:
        f.write(bytes(1024))  # a header's room, as a .bin file has
        for batch in batched(iter_documents([path], stats=stats), 8 << 20):
            for ids in enc.encode_ordinary_batch([fix_surrogates(d) for d in batch], num_threads=threads):
                if eot is not None:
                    ids.append(eot)
                f.write(np.asarray(ids, dtype=dtype).tobytes())
                tokens += len(ids)
    return tokens, stats.bytes_read


def _worker(spec: dict) -> dict:
    import tempfile

    from fastgpt.tokenizer import Tokenizer

    path, op, threads = Path(spec["input"]), spec["op"], spec["threads"]
    if spec["library"] == "fastgpt":
        tok = Tokenizer.load(spec["tokenizer"])
        single, batch = tok.encode_ordinary, lambda texts: tok.encode_ordinary_batch(texts, num_threads=threads)
    else:
        enc = tiktoken_encoding(spec["tokenizer"])
        single, batch = enc.encode_ordinary, lambda texts: enc.encode_ordinary_batch(texts, num_threads=threads)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.bin"
        if op == "bin":
            n_bytes = 0
            if spec["library"] == "fastgpt":
                from fastgpt.data.pretokenize import pretokenize

                def run() -> int:
                    nonlocal n_bytes
                    summary = pretokenize(path, tok, out, threads=threads, progress=False)
                    n_bytes = summary.bytes
                    return summary.tokens
            else:

                def run() -> int:
                    nonlocal n_bytes
                    tokens, n_bytes = _tiktoken_to_bin(enc, path, out, threads)
                    return tokens
        else:
            text = _load_text(path)
            n_bytes = len(text.encode("utf-8"))
            pieces = _pieces(text)

            def run() -> int:
                return len(single(text)) if op == "single" else sum(map(len, batch(pieces)))

        best, tokens = float("inf"), 0
        for _ in range(spec["iterations"]):
            start = time.perf_counter()
            tokens = run()
            best = min(best, time.perf_counter() - start)
    return dict(seconds=best, tokens=tokens, bytes=n_bytes, peak_rss=peak_rss())


def peak_rss() -> int:
    """This process's peak RSS in bytes. On Linux VmHWM: ru_maxrss would also count the
    parent's peak, which the kernel carries over through the fork and exec that started us."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


# ---- the table -------------------------------------------------------------------------


def format_table(results: list[BenchResult]) -> str:
    """A markdown table; fastgpt's rows carry its speed and RAM as multiples of each peer's."""
    rows = [
        "| case | library | tokens/s | MB/s | peak RAM | speed vs peer | RAM vs peer |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_case: dict[str, dict[str, BenchResult]] = {}
    for r in results:
        by_case.setdefault(r.case, {})[r.library] = r
    for case, libs in by_case.items():
        ours = libs.get("fastgpt")
        for r in libs.values():
            speed = ram = ""
            if r is ours:
                peers = [p for p in libs.values() if p is not ours]
                speed = ", ".join(f"{ours.tokens_per_s / p.tokens_per_s:.2f}x {p.library}" for p in peers)
                ram = ", ".join(f"{ours.peak_rss / p.peak_rss:.2f}x {p.library}" for p in peers)
            rows.append(
                f"| {case} | {r.library} | {r.tokens_per_s / 1e6:.3f}M | {r.mb_per_s:.2f} | {r.peak_rss / 2**20:.0f} MiB | {speed} | {ram} |"
            )
    notes = []
    for case, libs in by_case.items():
        counts = {lib: r.tokens for lib, r in libs.items()}
        if len(set(counts.values())) > 1:
            notes.append(
                f"note: {case}: the token counts differ ({', '.join(f'{k} {v:,}' for k, v in counts.items())})"
            )
    return "\n".join(rows + notes)


def results_json(results: list[BenchResult]) -> list[dict]:
    return [{**asdict(r), "tokens_per_s": r.tokens_per_s, "mb_per_s": r.mb_per_s} for r in results]


if __name__ == "__main__":  # a worker: `python -m fastgpt.bench '<spec JSON>'` prints one JSON line
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
