"""Reading text corpora: files, globs and directories of `.txt` and `.jsonl`, plain or
compressed (`.gz`, `.zst`), streamed document by document.

Used by tokenizer training and pretokenizing, so both read inputs the same way:

    >>> paths = expand_inputs(["data/*.txt", "more/"])          # doctest: +SKIP
    >>> for doc in iter_documents(paths, doc_sep="line"): ...   # doctest: +SKIP

Invalid UTF-8 is replaced by U+FFFD and counted in `CorpusStats.invalid_utf8`, never fatal.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, cast

TEXT_SUFFIXES = (".txt", ".jsonl", ".json", ".text", ".md")
COMPRESSED_SUFFIXES = (".gz", ".zst")
DocSep = Literal["line", "blank", "none"]
# `safe_runs` cuts text anyway at this size when no safe place came (a pre-token may then be split).
MAX_CHUNK_CHARS = 4 << 20
DOC_SEPS = ("line", "blank", "none")


@dataclass
class CorpusStats:
    files: int = 0
    bytes_read: int = 0
    documents: int = 0
    invalid_utf8: int = 0


def is_text_file(path: Path) -> bool:
    name = path.name
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return name.endswith(TEXT_SUFFIXES)


def is_jsonl(path: Path) -> bool:
    name = path.name
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return name.endswith((".jsonl", ".json"))


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files named, matched by a glob, or found (recursively) in a directory, in order
    and without repeats. A missing file, an empty glob or a directory without text files
    is an error naming it."""
    paths: list[Path] = []
    for item in inputs:
        item = str(item)
        if any(c in item for c in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise FileNotFoundError(f"{item}: the pattern matches no files")
            paths.extend(files)
        elif os.path.isdir(item):
            files = sorted(p for p in Path(item).rglob("*") if p.is_file() and is_text_file(p))
            if not files:
                raise FileNotFoundError(
                    f"{item}: a directory with no text files ({', '.join(TEXT_SUFFIXES)}, optionally .gz/.zst)"
                )
            paths.extend(files)
        elif os.path.isfile(item):
            paths.append(Path(item))
        else:
            raise FileNotFoundError(f"{item}: no such file or directory")
    unique: dict[Path, Path] = {}
    for p in paths:
        unique.setdefault(p.resolve(), p)  # first mention wins, order kept
    return list(unique.values())


def open_binary(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when it ends in .gz or .zst."""
    if path.name.endswith(".gz"):
        return cast(BinaryIO, gzip.open(path, "rb"))
    if path.name.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise ValueError(f"{path}: reading .zst needs the zstandard package (pip install zstandard)") from None
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def _decode(raw: bytes, stats: CorpusStats) -> str:
    text = raw.decode("utf-8", errors="replace")
    if "\ufffd" in text:
        # Count only replacements, not U+FFFD characters the file really holds.
        stats.invalid_utf8 += text.count("\ufffd") - raw.count(b"\xef\xbf\xbd")
    return text


def iter_lines(path: Path, stats: CorpusStats) -> Iterator[str]:
    """The file's lines (with their newlines), decoded, invalid UTF-8 replaced."""
    stats.files += 1
    try:
        with open_binary(path) as f:
            for raw in f:
                stats.bytes_read += len(raw)
                yield _decode(raw, stats)
    except (EOFError, gzip.BadGzipFile, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot read: {exc}") from None


def iter_blocks(path: Path, stats: CorpusStats, block_bytes: int = 8 << 20) -> Iterator[str]:
    """The file's text in blocks of about `block_bytes`, each ending at a newline (but
    the last): reading in blocks costs far less than line by line."""
    stats.files += 1
    rest = b""
    try:
        with open_binary(path) as f:
            while chunk := f.read(block_bytes):
                stats.bytes_read += len(chunk)
                cut = chunk.rfind(b"\n")
                if cut < 0:
                    rest += chunk
                    continue
                yield _decode(rest + chunk[: cut + 1], stats)
                rest = chunk[cut + 1 :]
    except (EOFError, gzip.BadGzipFile, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot read: {exc}") from None
    if rest:
        yield _decode(rest, stats)


def iter_documents(
    paths: Iterable[Path], doc_sep: DocSep = "line", text_field: str = "text", stats: CorpusStats | None = None
) -> Iterator[str]:
    """The documents of `paths`. JSON lines files give one document per line, from
    `text_field`. Text files give one per non-empty line (`line`), one per block between
    blank lines (`blank`), or the whole file (`none`)."""
    if doc_sep not in DOC_SEPS:
        raise ValueError(f"doc_sep must be one of {', '.join(DOC_SEPS)}, got {doc_sep!r}")
    stats = stats if stats is not None else CorpusStats()
    for path in paths:
        path = Path(path)
        lines = iter_lines(path, stats)
        if is_jsonl(path):
            docs = _jsonl_documents(path, lines, text_field)
        elif doc_sep == "line":
            docs = (line.rstrip("\r\n") for line in lines)
        elif doc_sep == "blank":
            docs = _blank_separated(lines)
        else:
            docs = iter(["".join(lines)])
        for doc in docs:
            if doc:
                stats.documents += 1
                yield doc


def _jsonl_documents(path: Path, lines: Iterable[str], field: str) -> Iterator[str]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {number}: not valid JSON: {exc.msg}") from None
        text = record.get(field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise ValueError(f"{path}, line {number}: no string field {field!r} (use --text_field to name another)")
        yield text


def _blank_separated(lines: Iterable[str]) -> Iterator[str]:
    block: list[str] = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            yield "".join(block).rstrip("\r\n")
            block = []
    if block:
        yield "".join(block).rstrip("\r\n")


def safe_runs(text: str, chunk_chars: int):
    """Yields runs of about `chunk_chars` from `text` and returns the rest (to be continued
    by the next block). A run ends only at a newline that follows a non-space character
    and precedes an ASCII letter or digit: the named split patterns always end a piece
    there, so cutting changes no pre-token. Without such a place a run is cut anyway at
    MAX_CHUNK_CHARS."""
    start = 0
    n = len(text)
    while n - start > chunk_chars:
        pos = start + chunk_chars
        while True:
            pos = text.find("\n", pos, n - 1)
            if pos < 0 or pos - start > MAX_CHUNK_CHARS:
                break
            nxt = text[pos + 1]
            if nxt.isascii() and nxt.isalnum() and not text[pos - 1].isspace():
                break
            pos += 1
        if pos < 0:
            if n - start <= MAX_CHUNK_CHARS:
                break  # wait for more text
            pos = start + MAX_CHUNK_CHARS - 1
        elif pos - start > MAX_CHUNK_CHARS:
            pos = start + MAX_CHUNK_CHARS - 1
        yield text[start : pos + 1]
        start = pos + 1
    return text[start:]


def fix_surrogates(text: str) -> str:
    """Lone surrogates cannot be UTF-8: like tiktoken, make each U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def batched(docs: Iterable[str], batch_bytes: int = 4 << 20) -> Iterator[list[str]]:
    """Groups documents into lists of about `batch_bytes` characters, for parallel work."""
    batch: list[str] = []
    size = 0
    for doc in docs:
        batch.append(doc)
        size += len(doc)
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
