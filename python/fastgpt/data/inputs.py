"""Reading inputs: the one place where files are found, opened and cut into documents.

Every command that reads a corpus (tokenizer training, pretokenize, split, the demo) and
every one that takes a list of files (cc extract's WET files, training's token files)
goes through this module, so they accept the same inputs and fail the same way:

    >>> paths = expand_inputs(["data/*.txt", "more/"])          # doctest: +SKIP
    >>> for doc in iter_documents(paths, doc_sep="line"): ...   # doctest: +SKIP

- Finding (`expand_inputs`): files, globs and directories, in order, without repeats.
- Opening (`open_binary`): `.gz` and `.zst` are decompressed; a corrupt or truncated file is
  a `ValueError` naming it, never a silent short read.
- Documents (`iter_documents`, `read_documents`): a file's format comes from its name.
  Record formats (JSON lines, Parquet and Arrow: one document per record or row) have a
  reader in `RECORD_FORMATS`; a new one is one entry there. Other files are text: one document per line,
  per blank-line block, or per file (`doc_sep`). Commands that stream text fast
  (`iter_blocks`, `safe_runs`) take that path only for text files (`has_records` is false).
- Text is Unicode without surrogates: invalid UTF-8 and lone surrogates (which JSON can
  escape, "\\ud800") become U+FFFD, as in `Tokenizer.encode`, and are counted in
  `CorpusStats.invalid_utf8`; never fatal.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple, cast

from fastgpt.data import parquet

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".json")
COMPRESSED_SUFFIXES = (".gz", ".zst")
DocSep = Literal["line", "blank", "none"]
# `safe_runs` cuts text anyway at this size when no safe place came (a pre-token may then be split).
MAX_CHUNK_CHARS = 4 << 20
DOC_SEPS = ("line", "blank", "none")
# Compressed bytes handed to zstd per call: the decompressed output of one call is held at once.
ZSTD_READ_BYTES = 64 << 10


@dataclass
class CorpusStats:
    files: int = 0
    bytes_read: int = 0
    documents: int = 0
    invalid_utf8: int = 0  # invalid UTF-8 sequences and lone surrogates, each made U+FFFD


class Document(NamedTuple):
    """A document and where it came from: `line` is its line number in `path` (0 for a
    document that is not one line), `record` the JSON line it was read from, if any."""

    text: str
    path: Path
    line: int
    record: str | None


# ---- finding files -----------------------------------------------------------------------


def base_name(path: Path) -> str:
    """The file name without a compression suffix: `a.jsonl.gz` → `a.jsonl`."""
    name = path.name
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def is_corpus_file(path: Path) -> bool:
    """Whether a file found in a directory is read as a corpus (text or a record format), but
    not the metadata JSON that a `datasets` cache keeps beside its Arrow files."""
    if path.name in parquet.DATASETS_METADATA and any(path.parent.glob("*.arrow")):
        return False
    return base_name(path).endswith(TEXT_SUFFIXES) or has_records(path)


def expand_inputs(
    inputs: Iterable[str | os.PathLike],
    *,
    accept: Callable[[Path], bool] = is_corpus_file,
    kind: str = "text files",
    recursive: bool = True,
    missing: str = "no such file or directory",
) -> list[Path]:
    """Files named, matched by a glob, or found in a directory (the files that `accept`
    takes, recursively unless told not to, hidden ones skipped), in order and without
    repeats. A missing file, an empty glob or a directory without such files is an error
    naming it."""
    paths: list[Path] = []
    for item in inputs:
        item = str(item)
        if glob.has_magic(item) and not os.path.exists(item):
            files = sorted(Path(m) for m in glob.glob(item, recursive=True) if os.path.isfile(m))
            if not files:
                raise FileNotFoundError(f"{item}: the pattern matches no files")
        elif os.path.isdir(item):
            root = Path(item)
            found = root.rglob("*") if recursive else root.iterdir()
            # Hidden: temporaries of a running write, .ipynb_checkpoints copies, .git.
            files = sorted(
                p
                for p in found
                if p.is_file() and accept(p) and not any(s.startswith(".") for s in p.relative_to(root).parts)
            )
            if not files:
                raise FileNotFoundError(f"{item}: a directory with no {kind}")
        elif os.path.isfile(item):
            files = [Path(item)]
        else:
            raise FileNotFoundError(f"{item}: {missing}")
        paths.extend(files)
    unique: dict[Path, Path] = {}
    for p in paths:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (also through links), whether or not it exists yet."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


# ---- opening -----------------------------------------------------------------------------


def open_binary(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when it ends in .gz or .zst. Reading a corrupt or
    truncated compressed file raises ValueError("PATH: cannot read: ...")."""
    if path.name.endswith(".gz"):
        return cast(BinaryIO, _Checked(gzip.GzipFile(path, "rb"), path))
    if path.name.endswith(".zst"):
        return cast(BinaryIO, io.BufferedReader(_ZstdReader(path), buffer_size=1 << 20))
    return open(path, "rb")


