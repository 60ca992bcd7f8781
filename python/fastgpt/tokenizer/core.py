"""`Tokenizer`: byte-level BPE with tiktoken's API, backed by the Rust core.

    >>> tok = Tokenizer.from_ranks({bytes([i]): i for i in range(256)}, pattern="gpt2",
    ...                            special_tokens={"<|endoftext|>": 256})
    >>> tok.encode("hi<|endoftext|>", allowed_special="all")
    [104, 105, 256]
    >>> tok.decode([104, 105])
    'hi'

Policy lives here (special-token rules, file formats, atomic saves); loops over bytes
and tokens live in Rust (`fastgpt._core`).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fastgpt import _core
from fastgpt._util.atomic import atomic_path, check_writable
from fastgpt.data.inputs import fix_surrogates
from fastgpt.tokenizer import huggingface as hf_format

if TYPE_CHECKING:  # numpy loads on first use: training and encoding to lists never need it
    import numpy as np

    from fastgpt.tokenizer.bpe_train import TrainStats

FORMAT_VERSION = 1
ENDOFTEXT = "<|endoftext|>"

# Rank files whose name fastgpt recognises: their pattern and special tokens (facts from
# OpenAI's published encodings), so `Tokenizer.from_tiktoken("cl100k_base.tiktoken")` works.
KNOWN_ENCODINGS: dict[str, tuple[str, dict[str, int]]] = {
    "r50k_base": ("gpt2", {ENDOFTEXT: 50256}),
    "p50k_base": ("gpt2", {ENDOFTEXT: 50256}),
    "cl100k_base": (
        "cl100k",
        {
            ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": ("o200k", {ENDOFTEXT: 199999, "<|endofprompt|>": 200018}),
}

AllowedSpecial = Literal["all"] | Collection[str]
DisallowedSpecial = Literal["all"] | Collection[str]


class Tokenizer:
    """A byte-level BPE tokenizer. Build one with `from_tiktoken`, `from_huggingface`,
    `from_ranks`, `load` (or `train`); the constructor is internal."""

    def __init__(self, core: _core.CoreBPE, *, model: Literal["ranks", "merges"] = "ranks"):
        self._core = core
        self._model = model
        self.special_tokens: dict[str, int] = dict(sorted(core.special_tokens(), key=lambda item: item[1]))
        self._special_set = frozenset(self.special_tokens)
        self._disallowed_regex: dict[frozenset[str], re.Pattern[str]] = {}
        self.train_stats: TrainStats | None = None  # set by `train`

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_ranks(
        cls, ranks: dict[bytes, int], pattern: str = "cl100k", special_tokens: dict[str, int] | None = None
    ) -> Tokenizer:
        """tiktoken's model from a {token bytes: rank} dict; `pattern` is a name or a regex."""
        return cls(_core.CoreBPE.from_ranks(list(ranks.items()), pattern, _specials(special_tokens)))

    @classmethod
    def train(
        cls,
        data: str | os.PathLike | Sequence[str | os.PathLike] | Iterable[str],
        vocab_size: int,
        pattern: str = "cl100k",
        special_tokens: Sequence[str] = (ENDOFTEXT,),
        *,
        max_bytes: int | None = None,
        max_lines: int | None = None,
        text_field: str = "text",
        threads: int | None = None,
        max_words: int | None = None,
        progress: bool = True,
    ) -> Tokenizer:
        """Trains a byte-level BPE tokenizer of `vocab_size` tokens (special tokens included).

        `data` is files (a path, glob or directory, or a list of them: .txt, .jsonl with
        `text_field`, also .gz/.zst; .parquet and .arrow with the column `text_field`), a
        `datasets.Dataset` or `IterableDataset` (streamed, never materialised), or any other
        iterable of texts or of dicts holding `text_field`, e.g. `iter(list_of_str)`.
        The corpus streams through in batches, counted on `threads` cores (all by default);
        `max_bytes` / `max_lines` bound the sample read; at most `max_words` distinct
        pre-tokens are kept (the rarest are dropped past it, with a warning). Ids 0-255 are
        the bytes, then one per merge, then `special_tokens`. Ties between pairs of equal
        count go to the lowest (left id, right id), so a corpus always gives the same result.

            >>> tok = Tokenizer.train(iter(["low lower lowest"] * 50), 264, pattern="gpt2", progress=False)
            >>> tok.encode(" lowest"), tok.n_vocab
            ([262], 264)
        """
        from fastgpt.tokenizer import bpe_train

        ranks, specials, stats = bpe_train.train(
            data,
            vocab_size,
            pattern,
            special_tokens,
            max_bytes,
            max_lines,
            text_field,
            threads,
            bpe_train.DEFAULT_MAX_WORDS if max_words is None else max_words,
            progress,
        )
        tok = cls.from_ranks(ranks, pattern, specials)
        tok.train_stats = stats
        return tok

    @classmethod
    def from_tiktoken(
        cls, path: str | os.PathLike, pattern: str | None = None, special_tokens: dict[str, int] | None = None
    ) -> Tokenizer:
        """Loads a tiktoken rank file (`.tiktoken` or `.tiktoken.gz`). The pattern and
        special tokens default to those of a known encoding named by the file
        (`cl100k_base.tiktoken` ...); otherwise `pattern` is required."""
        path = Path(path)
        known = KNOWN_ENCODINGS.get(path.name.split(".")[0])
        if pattern is None:
            if known is None:
                names = ", ".join(_core.pattern_names())
                raise ValueError(
                    f"{path}: pass pattern= (one of {names}, or a regex); the file name names no known encoding"
                )
            pattern = known[0]
        if special_tokens is None:
            special_tokens = known[1] if known else {}
        data = path.read_bytes()
        if path.suffix == ".gz":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise ValueError(f"{path}: not a valid gzip file: {exc}") from None
        return cls(_core.CoreBPE.from_tiktoken(data, str(path), pattern, _specials(special_tokens)))

    @classmethod
    def from_huggingface(cls, path: str | os.PathLike) -> Tokenizer:
        """Loads a Hugging Face `tokenizer.json` of a byte-level BPE model."""
        args = hf_format.read(path)
        core = _core.CoreBPE.from_merges(
            args["vocab"], args["merges"], args["pattern"], args["specials"], args["direct_lookup"]
        )
        return cls(core, model="merges")

    @classmethod
    def load(cls, path: str | os.PathLike, pattern: str | None = None) -> Tokenizer:
        """Loads a tokenizer directory written by `save`, a `tokenizer.json`, or a tiktoken
        rank file (with `pattern` unless its name is a known encoding). A directory or a
        tokenizer.json holds its own pattern: a different `pattern` is an error."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such tokenizer directory or file")
        if path.is_dir():
            meta_path = path / "fastgpt.json"
            if not meta_path.exists():
                if (path / "tokenizer.json").exists():
                    return _same_pattern(cls.from_huggingface(path / "tokenizer.json"), path, pattern)
                raise FileNotFoundError(f"{path}: not a tokenizer directory (no fastgpt.json or tokenizer.json)")
            meta = _read_meta(meta_path)
            if meta["model"] == "ranks":
                tok = cls.from_tiktoken(path / "vocab.tiktoken", meta["pattern"]["regex"], meta["special_tokens"])
            else:
                tok = cls.from_huggingface(path / "tokenizer.json")
            _check_vocab(tok, meta, path)
            return _same_pattern(tok, path, pattern)
        if path.name.endswith(".json"):
            return _same_pattern(cls.from_huggingface(path), path, pattern)
        return cls.from_tiktoken(path, pattern)

    def save(self, directory: str | os.PathLike) -> Path:
        """Writes `fastgpt.json`, `vocab.tiktoken` and `tokenizer.json` to `directory`.
        Each file is written under a temporary name and renamed, so an interrupted save
        never leaves a file that looks complete."""
        directory = Path(directory)
        ranks = self._core.ranks()
        meta = {
            "format_version": FORMAT_VERSION,
            "model": "ranks" if self._model == "ranks" or self._core.is_rank_ordered() else "merges",
            "pattern": {"name": self.pattern_name, "regex": self.pattern},
            "special_tokens": self.special_tokens,
            "n_vocab": self.n_vocab,
            "n_ranks": len(ranks),  # lines of vocab.tiktoken: a cut file is caught on load
        }
        files = {
            "vocab.tiktoken": self._core.to_tiktoken(),
            "tokenizer.json": hf_format.dumps(ranks, self._core.merges(), self.pattern, self.special_tokens).encode(),
            "fastgpt.json": (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode(),
        }
        check_writable(directory, directory=True)
        try:
            if directory.exists():  # files the user keeps there (a README, ...) stay
                for name, data in files.items():
                    with atomic_path(directory / name) as tmp:
                        tmp.write_bytes(data)
            else:  # a new directory appears whole or not at all
                with atomic_path(directory, directory=True) as tmp:
                    for name, data in files.items():
                        (tmp / name).write_bytes(data)
        except OSError as exc:  # name the user's path, not a temporary one
            raise OSError(exc.errno, f"{directory}: cannot save the tokenizer: {exc.strerror or exc}") from None
        return directory

    # ---- properties ---------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        """One more than the largest token id, special tokens included."""
        return self._core.n_vocab

    @property
    def eot_token(self) -> int | None:
        return self.special_tokens.get(ENDOFTEXT)

    @property
    def pattern(self) -> str:
        return self._core.pattern

    @property
    def pattern_name(self) -> str | None:
        return self._core.pattern_name

    def token_bytes(self, token: int) -> bytes:
        return self._core.token_bytes(token)

    def __repr__(self) -> str:
        return f"<Tokenizer n_vocab={self.n_vocab} pattern={self.pattern_name or 'custom'}>"

    # ---- encoding -----------------------------------------------------------------------

    def encode_ordinary(self, text: str) -> list[int]:
        """Encodes `text` treating special tokens' text as ordinary text."""
        try:
            return self._core.encode_ordinary(text)
        except UnicodeEncodeError:
            return self._core.encode_ordinary(fix_surrogates(text))

    def encode(
        self, text: str, *, allowed_special: AllowedSpecial = (), disallowed_special: DisallowedSpecial = "all"
    ) -> list[int]:
        """Encodes `text`. Special tokens' text is an error unless allowed (then it becomes
        the special token) or removed from `disallowed_special` (then it is ordinary text)."""
        allowed, allow_all = self._special_policy(allowed_special, disallowed_special, (text,))
        try:
            return self._core.encode(text, allowed, allow_all)
        except UnicodeEncodeError:
            return self._core.encode(fix_surrogates(text), allowed, allow_all)

    def encode_to_numpy(
        self, text: str, *, allowed_special: AllowedSpecial = (), disallowed_special: DisallowedSpecial = "all"
    ) -> np.ndarray:
        """`encode` straight into a uint32 numpy array, with no Python list in between."""
        allowed, allow_all = self._special_policy(allowed_special, disallowed_special, (text,))
        try:
            buffer = self._core.encode_to_bytes(text, allowed, allow_all)
        except UnicodeEncodeError:
            buffer = self._core.encode_to_bytes(fix_surrogates(text), allowed, allow_all)
        import numpy as np

        return np.frombuffer(buffer, dtype="<u4")

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        num_threads: int | None = None,
        allowed_special: AllowedSpecial = (),
        disallowed_special: DisallowedSpecial = "all",
    ) -> list[list[int]]:
        """Encodes many texts on `num_threads` threads (all cores by default), GIL released."""
        texts = list(texts)
        allowed, allow_all = self._special_policy(allowed_special, disallowed_special, texts)
        return self._batch(texts, allowed, allow_all, num_threads)

    def encode_ordinary_batch(self, texts: Sequence[str], *, num_threads: int | None = None) -> list[list[int]]:
        return self._batch(list(texts), None, False, num_threads)

    def _batch(
        self, texts: list[str], allowed: set[str] | None, allow_all: bool, num_threads: int | None
    ) -> list[list[int]]:
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {num_threads}")
        try:
            return self._core.encode_batch(texts, allowed, allow_all, num_threads)
        except UnicodeEncodeError:
            return self._core.encode_batch([fix_surrogates(t) for t in texts], allowed, allow_all, num_threads)

    def _special_policy(
        self, allowed_special: AllowedSpecial, disallowed_special: DisallowedSpecial, texts: Iterable[str]
    ) -> tuple[set[str] | None, bool]:
        """tiktoken's rules, in one place: returns what Rust may emit, after raising if a
        text holds a disallowed special token."""
        if not self._special_set:
            return None, False
        allowed = self._special_set if allowed_special == "all" else frozenset(allowed_special)
        unknown = allowed - self._special_set
        if unknown:
            raise ValueError(
                f"allowed_special names tokens that are not special tokens of this tokenizer: {sorted(unknown)}"
            )
        disallowed = self._special_set - allowed if disallowed_special == "all" else frozenset(disallowed_special)
        if disallowed:
            for text in texts:
                found = self._find_disallowed(text, disallowed)
                if found is not None:
                    raise ValueError(
                        f"the text contains the special token {found!r}, which is disallowed. To encode it as the "
                        f"special token pass allowed_special={{{found!r}}} (or 'all'); to encode it as ordinary text "
                        f"pass disallowed_special=() (or a set without it)."
                    )
        if allowed == self._special_set:
            return None, True
        return set(allowed) or None, False

    def _find_disallowed(self, text: str, disallowed: frozenset[str]) -> str | None:
        if disallowed == self._special_set:
            try:
                return self._core.find_special(text)
            except UnicodeEncodeError:
                return self._core.find_special(fix_surrogates(text))
        regex = self._disallowed_regex.get(disallowed)
        if regex is None:
            regex = re.compile("|".join(re.escape(s) for s in sorted(disallowed, key=len, reverse=True)))
            self._disallowed_regex[disallowed] = regex
        match = regex.search(text)
        return match.group() if match else None

    # ---- decoding -----------------------------------------------------------------------

    def decode_bytes(self, tokens: Sequence[int] | np.ndarray) -> bytes:
        """The bytes of `tokens`; an id outside the vocabulary raises KeyError naming it."""
        return self._core.decode_bytes(_as_ids(tokens))

    def decode(self, tokens: Sequence[int] | np.ndarray, errors: str = "replace") -> str:
        """The text of `tokens`; invalid UTF-8 is handled by `errors` (as in `bytes.decode`)."""
        return self.decode_bytes(tokens).decode("utf-8", errors=errors)


