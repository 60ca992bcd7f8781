"""Token files and training batches, in numpy; torch only inside `Batches`.

A `.bin` file is llm.c's layout with fastgpt's fields in llm.c's unused header slots
(described once, in README's "The .bin format"). Its header is written and checked by the
one implementation in Rust (`rust/src/binfile.rs`); this module only wraps it.

`TokenFile` maps the payload read-only, so a file of any size costs O(1) RAM.
`TokenDataset` cuts (x, y) windows out of one or more files on demand (no index
list), and `Batches` turns them into torch batches, resumable from one counter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fastgpt import _core
from fastgpt._util.atomic import atomic_path
from fastgpt.data.inputs import expand_inputs, iter_documents

if TYPE_CHECKING:
    import torch

__all__ = [
    "BinHeader",
    "TokenFile",
    "TokenDataset",
    "Batches",
    "read_header",
    "write_tokens",
    "write_pt_tokens",
    "load_tokens",
]

HEADER_BYTES = 1024
_DTYPES: dict[int, np.dtype] = {2: np.dtype("<u2"), 4: np.dtype("<u4")}


@dataclass(frozen=True)
class BinHeader:
    """The fields of a `.bin` header; `vocab_size`/`eot_token` are None in plain llm.c files."""

    magic: int
    version: int
    dtype: np.dtype
    num_tokens: int
    fastgpt_version: int
    vocab_size: int | None
    eot_token: int | None


def read_header(path: str | os.PathLike) -> BinHeader:
    """Read and check the header of a `.bin` file, including that the size matches the count."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        raw = f.read(HEADER_BYTES)
    magic, version, width, num_tokens, fastgpt_version, vocab_size, eot = _core.parse_bin_header(raw, size, str(path))
    return BinHeader(magic, version, _DTYPES[width], num_tokens, fastgpt_version, vocab_size, eot)


def write_tokens(
    path: str | os.PathLike, tokens: Sequence[int] | np.ndarray, vocab_size: int, eot_token: int | None = None
) -> Path:
    """Write `tokens` as a `.bin` file, uint16 when `vocab_size` <= 65,536 else uint32.

    For in-memory arrays (tests, small data); `fastgpt pretokenize` streams huge corpora.
    Written to a temporary name and renamed, so a crash never leaves a complete-looking file.

    >>> p = write_tokens(tmp / "t.bin", [1, 2, 3], vocab_size=256)   # doctest: +SKIP
    >>> TokenFile(p)[:].tolist()                                     # doctest: +SKIP
    [1, 2, 3]
    """
    path = Path(path)
    if not 0 < vocab_size <= 2**32:
        raise ValueError(f"vocab_size must be in 1..2**32, got {vocab_size}")
    if eot_token is not None and not 0 <= eot_token < vocab_size:
        raise ValueError(f"eot_token {eot_token} is outside the vocabulary of {vocab_size}")
    arr = np.asarray(tokens)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(f"{path}: tokens must be a 1-D sequence of integers, got shape {arr.shape} {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= vocab_size):
        raise ValueError(
            f"{path}: token ids must be in 0..{vocab_size - 1}, got min {int(arr.min())} max {int(arr.max())}"
        )
    header, width = _core.bin_header(int(arr.size), vocab_size, eot_token)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header)
        f.write(arr.astype(_DTYPES[width], copy=False).tobytes())
    return path


def write_pt_tokens(path: str | os.PathLike, chunks: Sequence[np.ndarray]) -> int:
    """Write the concatenated `chunks` as one 1-D int64 torch tensor (`--format pt`, for
    small legacy uses), through a temporary name; returns the token count."""
    import torch

    tokens = torch.from_numpy(np.concatenate(chunks) if len(chunks) else np.zeros(0, dtype=np.int64))
    with atomic_path(path) as tmp:
        torch.save(tokens, tmp)
    return int(tokens.numel())


