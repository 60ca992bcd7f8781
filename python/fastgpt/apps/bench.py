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
import functools
import gc
import gzip
import json
import os
import subprocess
import sys
import tempfile
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


# ---- the encode suite: real documents as users encode them, against the peers ----------
#
# Text of four kinds, cut into documents of about 1 KB, 4 KB and 64 KB. Each round of a
# "first sight" measurement builds a fresh encoder, warms it on other text (holding a piece
# over 64 bytes, so lazily built structures exist), then times documents it has not seen;
# "repeated" times the same documents a second time on the same instance. Single-thread
# runs are pinned to one CPU, since some peers start threads inside `encode`.

DOC_SIZES = {"1KB": 1 << 10, "4KB": 4 << 10, "64KB": 64 << 10}
ROUND_BYTES = 128 << 10  # text timed per round: 128 documents of 1 KB, 32 of 4 KB, 2 of 64 KB
WARM_CHARS = 64 << 10  # the corpus's tail that warms each round's instance, never timed
CORPORA = ("prose", "multilingual", "code", "docs")
VOCABS = ("cl100k_base", "o200k_base")
ENCODE_PEERS = (
    "fastgpt",
    "fastokens",
    "gigatok",
    "gigatoken",
    "snaptokens",
    "quicktok",
    "splintr",
    "tiktoken",
    "rs-bpe",
    "bpe-openai",
    "tokenizers",
)
# Multilingual text: real Common Crawl WET samples (when the project's shared data is there),
# CPython's CJK codec test texts, and the translations of the system's message catalogs.
# The project's real samples sit in shared/ beside the checkout; FASTGPT_WET_SAMPLES points elsewhere.
WET_DIR = Path(
    os.environ.get("FASTGPT_WET_SAMPLES", Path(__file__).resolve().parents[3].parent / "shared" / "data" / "wet")
)
LOCALE_DIR = Path("/usr/share/locale")
LANGUAGES = ("de", "ru", "ja", "zh_CN", "ko", "el", "ar", "hi", "vi", "uk", "tr", "pl", "he", "th", "fr", "es")
CORPUS_BYTES = 2 << 20


class Unavailable(Exception):
    """A peer or corpus that cannot be used here; the message says why."""


def _stdlib() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_sources() -> list[Path]:
    return sorted(p for p in _stdlib().rglob("*.py") if "site-packages" not in p.parts and "test" not in p.parts)


def _until(parts, limit: int) -> str:
    out, size = [], 0
    for part in parts:
        out.append(part)
        size += len(part)
        if size >= limit:
            break
    return "".join(out)


def _docstrings():
    import ast

    for path in _stdlib_sources():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 200:
                    yield doc + "\n\n"


def _wet_texts():
    """The plain text of each conversion record of the WET samples."""
    for path in sorted(WET_DIR.glob("*.warc.wet")) if WET_DIR.is_dir() else []:
        # Decoded from bytes: text mode would turn the format's CRLF separators into LF.
        for record in path.read_bytes().decode("utf-8", errors="replace").split("WARC/1.0")[1:]:
            head, _, body = record.partition("\r\n\r\n")
            if "conversion" in head:
                yield body.strip() + "\n\n"


def _multilingual():
    import gettext

    blocks: list[list[str]] = []
    cjk = _stdlib() / "test" / "cjkencodings"
    if cjk.is_dir():
        blocks.append([p.read_text(encoding="utf-8") for p in sorted(cjk.glob("*-utf8.txt"))])
    for lang in LANGUAGES:
        texts = []
        for path in sorted((LOCALE_DIR / lang / "LC_MESSAGES").glob("*.mo")):
            try:
                with open(path, "rb") as f:
                    catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
            except (OSError, UnicodeDecodeError, KeyError, ValueError):
                continue
            texts += [v + "\n" for k, v in sorted(catalog.items(), key=str) if k and isinstance(v, str) and len(v) > 20]
            if sum(map(len, texts)) > CORPUS_BYTES // len(LANGUAGES):
                break
        blocks.append(texts)
    # Languages interleaved in ~4 KB runs, so that every document mixes a few scripts.
    out, cursors = list(_wet_texts()), [0] * len(blocks)
    while any(c < len(b) for c, b in zip(cursors, blocks)):
        for i, block in enumerate(blocks):
            run = 0
            while cursors[i] < len(block) and run < 4096:
                out.append(block[cursors[i]])
                run += len(block[cursors[i]])
                cursors[i] += 1
    return out


