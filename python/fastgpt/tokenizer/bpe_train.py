"""Training a byte-level BPE tokenizer: the streaming and progress around the Rust trainer.

`Tokenizer.train` is the public entry point; this module feeds `_core.BpeTrainer` batches of
text read with `fastgpt.data.inputs` (the corpus is never held whole), shows progress, and turns
the learned ranks into a `Tokenizer`. The algorithm and its tie rule are in rust/src/train.rs:
the next merge is the pair with the highest count, ties going to the lowest (left id, right id).
"""

from __future__ import annotations

import itertools
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fastgpt import _core
from fastgpt.data import inputs as corpus
from fastgpt.data import parquet

# Distinct words kept at most (about 100 bytes of RAM each while merging); past it the
# rarest are dropped. 10M covers a few GB of varied text.
DEFAULT_MAX_WORDS = 10_000_000
# Text handed to Rust per call: large enough to keep all cores busy, small enough to stream.
BATCH_CHARS = 2 << 20
# Text files are cut into pieces of about this many characters, so a batch spreads over cores.
CHUNK_CHARS = 64 << 10


@dataclass
class TrainStats:
    """What a training run read and learned (`Tokenizer.train(...).train_stats`)."""

    bytes_read: int = 0
    documents: int = 0
    invalid_utf8: int = 0
    words: int = 0
    distinct_words: int = 0
    dropped_words: int = 0
    dropped_occurrences: int = 0
    tokens: int = 0
    merges: int = 0
    read_seconds: float = 0.0
    merge_seconds: float = 0.0


def is_file_inputs(data) -> bool:
    """Paths (a str, a PathLike, or a list or tuple of them) rather than an iterator of texts."""
    if isinstance(data, (str, os.PathLike)):
        return True
    return isinstance(data, (list, tuple)) and all(isinstance(item, (str, os.PathLike)) for item in data)


class Budget:
    """The --max_bytes / --max_lines limits: `take(line, raw_bytes)` returns the part of a
    line still within them (a line crossing max_bytes is cut there), or None when spent."""

    def __init__(self, max_bytes: int | None, max_lines: int | None):
        self.bytes_left = max_bytes
        self.lines_left = max_lines

    def take(self, text: str, size: int) -> str | None:
        if self.lines_left is not None:
            if self.lines_left <= 0:
                return None
            self.lines_left -= 1
        if self.bytes_left is not None:
            if self.bytes_left <= 0:
                return None
            if size > self.bytes_left:
                text = text.encode("utf-8", "surrogatepass")[: self.bytes_left].decode("utf-8", "ignore")
            self.bytes_left -= size
        return text

    @property
    def spent(self) -> bool:
        return (self.lines_left is not None and self.lines_left <= 0) or (
            self.bytes_left is not None and self.bytes_left <= 0
        )


def file_texts(paths: list[Path], text_field: str, stats: corpus.CorpusStats, budget: Budget) -> Iterator[str]:
    """The files' text: record files (JSON lines, Parquet, Arrow) give each record's field; text files give
    runs of whole lines of about CHUNK_CHARS, newlines kept, cut only at safe places (see `corpus.safe_runs`)."""
    for path in paths:
        if budget.spent:
            return
        if corpus.has_records(path):
            read = stats.bytes_read
            for doc in corpus.iter_documents([path], text_field=text_field, stats=stats):
                taken = budget.take(doc, stats.bytes_read - read)
                read = stats.bytes_read
                if taken is None:
                    return
                yield taken
            continue
        stats.documents += 1
        if budget.bytes_left is None and budget.lines_left is None:
            # No limits: read in blocks, far cheaper than line by line.
            tail = ""
            for block in corpus.iter_blocks(path, stats, block_bytes=256 << 10):
                tail = yield from corpus.safe_runs(tail + block, CHUNK_CHARS)
            if tail:
                yield tail
            continue
        lines: list[str] = []
        size = 0
        for line in corpus.iter_lines(path, stats):
            if size >= CHUNK_CHARS and (
                size >= corpus.MAX_CHUNK_CHARS or (lines[-1][-2:-1].strip() and _starts_word(line))
            ):
                yield "".join(lines)
                lines, size = [], 0
            taken = budget.take(line, len(line.encode("utf-8")) if budget.bytes_left is not None else 0)
            if taken is None:
                break
            lines.append(taken)
            size += len(taken)
        if lines:
            yield "".join(lines)


def _starts_word(line: str) -> bool:
    return line[:1].isascii() and line[:1].isalnum()


def iterator_texts(texts: Iterable[str], stats: corpus.CorpusStats, budget: Budget) -> Iterator[str]:
    """Texts of an iterable (see `source_texts` for datasets and dicts), budgeted and cut at safe places."""
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"training texts must be str, got {type(text).__name__}")
        size = len(text.encode("utf-8", "surrogatepass"))
        taken = budget.take(text, size)
        if taken is None:
            return
        text = taken
        stats.bytes_read += size
        stats.documents += 1
        if len(text) > CHUNK_CHARS:
            # A long text is cut at safe places too, so its pieces spread over the cores.
            tail = yield from corpus.safe_runs(text, CHUNK_CHARS)
            if tail:
                yield tail
        else:
            yield text