def _as_ids(tokens: Sequence[int] | np.ndarray) -> list[int]:
    if hasattr(tokens, "tolist"):  # a numpy array
        return tokens.tolist()
    return list(tokens)


def _specials(special_tokens: dict[str, int] | None) -> list[tuple[str, int]]:
    return list((special_tokens or {}).items())


def _check_vocab(tok: Tokenizer, meta: dict, directory: Path) -> None:
    """The files must give the vocabulary fastgpt.json describes (a cut vocab.tiktoken
    loads without error, but encodes other ids)."""
    problems = []
    if meta.get("n_vocab") != tok.n_vocab:
        problems.append(f"fastgpt.json says n_vocab {meta.get('n_vocab')}, the files give {tok.n_vocab}")
    if meta["model"] == "ranks" and "n_ranks" in meta:
        lines = sum(1 for line in (directory / "vocab.tiktoken").read_bytes().splitlines() if line.strip())
        if lines != meta["n_ranks"]:
            problems.append(f"fastgpt.json says {meta['n_ranks']} ranks, vocab.tiktoken has {lines}")
    if problems:
        raise ValueError(f"{directory}: the tokenizer files disagree ({'; '.join(problems)}); re-save or retrain it")


def _same_pattern(tok: Tokenizer, path: Path, pattern: str | None) -> Tokenizer:
    if pattern is not None and pattern not in (tok.pattern_name, tok.pattern):
        raise ValueError(
            f"{path}: this tokenizer keeps its own split pattern ({tok.pattern_name or 'custom'}); "
            f"pattern {pattern!r} applies only to a bare .tiktoken file"
        )
    return tok


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: tokenizer format version {version!r}, but this fastgpt reads version {FORMAT_VERSION}; "
            "re-save the tokenizer with a matching fastgpt or retrain it"
        )
    if meta.get("model") not in ("ranks", "merges") or not isinstance(meta.get("pattern"), dict):
        raise ValueError(f"{path}: missing or invalid 'model' or 'pattern' field")
    return meta