class TokenFile:
    """A `.bin` token file: the payload as a read-only numpy memmap plus the header fields.

    `headerless=True` reads a nanoGPT-style file (raw uint16 tokens, no header).
    Indexing and slicing go straight to the memmap: `tf[i:j]` reads only those tokens.
    """

    def __init__(self, path: str | os.PathLike, *, headerless: bool = False):
        self.path = Path(path)
        if headerless:
            size = self.path.stat().st_size
            if size % 2:
                raise ValueError(f"{self.path}: headerless uint16 file has an odd size ({size} bytes)")
            self.header = BinHeader(0, 0, np.dtype("<u2"), size // 2, 0, None, None)
            offset = 0
        else:
            self.header = read_header(self.path)
            offset = HEADER_BYTES
        n = self.header.num_tokens
        # np.memmap refuses zero-length maps; an empty file gets an empty array instead.
        self.tokens: np.ndarray = (
            np.memmap(self.path, dtype=self.header.dtype, mode="r", offset=offset, shape=(n,))
            if n
            else np.zeros(0, dtype=self.header.dtype)
        )

    dtype = property(lambda self: self.header.dtype)
    vocab_size = property(lambda self: self.header.vocab_size)
    eot_token = property(lambda self: self.header.eot_token)

    def __len__(self) -> int:
        return self.header.num_tokens

    def __getitem__(self, index: Any) -> Any:
        return self.tokens[index]

    def __repr__(self) -> str:
        h = self.header
        return (
            f"TokenFile({str(self.path)!r}, tokens={len(self)}, dtype={h.dtype.name}, "
            f"vocab_size={h.vocab_size}, eot_token={h.eot_token})"
        )


def load_tokens(path: str | os.PathLike, *, tokenizer: Any = None, headerless: bool = False) -> np.ndarray:
    """Tokens of one file of any supported kind, as a 1-D array (a memmap for `.bin`).

    `.bin`: llm.c/fastgpt header (or raw uint16 with `headerless=True`); `.pt`: a
    1-D integer tensor saved with torch.save (needs torch); `.txt`: the whole file
    encoded with `tokenizer` as one document followed by end-of-text (small data only).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pt":
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and len(obj) == 1:  # tolerate {"tokens": tensor}
            obj = next(iter(obj.values()))
        if not isinstance(obj, torch.Tensor) or obj.ndim != 1 or obj.is_floating_point():
            raise ValueError(f"{path}: expected a 1-D integer tensor of token ids")
        return obj.numpy()
    if suffix == ".txt":
        if tokenizer is None:
            raise ValueError(f"{path}: a .txt file needs a tokenizer to be encoded")
        ids = tokenizer.encode_ordinary("".join(iter_documents([path], "none")))
        if tokenizer.eot_token is not None:
            ids.append(tokenizer.eot_token)
        dtype = np.uint16 if tokenizer.n_vocab <= 2**16 else np.uint32
        return np.asarray(ids, dtype=dtype)
    return TokenFile(path, headerless=headerless).tokens


def _expand(path_or_glob: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Files named by a path, a glob, a directory (its *.bin), or a list of those; sorted so shards keep their order."""
    items = [path_or_glob] if isinstance(path_or_glob, (str, os.PathLike)) else list(path_or_glob)
    return expand_inputs(
        items,
        accept=lambda p: p.suffix == ".bin",
        kind="data files (.bin)",
        recursive=False,
        missing="no such data file",
    )


class TokenDataset:
    """(x, y) windows of `seq_len` tokens, y shifted one to the left of x, cut from one or more files.

    A window never straddles two files (shards are independent documents streams).
    Windows are addressed by their start: `start_window(i)` is a random window
    (any start), `dataset[i]` the i-th of the non-overlapping windows used for
    sequential passes. Neither needs an index list, so RAM stays O(number of files).
    """

    def __init__(
        self,
        path_or_glob: str | os.PathLike | Sequence[str | os.PathLike],
        seq_len: int,
        *,
        headerless: bool = False,
        tokenizer: Any = None,
        vocab_size: int | None = None,
    ):
        if seq_len < 1:
            raise ValueError(f"seq_len must be positive, got {seq_len}")
        self.seq_len = seq_len
        self.paths = _expand(path_or_glob)
        self.files = [load_tokens(p, tokenizer=tokenizer, headerless=headerless) for p in self.paths]
        self.vocab_size = vocab_size
        if vocab_size is not None:
            for p in self.paths:
                if p.suffix.lower() == ".bin" and not headerless:
                    file_vocab = read_header(p).vocab_size
                    if file_vocab is not None and file_vocab != vocab_size:
                        raise ValueError(
                            f"{p}: vocabulary mismatch: the file was written for {file_vocab} tokens, "
                            f"the tokenizer has {vocab_size}"
                        )
        lengths = np.array([len(f) for f in self.files], dtype=np.int64)
        # Random starts per file: a window needs seq_len + 1 tokens (+1 for the shifted targets).
        self._starts = np.maximum(lengths - seq_len, 0)
        self._cum_starts = np.cumsum(self._starts)
        # Sequential windows step by seq_len; the last one still needs its +1 target token.
        self._windows = np.maximum(lengths - 1, 0) // seq_len
        self._cum_windows = np.cumsum(self._windows)
        if self._cum_starts[-1] == 0:
            sizes = ", ".join(f"{p} has {n}" for p, n in zip(self.paths, lengths))
            raise ValueError(f"seq_len {seq_len} is longer than the data: need {seq_len + 1} tokens in a file; {sizes}")
        self.num_tokens = int(lengths.sum())

    @property
    def num_starts(self) -> int:
        """How many distinct windows random sampling draws from."""
        return int(self._cum_starts[-1])

    def __len__(self) -> int:
        """Non-overlapping windows: one sequential pass (an epoch) over the data."""
        return int(self._cum_windows[-1])

    def _window(self, file: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
        chunk = np.asarray(self.files[file][offset : offset + self.seq_len + 1], dtype=np.int64)
        if self.vocab_size is not None and chunk.size and int(chunk.max()) >= self.vocab_size:
            at = int(np.argmax(chunk >= self.vocab_size))
            raise ValueError(
                f"{self.paths[file]}: token id {int(chunk[at])} at position {offset + at} is outside "
                f"the model's vocabulary of {self.vocab_size}"
            )
        return chunk[:-1], chunk[1:]

    def start_window(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        """The window beginning at global start `start` in [0, num_starts)."""
        file = int(np.searchsorted(self._cum_starts, start, side="right"))
        before = int(self._cum_starts[file - 1]) if file else 0
        return self._window(file, start - before)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"window {index} out of range for {n} windows")
        index %= n
        file = int(np.searchsorted(self._cum_windows, index, side="right"))
        before = int(self._cum_windows[file - 1]) if file else 0
        return self._window(file, (index - before) * self.seq_len)

    def batch(
        self, step: int, batch_size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows `rank * batch_size ...` of global batch number `step` (global size batch_size * world_size).

        Every rank computes the same global batch and keeps its own slice, so N
        ranks together see exactly what one process with N times the batch sees.
        A batch depends only on (seed, step): resuming needs nothing but the step.
        """
        g = batch_size * world_size
        rows = range(rank * batch_size, (rank + 1) * batch_size)
        if shuffle:
            starts = np.random.default_rng([seed, step]).integers(0, self.num_starts, size=g)
            pairs = [self.start_window(int(starts[r])) for r in rows]
        else:
            pairs = [self[(step * g + r) % len(self)] for r in rows]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


class Batches:
    """Endless iterator of (x, y) torch int64 batches of shape (batch_size, seq_len) on `device`.

    Resumable: `state_dict()` is the number of batches drawn; loading it makes
    the iterator continue exactly where it was. On CUDA batches go through
    pinned memory with non-blocking copies so transfer overlaps compute.
    """

    def __init__(
        self,
        dataset: TokenDataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
    ):
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.step = 0

    @property
    def epoch(self) -> float:
        """Passes over the data so far (counting all ranks' rows)."""
        return self.step * self.batch_size * self.world_size / len(self.dataset)

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step, self.seed = int(state["step"]), int(state["seed"])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        x, y = self.dataset.batch(
            self.step, self.batch_size, shuffle=self.shuffle, seed=self.seed, rank=self.rank, world_size=self.world_size
        )
        self.step += 1
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        if self.device.type == "cuda":
            return xt.pin_memory().to(self.device, non_blocking=True), yt.pin_memory().to(
                self.device, non_blocking=True
            )
        return xt.to(self.device), yt.to(self.device)