class _Checked(io.BufferedIOBase):
    """gzip's errors (EOFError when truncated, BadGzipFile, zlib.error when corrupt) as one
    ValueError naming the file."""

    def __init__(self, f: gzip.GzipFile, path: Path):
        self._f, self._path = f, path

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            return self._f.read(-1 if size is None else size)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise ValueError(f"{self._path}: cannot read: {exc}") from None

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readline(self, size: int | None = -1) -> bytes:
        try:
            return self._f.readline(-1 if size is None else size)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise ValueError(f"{self._path}: cannot read: {exc}") from None

    def close(self) -> None:
        self._f.close()
        super().close()


class _ZstdReader(io.RawIOBase):
    """The decompressed bytes of a .zst file, frame after frame. Unlike zstandard's
    `stream_reader` it knows whether the last frame was complete, so a truncated file is an
    error (as gzip's is) rather than a silent short read."""

    def __init__(self, path: Path):
        try:
            import zstandard
        except ImportError:
            raise ValueError(f"{path}: reading .zst needs the zstandard package (pip install zstandard)") from None
        self._path = path
        self._file = open(path, "rb")
        self._dctx = zstandard.ZstdDecompressor()
        self._error = zstandard.ZstdError
        self._frame: Any = None  # the decompressor of the frame being read; None between frames
        self._input = b""  # compressed bytes read past the end of the last frame
        self._output = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._output:
            if not self._decompress_more():
                return 0
        n = min(len(buffer), len(self._output))
        buffer[:n] = self._output[:n]
        self._output = self._output[n:]
        return n

    def _decompress_more(self) -> bool:
        data, self._input = self._input or self._file.read(ZSTD_READ_BYTES), b""
        if not data:
            if self._frame is not None:
                raise ValueError(f"{self._path}: cannot read: the file ends inside a zstd frame (truncated?)")
            return False
        if self._frame is None:
            self._frame = self._dctx.decompressobj()
        try:
            self._output = memoryview(self._frame.decompress(data))
        except self._error as exc:
            raise ValueError(f"{self._path}: cannot read: not valid zstd data ({exc})") from None
        if self._frame.eof:
            self._input, self._frame = self._frame.unused_data, None
        return True

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def decode(raw: bytes, stats: CorpusStats) -> str:
    """`raw` as text, invalid UTF-8 replaced by U+FFFD and counted in `stats`."""
    text = raw.decode("utf-8", errors="replace")
    if "\ufffd" in text:
        # Count only replacements, not U+FFFD characters the file really holds.
        stats.invalid_utf8 += text.count("\ufffd") - raw.count(b"\xef\xbf\xbd")
    return text


def _reading(path: Path, stats: CorpusStats):
    stats.files += 1
    try:
        return open_binary(path)
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a file") from None


def iter_lines(path: Path, stats: CorpusStats) -> Iterator[str]:
    """The file's lines (with their newlines), decoded, invalid UTF-8 replaced."""
    with _reading(path, stats) as f:
        for raw in f:
            stats.bytes_read += len(raw)
            yield decode(raw, stats)


def iter_blocks(path: Path, stats: CorpusStats, block_bytes: int = 8 << 20) -> Iterator[str]:
    """A text file in blocks of about `block_bytes`, each ending at a newline (but the
    last): reading in blocks costs far less than line by line."""
    for raw in iter_raw_blocks(path, stats, block_bytes):
        yield decode(raw, stats)


def iter_raw_blocks(path: Path, stats: CorpusStats, block_bytes: int = 8 << 20) -> Iterator[bytes]:
    """`iter_blocks`' blocks as the file's bytes (decompressed), not decoded: for a reader
    that checks and decodes UTF-8 itself (`decode` for a block it finds invalid)."""
    rest = b""
    with _reading(path, stats) as f:
        while chunk := f.read(block_bytes):
            stats.bytes_read += len(chunk)
            cut = chunk.rfind(b"\n")
            if cut < 0:
                rest += chunk
                continue
            yield rest + chunk[: cut + 1]
            rest = chunk[cut + 1 :]
    if rest:
        yield rest


# ---- documents ---------------------------------------------------------------------------

# A record reader: (path, text field, stats) → (text, line number or 0, the source line to copy
# unchanged, or None) per record, in file order. It counts `stats.files` and `stats.bytes_read`
# and makes lone surrogates U+FFFD; `read_documents` skips empty texts and counts documents.
RecordReader = Callable[[Path, str, CorpusStats], Iterator[tuple[str, int, str | None]]]