def source_texts(data, text_field: str) -> Iterator[str]:
    """The texts of a `datasets.Dataset` / `IterableDataset` (column `text_field`, streamed in
    Arrow batches), of an iterable of dicts (their `text_field`), or of an iterable of str."""
    if not parquet.is_hf_dataset(data) and isinstance(data, Iterator):
        # A plain iterator: peek at the first item; only dicts need the field looked up.
        first = next(data, None)
        if first is None:
            return
        data = itertools.chain([first], data)
        if not isinstance(first, dict):
            yield from data  # str checked (and surrogates fixed) downstream
            return
    for batch in parquet.iter_source_batches(data, text_field):
        yield from batch


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, n: int) -> None:
        pass


def _progress(enabled: bool, **kwargs):
    # Bars only for a person watching: quiet (and tqdm not even imported) off a terminal.
    if not (enabled and sys.stderr.isatty()):
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(leave=False, **kwargs)


def train(
    data,
    vocab_size: int,
    pattern: str,
    special_tokens: Iterable[str],
    max_bytes: int | None,
    max_lines: int | None,
    text_field: str,
    threads: int | None,
    max_words: int,
    progress: bool,
) -> tuple[dict[bytes, int], dict[str, int], TrainStats]:
    """Reads, counts and merges; returns (ranks, special token ids, stats)."""
    specials = list(dict.fromkeys(special_tokens))
    if any(not isinstance(s, str) or not s for s in specials):
        raise ValueError(f"special tokens must be non-empty strings, got {specials!r}")
    if not isinstance(vocab_size, int) or vocab_size < 256 + len(specials):
        raise ValueError(
            f"vocab_size {vocab_size} is too small: the minimum is {256 + len(specials)} "
            f"(256 byte tokens + {len(specials)} special tokens)"
        )
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    for name, value in (("max_bytes", max_bytes), ("max_lines", max_lines)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")

    trainer = _core.BpeTrainer(pattern, specials, max_words, threads)
    stats = corpus.CorpusStats()
    budget = Budget(max_bytes, max_lines)
    if is_file_inputs(data):
        items = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        if not items:
            raise ValueError("no training inputs given")
        try:
            paths = corpus.expand_inputs(items)
        except FileNotFoundError as exc:
            if isinstance(data, (list, tuple)) and any(isinstance(i, str) and ("\n" in i or " " in i) for i in items):
                raise FileNotFoundError(f"{exc} (to train on a list of texts, pass iter(texts))") from None
            raise
        described = ", ".join(map(str, items))
        plain = all(not p.name.endswith(corpus.COMPRESSED_SUFFIXES) for p in paths)
        total = sum(p.stat().st_size for p in paths) if plain else None
        texts = file_texts(paths, text_field, stats, budget)
    else:
        described = "the given texts"
        total = None
        texts = iterator_texts(source_texts(data, text_field), stats, budget)
    if max_bytes is not None:
        total = min(total, max_bytes) if total is not None else max_bytes

    started = time.perf_counter()
    # Reading (Python) overlaps counting (Rust, GIL released): one batch is counted while the
    # next is read. The trainer is touched by one thread at a time.
    with (
        _progress(progress, total=total, unit="B", unit_scale=True, desc="reading") as bar,
        ThreadPoolExecutor(1) as pool,
    ):
        pending = None
        read = 0
        for batch in corpus.batched(texts, BATCH_CHARS):
            if pending is not None:
                pending.result()
            pending = pool.submit(_add_texts, trainer, batch)
            bar.update(stats.bytes_read - read)
            read = stats.bytes_read
        if pending is not None:
            pending.result()
    result = TrainStats(bytes_read=stats.bytes_read, documents=stats.documents, invalid_utf8=stats.invalid_utf8)
    result.words, result.distinct_words = trainer.total_words, trainer.n_words
    result.read_seconds = time.perf_counter() - started
    if result.words == 0:
        raise ValueError(f"{described}: the corpus is empty (no text to train on)")
    if stats.invalid_utf8:
        warnings.warn(
            f"{described}: {stats.invalid_utf8} invalid UTF-8 sequences were replaced by U+FFFD", stacklevel=3
        )

    started = time.perf_counter()
    result.dropped_words, result.dropped_occurrences, todo = trainer.start_merging(vocab_size, len(specials))
    if result.dropped_words:
        warnings.warn(
            f"max_words={max_words}: the {result.dropped_words} rarest distinct words "
            f"({result.dropped_occurrences} occurrences) were dropped; raise max_words to keep them",
            stacklevel=3,
        )
    step = max(1, todo // 100)
    with _progress(progress, total=todo, unit="tok", desc="merging") as bar:
        while not trainer.finished:
            bar.update(trainer.merge(step))
    result.merge_seconds = time.perf_counter() - started
    ranks = dict(trainer.ranks())
    result.tokens, result.merges = len(ranks), len(trainer.merges())
    if len(ranks) < vocab_size - len(specials):
        warnings.warn(
            f"{described}: no pairs left after {len(ranks) - 256} merges; the vocabulary has "
            f"{len(ranks) + len(specials)} tokens, not {vocab_size}",
            stacklevel=3,
        )
    special_ids = {s: len(ranks) + i for i, s in enumerate(specials)}
    return ranks, special_ids, result


def _add_texts(trainer, batch: list[str]) -> None:
    try:
        trainer.add_texts(batch)
    except UnicodeEncodeError:
        # Lone surrogates (only from a Python iterator) cannot be UTF-8: U+FFFD, as in encode.
        trainer.add_texts([corpus.fix_surrogates(t) for t in batch])