@functools.cache
def corpus_text(kind: str) -> str:
    """About 2 MB of real text of one kind. Unavailable when this machine lacks it."""
    if kind == "prose":  # English prose: the standard library's long docstrings
        text = _until(_docstrings(), CORPUS_BYTES)
    elif kind == "code":  # Python source
        text = _until((p.read_text(encoding="utf-8", errors="replace") for p in _stdlib_sources()), CORPUS_BYTES)
    elif kind == "docs":  # markup and docs: pydoc's reStructuredText-flavoured topic pages
        try:
            from pydoc_data.topics import topics
        except ImportError:
            raise Unavailable("pydoc_data is not installed with this Python") from None
        idle = _stdlib() / "idlelib"  # and IDLE's HTML help and text files
        extra = [
            p.read_text(encoding="utf-8", errors="replace")
            for p in [idle / "help.html", *sorted(idle.glob("*.txt"))]
            if p.exists()
        ]
        text = "\n\n".join([topics[k] for k in sorted(topics)] + extra)
    elif kind == "multilingual":
        text = _until(_multilingual(), CORPUS_BYTES)
    else:
        raise ValueError(f"unknown corpus {kind!r}; choose from {', '.join(CORPORA)}")
    if len(text.encode()) < 5 * ROUND_BYTES:  # the warm-up, a spare document and 3 rounds
        raise Unavailable(f"only {len(text.encode()):,} bytes of {kind} text on this machine")
    return text


def documents(kind: str, size: str) -> list[str]:
    """The corpus cut into documents of about `size` bytes, each ending at a line end."""
    text, target = corpus_text(kind), DOC_SIZES[size]
    docs, start = [], 0
    while start < len(text):
        end = min(len(text), start + target)
        while end < len(text) and len(text[start:end].encode()) > target:  # multi-byte text: fewer chars
            end = start + (end - start) * 3 // 4
        cut = text.rfind("\n", start + 1, end)
        end = cut + 1 if cut > start + target // 4 and end < len(text) else end
        docs.append(text[start:end])
        start = end
    return docs