def _jsonl_records(path: Path, field: str, stats: CorpusStats) -> Iterator[tuple[str, int, str | None]]:
    for number, line in enumerate(iter_lines(path, stats), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            # exc.msg alone can end mid-sentence ("Invalid control character at").
            where = f"column {exc.colno}" if exc.msg.endswith(" at") else f"at column {exc.colno}"
            raise ValueError(f"{path}, line {number}: not valid JSON: {exc.msg} {where}") from None
        text = record.get(field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise ValueError(f"{path}, line {number}: no string field {field!r} (use --text_field to name another)")
        # A lone surrogate can only come from a JSON escape ("\\ud800"): the line was decoded
        # from UTF-8. So only a line with such an escape is checked, by encoding its text (a
        # copy of each non-ASCII text had cost multilingual JSON lines 5% of pretokenize).
        if ("\\ud" in line or "\\uD" in line) and not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError:
                text = _without_surrogates(text, stats)
        yield text, number, line


# Formats whose documents are records, by file suffix (after any compression suffix).
RECORD_FORMATS: dict[str, tuple[tuple[str, ...], RecordReader]] = {
    "jsonl": (JSONL_SUFFIXES, _jsonl_records),
    # One document per row; pyarrow (the `parquet` extra) is imported only when such a file is read.
    "parquet": (parquet.PARQUET_SUFFIXES + parquet.ARROW_SUFFIXES, parquet.iter_records),
}


def record_reader(path: Path) -> RecordReader | None:
    name = base_name(path)
    for suffixes, reader in RECORD_FORMATS.values():
        if name.endswith(suffixes):
            return reader
    return None


def has_records(path: Path) -> bool:
    """Whether the file's documents are records (JSON lines...) rather than text."""
    return record_reader(path) is not None


def _file_documents(
    path: Path, doc_sep: DocSep, text_field: str, stats: CorpusStats
) -> Iterator[tuple[str, int, str | None]]:
    """(text, line number or 0, source line or None) for each document of one file, empty ones included."""
    reader = record_reader(path)
    if reader is not None:
        return reader(path, text_field, stats)
    if doc_sep == "line":
        return ((line.rstrip("\r\n"), n, None) for n, line in enumerate(iter_lines(path, stats), 1))
    if doc_sep == "blank":
        return ((block, 0, None) for block in _blank_separated(iter_lines(path, stats)))
    return iter([("".join(iter_lines(path, stats)), 0, None)])


def read_documents(
    paths: Iterable[Path], doc_sep: DocSep = "line", text_field: str = "text", stats: CorpusStats | None = None
) -> Iterator[Document]:
    """The non-empty documents of `paths`, with where each came from. Record files give one
    document per record, from `text_field`. Text files give one per line (`line`, empty lines
    skipped), one per block between blank lines (`blank`), or the whole file (`none`)."""
    stats = _check_doc_sep(doc_sep, stats)
    for path in map(Path, paths):
        for text, line, record in _file_documents(path, doc_sep, text_field, stats):
            if text:
                stats.documents += 1
                yield Document(text, path, line, None if record is None else record.rstrip("\r\n"))


def iter_documents(
    paths: Iterable[Path], doc_sep: DocSep = "line", text_field: str = "text", stats: CorpusStats | None = None
) -> Iterator[str]:
    """The text of each document of `paths`, as `read_documents` finds them (and as fast as
    the file allows: no per-document objects)."""
    stats = _check_doc_sep(doc_sep, stats)
    for path in map(Path, paths):
        for text, _, _ in _file_documents(path, doc_sep, text_field, stats):
            if text:
                stats.documents += 1
                yield text


def _check_doc_sep(doc_sep: str, stats: CorpusStats | None) -> CorpusStats:
    if doc_sep not in DOC_SEPS:
        raise ValueError(f"doc_sep must be one of {', '.join(DOC_SEPS)}, got {doc_sep!r}")
    return stats if stats is not None else CorpusStats()


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


def fix_surrogates(text: str) -> str:
    """Lone surrogates cannot be UTF-8: like tiktoken, make each U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _without_surrogates(text: str, stats: CorpusStats) -> str:
    fixed = fix_surrogates(text)
    if fixed != text:
        stats.invalid_utf8 += fixed.count("\ufffd") - text.count("\ufffd")
    return fixed


# ---- cutting text for parallel work ------------------------------------------------------


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


def check_outputs(outputs: dict[str, str | os.PathLike], inputs: Sequence[Path]) -> None:
    """Refuses outputs that would destroy data: one file named for two outputs, or an output
    that is one of the inputs. `outputs` maps a name for messages (a flag) to a path."""
    named = list(outputs.items())
    for i, (flag, path) in enumerate(named):
        for other, other_path in named[:i]:
            if same_file(path, other_path):
                raise ValueError(f"{path}: {other} and {flag} are the same file")
        for p in inputs:
            if same_file(path, p):
                raise ValueError(f"{path}: {flag} would overwrite an input")