def round_documents(kind: str, size: str, round: int) -> list[str]:
    """The documents of one round: never the first (spare) nor any in the warm-up text, and
    disjoint from every other round's until the corpus runs out; later rounds start over
    (every round's instance is fresh, so the text is still new to it)."""
    docs, end = documents(kind, size), len(corpus_text(kind)) - WARM_CHARS
    while docs and sum(map(len, docs)) > end:  # the last documents overlap the warm-up
        docs.pop()
    per_round = max(1, ROUND_BYTES // DOC_SIZES[size])
    fits = (len(docs) - 1) // per_round
    if fits < 1:
        raise Unavailable(f"{kind} text has too few {size} documents for a round")
    start = 1 + round % fits * per_round
    return docs[start : start + per_round]


def warm_text(kind: str) -> str:
    """Other text to warm an encoder on: the corpus's last 64 KB (never timed) and one piece
    far over 64 bytes, so that long-piece structures built on first use are built."""
    text = corpus_text(kind)
    return text[-WARM_CHARS:] + "\n" + "=" * 300 + " " + "abcdefghij" * 30 + "\n"


def rank_file(vocab: str) -> Path:
    """OpenAI's rank file for `vocab`, as shipped in the bpe-openai package (bench extra)."""
    try:
        import bpe_openai
    except ImportError:
        raise Unavailable("the rank files come from bpe-openai (pip install bpe-openai)") from None
    path = Path(bpe_openai.__file__).parent / "data" / f"{vocab}.tiktoken.gz"
    if not path.exists():
        raise Unavailable(f"{path}: no such rank file")
    return path


@dataclass
class Peer:
    """One library on one vocabulary: encode one text, and a batch on `threads` threads."""

    name: str
    encode: Callable[[str], list[int]]
    batch: Callable[[list[str], int], list]
    encode_special: Callable[[str], list[int]] | None = None


# The tokenizer.json files written for the peers, one per (vocab, pattern) for the process,
# each in a temporary directory removed when the process ends (not one per peer load).
_JSON_DIRS: dict[tuple[str, str | None], tempfile.TemporaryDirectory] = {}


def _tokenizer_json(vocab: str, pattern: str | None = None) -> str:
    """Our vocabulary as a Hugging Face tokenizer.json (optionally with another spelling of the split)."""
    from fastgpt.tokenizer import Tokenizer

    key = (vocab, pattern)
    if key not in _JSON_DIRS:
        directory = tempfile.TemporaryDirectory(prefix="fastgpt-bench-")
        path = Path(directory.name) / "tok" / "tokenizer.json"
        Tokenizer.from_tiktoken(rank_file(vocab)).save(path.parent)
        if pattern is not None:
            doc = json.loads(path.read_text(encoding="utf-8"))
            doc["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = pattern
            path.write_text(json.dumps(doc), encoding="utf-8")
        _JSON_DIRS[key] = directory
    return str(Path(_JSON_DIRS[key].name) / "tok" / "tokenizer.json")


# cl100k's split as spelled in the tokenizer.json files on the Hugging Face hub, which is
# what users of the tokenizer.json peers load: gigatok knows cl100k only in this spelling,
# and fastokens runs its hand-written scanner on it but a regex on tiktoken's spelling
# (3x slower). o200k is spelled the same in both places.
HUB_CL100K = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def _hub_json(vocab: str) -> str:
    """Our vocabulary as the tokenizer.json a user of a Hugging Face peer would download."""
    return _tokenizer_json(vocab, HUB_CL100K if vocab == "cl100k_base" else None)


def load_peer(name: str, vocab: str) -> Peer:
    """A fresh instance of `name` on `vocab`; Unavailable says why not."""

    def need(module: str):
        import importlib

        try:
            return importlib.import_module(module)
        except ImportError:
            raise Unavailable(f"{name} is not installed (pip install {name})") from None

    if name == "fastgpt":
        from fastgpt.tokenizer import Tokenizer

        tok = Tokenizer.from_tiktoken(rank_file(vocab))
        return Peer(
            name,
            tok.encode_ordinary,
            lambda texts, n: tok.encode_ordinary_batch(texts, num_threads=n),
            lambda text: tok.encode(text, disallowed_special=()),
        )
    if name == "tiktoken":
        need("tiktoken")
        enc = tiktoken_encoding(rank_file(vocab))
        return Peer(
            name,
            enc.encode_ordinary,
            lambda texts, n: enc.encode_ordinary_batch(texts, num_threads=n),
            lambda text: enc.encode(text, disallowed_special=()),
        )
    if name == "fastokens":
        fastokens = need("fastokens")
        ft = fastokens.Tokenizer.from_file(_hub_json(vocab))
        return Peer(
            name,
            lambda text: ft.encode_ordinary(text).ids,
            lambda texts, n: [e.ids for e in ft.encode_batch(texts)],
            lambda text: ft.encode(text).ids,
        )
    if name == "gigatok":
        gigatok = need("gigatok")
        if vocab != "cl100k_base":
            raise Unavailable("gigatok refuses the o200k split pattern")
        gt = gigatok.Tokenizer(_hub_json(vocab))
        return Peer(name, lambda text: gt.encode(text).tolist(), lambda texts, n: gt.encode_batch(texts))
    if name == "gigatoken":  # not gigatok: another project, which also reads o200k
        gigatoken = need("gigatoken")
        gk = gigatoken.Tokenizer(_hub_json(vocab)).as_tiktoken()
        return Peer(
            name,
            gk.encode_ordinary,
            lambda texts, n: gk.encode_ordinary_batch(texts, num_threads=n),
            lambda text: gk.encode(text, allowed_special="all"),
        )
    if name == "snaptokens":
        snaptokens = need("snaptokens")
        doc = json.loads(Path(_hub_json(vocab)).read_text(encoding="utf-8"))
        with_specials = json.dumps(doc)
        doc["added_tokens"] = []  # special tokens' text then encodes as text, as encode_ordinary does
        st = snaptokens.Tokenizer.from_json_str(json.dumps(doc))
        special = functools.cache(lambda: snaptokens.Tokenizer.from_json_str(with_specials))
        return Peer(
            name,
            lambda text: st.encode(text).ids,
            lambda texts, n: [e.ids for e in st.encode_batch(texts)],
            lambda text: special().encode(text).ids,
        )
    if name == "quicktok":  # its own copy of OpenAI's vocabularies, shipped in the wheel
        quicktok = need("quicktok")
        qt = quicktok.Tokenizer(vocab, "")

        def qt_batch(texts, n):
            ids, offsets = qt.encode_batch(texts, n, False)  # one array; slices, not lists
            return [ids[a:b] for a, b in zip(offsets[:-1], offsets[1:])]

        return Peer(name, qt.encode_ordinary, qt_batch, qt.encode_with_special)
    if name == "splintr":
        splintr = need("splintr")
        sp = splintr.Tokenizer.from_pretrained(vocab)
        return Peer(name, sp.encode_ordinary, lambda texts, n: sp.encode_batch(texts), sp.encode_with_special)
    if name == "rs-bpe":
        rs_bpe = need("rs_bpe")
        rb = getattr(rs_bpe.openai, vocab)()

        def rs_batch(texts, n):
            # (min batch size, texts per chunk, threads); it returns (ids, tokens, seconds, threads).
            options = rs_bpe.openai.ParallelOptions(1, max(1, len(texts) // (4 * n)), n)
            return rb.encode_batch_parallel(texts, options)[0]

        return Peer(name, rb.encode, rs_batch)
    if name == "bpe-openai":
        bpe_openai = need("bpe_openai")
        bo = bpe_openai.get_encoding(vocab)
        return Peer(name, bo.encode_ordinary, lambda texts, n: bo.encode_ordinary_batch(texts))
    if name == "tokenizers":
        tokenizers = need("tokenizers")
        hf = tokenizers.Tokenizer.from_file(_hub_json(vocab))
        return Peer(
            name,
            lambda text: hf.encode(text, add_special_tokens=False).ids,
            lambda texts, n: [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)],
        )
    raise ValueError(f"unknown peer {name!r}; choose from {', '.join(ENCODE_PEERS)}")


PARITY_TEXTS = (
    "Hello world, it's 12345 don't  \n\n\tindented  x",
    "Ωμέγα 你好世界 🎉 e\u0301 ǅ ſ 'LL ١٢٣",
    "a" * 300 + " " + "12345678901234567890",
)


@functools.cache
def mismatch(name: str, vocab: str) -> str | None:
    """Where `name`'s ids differ from tiktoken's on `vocab` (every corpus and a few hard
    texts), or None when they agree everywhere."""
    ref = load_peer("tiktoken", vocab)
    peer = ref if name == "tiktoken" else load_peer(name, vocab)
    texts = list(PARITY_TEXTS)
    for kind in CORPORA:
        try:
            texts += documents(kind, "64KB")[:3]
        except Unavailable:
            pass
    for text in texts:
        want, got = ref.encode(text), list(peer.encode(text))
        if got != want:
            at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            return f"{name}'s ids differ from tiktoken's on {vocab} (first at token {at} of {text[:40]!r}...)"
    return None


def _thread_ids() -> list[int]:
    """This process's thread ids (Linux), so affinity reaches threads a peer started earlier;
    elsewhere just the calling thread (0)."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _set_affinity(cpus) -> None:
    for tid in _thread_ids():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:  # a thread that ended meanwhile
            pass


class pinned:
    """Restricts this process, every thread it has and every thread it starts, to `n` of the
    CPUs it may use, then restores. (Setting the affinity of pid 0 alone would leave out the
    worker threads a peer started before.)"""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        if self.before is not None:
            _set_affinity(sorted(self.before)[-self.n :])
        return self

    def __exit__(self, *exc):
        if self.before is not None:
            _set_affinity(self.before)


# The instance of the current round: the only one alive while a round is timed.
_ROUND_PEER: list[Peer] = []


def fresh_peer(name: str, vocab: str, kind: str) -> Peer:
    """A new instance of `name` for one round, warmed on other text of `kind`.

    The previous round's instance is freed, and garbage collected, before this one loads:
    freeing a large instance while the next round is timed would charge its clean-up (some
    peers free on other threads, which process time counts) to that round. The warm-up
    comes after the collection, as the last step: a full collection walks every object of
    the process (14 ms once all peers are loaded), which pushes the peer's tables out of
    the CPU's caches, and the first large allocations after it were slow (glibc's
    `_int_malloc` was 10% of the timed call). Collected just before it, a round of 1 KB
    multilingual documents on o200k took fastgpt 4.25 ms instead of 3.7 ms, and tiktoken
    11.3 instead of 10.6 ms."""
    _ROUND_PEER.clear()
    gc.collect()
    peer = load_peer(name, vocab)
    _ROUND_PEER.append(peer)
    gc.collect()
    peer.encode(warm_text(kind))
    return peer


def first_sight_round(name: str, vocab: str, kind: str, size: str, round: int, repeated: bool = False):
    """(encode, docs) for one round: a fresh, warmed instance (`fresh_peer`) and documents it
    has not seen (with `repeated`, documents it has just encoded once)."""
    docs = round_documents(kind, size, round)
    peer = fresh_peer(name, vocab, kind)
    if repeated:
        for doc in docs:
            peer.encode(doc)
    return (lambda text: _ROUND_PEER[0].encode(text)), docs


def timed_batch(name: str, vocab: str, kind: str, docs: list[str], threads: int) -> float:
    """Seconds of one `batch` of `docs` on `threads` threads, by a fresh instance warmed on
    the CPUs it is timed on (warmed before the pinning, a 1-thread round could start on the
    other core, away from the caches its warm-up filled)."""
    with pinned(threads):
        peer = fresh_peer(name, vocab, kind)
        start = time.perf_counter()
        peer.batch(docs, threads)
        return time.perf_counter() - start


def encode_all(encode: Callable[[str], list[int]], docs: list[str]) -> int:
    return sum(len(encode(doc)) for doc in docs)


def short_texts(count: int = 2000) -> list[str]:
    """Chat-sized inputs of 13 to 100 bytes: sentences of the prose and multilingual text."""
    import random

    rng, out = random.Random(0), list[str]()
    sources = [corpus_text("prose")]
    try:
        sources.append(corpus_text("multilingual"))
    except Unavailable:
        pass
    while len(out) < count:
        text = sources[len(out) % len(sources)]
        start = rng.randrange(len(text) - 200)
        piece = text[start : start + rng.randint(13, 100)]
        while len(piece.encode()) > 100:
            piece = piece[:-1]
        if len(piece.encode()) >= 13:
            out.append(piece)
    return out


def worst_case(case: str, round: int = 0, n: int = 1 << 20) -> str:
    """Inputs that are slow for some BPE encoders, `n` bytes or so each, different in every
    `round`, so that no round is helped by what an encoder cached in the one before (users
    meet a random string once). Prose, the yardstick, is a different eighth of `n` bytes of
    the prose corpus each round (it has about 1.3 MB, 9 such slices before the last 64 KB,
    which warm the encoder; later rounds start over)."""
    import random
    import string

    rng = random.Random(round)
    letter = string.ascii_lowercase[round % 26]
    if case == "prose":
        text = corpus_text("prose")[: -(64 << 10)]
        size = n // 8
        start = round % (len(text) // size) * size
        return text[start : start + size]
    if case == "one letter":
        return letter * n
    if case == "random letters":
        return "".join(rng.choices(string.ascii_letters, k=n))
    if case == "spaces then a letter":
        return " " * n + letter
    if case == "random CJK":
        return "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(n // 3))
    if case == "long digit runs":
        return "".join(rng.choices(string.digits, k=n))
    raise ValueError(f"unknown worst case {case!r}")


WORST_CASES = ("prose", "one letter", "random letters", "spaces then a letter", "random CJK", "long digit runs")


@dataclass
class SuiteRow:
    measure: str  # "1 thread first sight", "1 thread repeated", "2-thread batch", "short calls", "worst case"
    vocab: str
    case: str  # "prose 4KB", "encode_ordinary", "random letters", ...
    library: str
    mb_per_s: float
    calls_per_s: float = 0.0


def _first_sight_run(name: str, vocab: str, kind: str, size: str, repeated: bool, round: int) -> Callable[[], int]:
    return functools.partial(encode_all, *first_sight_round(name, vocab, kind, size, round, repeated))


def _calls(fn: Callable[[str], list[int]], texts: list[str], round: int) -> Callable[[], int]:
    return functools.partial(encode_all, fn, texts)


def _round_of(fn: Callable[[str], list[int]], rounds: list[list[str]], round: int) -> Callable[[], int]:
    return functools.partial(encode_all, fn, rounds[round])


def _best_time(prepare: Callable[[int], Callable[[], object]], rounds: int) -> float:
    """The least time of `rounds` runs, each of what `prepare(round)` returns (untimed)."""
    best = float("inf")
    for r in range(rounds):
        run = prepare(r)
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def run_encode_suite(
    peers: list[str] | tuple[str, ...] = ENCODE_PEERS,
    *,
    vocabs: list[str] | tuple[str, ...] = VOCABS,
    corpora: list[str] | tuple[str, ...] = CORPORA,
    sizes: list[str] | tuple[str, ...] = tuple(DOC_SIZES),
    rounds: int = 3,
    log: Callable[[str], None] | None = None,
) -> list[SuiteRow]:
    """The encode suite in this process (what `fastgpt bench --compare PEER...` prints);
    the pytest suite `benches/test_bench_encode.py` measures the same things. Peers whose ids
    differ from tiktoken's, or that cannot load, are left out with a line saying why."""
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    peers = ["fastgpt", *[p for p in peers if p != "fastgpt"]]
    rows: list[SuiteRow] = []
    for vocab in vocabs:
        usable = []
        for name in peers:
            try:
                why = mismatch(name, vocab)
            except Unavailable as exc:
                why = str(exc)
            if why:
                say(f"{vocab}: leaving out {name}: {why}")
            else:
                usable.append(name)
        for kind in corpora:
            for size in sizes:
                for name in usable:
                    for repeated in (False, True):
                        try:
                            with pinned(1):
                                prepare = functools.partial(_first_sight_run, name, vocab, kind, size, repeated)
                                seconds = _best_time(prepare, rounds)
                        except Unavailable as exc:
                            say(f"{vocab} {kind} {size}: {exc}")
                            break
                        n = sum(len(d.encode()) for d in round_documents(kind, size, 0))
                        measure = "1 thread repeated" if repeated else "1 thread first sight"
                        rows.append(SuiteRow(measure, vocab, f"{kind} {size}", name, n / seconds / 1e6))
                        say(f"{measure}: {vocab} {kind} {size}: {name} {rows[-1].mb_per_s:.1f} MB/s")
        docs = [d for r in range(3) for d in round_documents(corpora[0], "4KB", r)]
        n = sum(len(d.encode()) for d in docs)
        for name in usable:
            # fastgpt's 1 and 2 threads in alternating rounds, so that both meet the same
            # state of a shared machine: their ratio is a bar.
            best = {threads: float("inf") for threads in ((1, 2) if name == "fastgpt" else (2,))}
            for _ in range(rounds):
                for threads in best:
                    best[threads] = min(best[threads], timed_batch(name, vocab, corpora[0], docs, threads))
            for threads, seconds in best.items():
                rows.append(SuiteRow(f"{threads}-thread batch", vocab, f"{corpora[0]} 4KB", name, n / seconds / 1e6))
                say(f"{threads}-thread batch: {vocab}: {name} {rows[-1].mb_per_s:.1f} MB/s")
        shorts = short_texts()
        n = sum(len(t.encode()) for t in shorts)
        for name in usable:
            peer = load_peer(name, vocab)
            peer.encode(warm_text("prose"))
            for method, fn in (("encode_ordinary", peer.encode), ("encode", peer.encode_special)):
                if fn is None:
                    continue
                with pinned(1):
                    seconds = _best_time(functools.partial(_calls, fn, shorts), rounds)
                rows.append(SuiteRow("short calls", vocab, method, name, n / seconds / 1e6, len(shorts) / seconds))
                say(f"short calls: {vocab} {method}: {name} {rows[-1].calls_per_s:,.0f} calls/s")
        peer = load_peer("fastgpt", vocab)
        peer.encode(warm_text("prose"))
        for case in WORST_CASES:
            texts = [[worst_case(case, r)] for r in range(rounds)]
            with pinned(1):
                seconds = _best_time(functools.partial(_round_of, peer.encode, texts), rounds)
            n = sum(len(t[0].encode()) for t in texts) // rounds
            rows.append(SuiteRow("worst case", vocab, case, "fastgpt", n / seconds / 1e6))
            say(f"worst case: {vocab} {case}: fastgpt {rows[-1].mb_per_s:.1f} MB/s")
    return rows


def format_suite(rows: list[SuiteRow]) -> str:
    """A markdown table: MB/s (calls/s for short inputs), fastgpt's speed as a multiple of each
    peer's, and for the worst cases their time per byte as a multiple of prose's."""
    out = [
        "| measure | vocab | case | library | MB/s | calls/s | fastgpt ÷ this |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    ours = {(r.measure, r.vocab, r.case): r for r in rows if r.library == "fastgpt"}
    for r in rows:
        o = ours.get((r.measure, r.vocab, r.case))
        prose = ours.get(("worst case", r.vocab, "prose"))
        ratio = f"{o.mb_per_s / r.mb_per_s:.2f}x" if o and r is not o else ""
        if r.measure == "worst case" and prose and r is not prose:
            ratio = f"{prose.mb_per_s / r.mb_per_s:.2f}x prose's time per byte"
        calls = f"{r.calls_per_s:,.0f}" if r.calls_per_s else ""
        out.append(f"| {r.measure} | {r.vocab} | {r.case} | {r.library} | {r.mb_per_s:.1f} | {calls} | {ratio} |")
    return "\n".join(out)


if __name__ == "__main__":  # a worker: `python -m fastgpt.bench '<spec JSON>'` prints one JSON line
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
