"""`Tokenizer`: byte-level BPE with tiktoken's API, backed by the Rust core.

    >>> tok = Tokenizer.from_ranks({bytes([i]): i for i in range(256)}, pattern="gpt2",
    ...                            special_tokens={"<|endoftext|>": 256})
    >>> tok.encode("hi<|endoftext|>", allowed_special="all")
    [104, 105, 256]
    >>> tok.decode([104, 105])
    'hi'

Policy lives here (special-token rules, file formats, atomic saves); loops over bytes
and tokens live in Rust (`fastgpt._core`). The whole public API of `tiktoken.Encoding` is
here with tiktoken's names, arguments, results and exceptions (tests/test_tiktoken_api.py
checks each against tiktoken), so `Tokenizer` is a drop-in for it.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import json
import operator
import os
import re
import reprlib
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from fastgpt import _core
from fastgpt._util.atomic import atomic_path, check_writable
from fastgpt.data.inputs import fix_surrogates
from fastgpt.tokenizer import huggingface as hf_format

if TYPE_CHECKING:  # numpy loads on first use: training and encoding to lists never need it
    import numpy as np

    from fastgpt.tokenizer.bpe_train import TrainStats

FORMAT_VERSION = 1
ENDOFTEXT = "<|endoftext|>"

AllowedSpecial = Literal["all"] | Collection[str]
DisallowedSpecial = Literal["all"] | Collection[str]

# UTF-8 continuation bytes (0b10xxxxxx): every other byte starts a character.
_CONTINUATION = bytes(range(0x80, 0xC0))
# Unicode's White_Space property (what `encode_with_unstable` treats as whitespace, as
# tiktoken does); Python's `str.isspace` differs (it also takes U+001C-U+001F).
_WHITE_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    map(chr, range(0x2000, 0x200B))
)


class UnknownTokenError(KeyError, OverflowError):
    """A token id outside the vocabulary, negative, or too large for a token id. It is a
    `KeyError` (as documented) and, like tiktoken's error for an id that does not fit in
    32 bits, an `OverflowError`, so code written for either catches it."""

    def __init__(self, token: object, n_vocab: int):
        super().__init__(f"token id {token} is not in the vocabulary (ids 0 to {n_vocab - 1})")
        self.token = token

    def __str__(self) -> str:  # the message, not KeyError's repr of it
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _unknown_token, (self.args[0], self.token)


class Tokenizer:
    """A byte-level BPE tokenizer. Build one with `from_tiktoken`, `from_huggingface`,
    `from_ranks`, `load`, `train` or `fastgpt.get_encoding`; or with tiktoken's
    constructor, `Tokenizer(name, pat_str=..., mergeable_ranks=..., special_tokens=...)`."""

    name: str

    def __init__(
        self,
        name: str,
        *,
        pat_str: str,
        mergeable_ranks: dict[bytes, int],
        special_tokens: dict[str, int],
        explicit_n_vocab: int | None = None,
    ):
        """tiktoken's `Encoding(...)`: `pat_str` is the split regex (or a pattern name),
        `mergeable_ranks` maps token bytes to rank (= id), `special_tokens` text to id;
        `explicit_n_vocab`, when given, must be the number of tokens and one more than the
        largest id."""
        if explicit_n_vocab:
            top = max([*mergeable_ranks.values(), *special_tokens.values()], default=-1)
            if len(mergeable_ranks) + len(special_tokens) != explicit_n_vocab or top != explicit_n_vocab - 1:
                raise ValueError(
                    f"{name}: explicit_n_vocab={explicit_n_vocab}, but there are {len(mergeable_ranks)} mergeable "
                    f"and {len(special_tokens)} special tokens, largest id {top}"
                )
        core = _core.CoreBPE.from_ranks(list(mergeable_ranks.items()), pat_str, _specials(special_tokens))
        self._setup(core, "ranks", name)

    @classmethod
    def _from_core(cls, core: _core.CoreBPE, name: str, model: Literal["ranks", "merges"] = "ranks") -> Tokenizer:
        tok = cls.__new__(cls)
        tok._setup(core, model, name)
        return tok

    def _setup(self, core: _core.CoreBPE, model: Literal["ranks", "merges"], name: str) -> None:
        self._core = core
        self._model = model
        self.name = name
        self._direct_lookup = True  # Hugging Face's `ignore_merges`; only `from_huggingface` sets it
        self.special_tokens: dict[str, int] = dict(sorted(core.special_tokens(), key=lambda item: item[1]))
        self._special_set = frozenset(self.special_tokens)
        self._special_values = frozenset(self.special_tokens.values())
        self._disallowed_regex: dict[frozenset[str], re.Pattern[str]] = {}
        self.train_stats: TrainStats | None = None  # set by `train`

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_ranks(
        cls,
        ranks: dict[bytes, int],
        pattern: str = "cl100k",
        special_tokens: dict[str, int] | None = None,
        *,
        name: str = "custom",
    ) -> Tokenizer:
        """tiktoken's model from a {token bytes: rank} dict; `pattern` is a name or a regex."""
        core = _core.CoreBPE.from_ranks(list(ranks.items()), pattern, _specials(special_tokens))
        return cls._from_core(core, name)

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
        tok = cls.from_ranks(ranks, pattern, specials, name="trained")
        tok.train_stats = stats
        return tok

    @classmethod
    def from_tiktoken(
        cls,
        path: str | os.PathLike,
        pattern: str | None = None,
        special_tokens: dict[str, int] | None = None,
        *,
        name: str | None = None,
    ) -> Tokenizer:
        """Loads a tiktoken rank file (`.tiktoken` or `.tiktoken.gz`). The pattern and
        special tokens default to those of a known encoding named by the file
        (`cl100k_base.tiktoken` ...); otherwise `pattern` is required."""
        path = Path(path)
        from fastgpt.tokenizer import registry  # OpenAI's encodings: patterns and special tokens by name

        known = registry.SPECS.get(path.name.split(".")[0])
        if pattern is None:
            if known is None:
                names = ", ".join(_core.pattern_names())
                raise ValueError(
                    f"{path}: pass pattern= (one of {names}, or a regex); the file name names no known encoding"
                )
            pattern = known.pattern
        if special_tokens is None:
            special_tokens = known.special_tokens if known else {}
        data = path.read_bytes()
        if path.suffix == ".gz":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise ValueError(f"{path}: not a valid gzip file: {exc}") from None
        core = _core.CoreBPE.from_tiktoken(data, str(path), pattern, _specials(special_tokens))
        return cls._from_core(core, name or path.name.split(".")[0])

    @classmethod
    def from_huggingface(cls, path: str | os.PathLike) -> Tokenizer:
        """Loads a Hugging Face `tokenizer.json` of a byte-level BPE model."""
        args = hf_format.read(path)
        core = _core.CoreBPE.from_merges(
            args["vocab"], args["merges"], args["pattern"], args["specials"], args["direct_lookup"]
        )
        path = Path(path)
        tok = cls._from_core(core, path.parent.name if path.name == "tokenizer.json" else path.stem, "merges")
        tok._direct_lookup = args["direct_lookup"]
        return tok

    @classmethod
    def load(cls, path: str | os.PathLike, pattern: str | None = None) -> Tokenizer:
        """Loads a tokenizer directory written by `save`, a `tokenizer.json`, a tiktoken
        rank file (with `pattern` unless its name is a known encoding), or an encoding's
        registry name (`cl100k_base`, see `fastgpt.get_encoding`) when no such path exists.
        A directory or a tokenizer.json holds its own pattern: a different `pattern` is an error."""
        from fastgpt.tokenizer import registry

        if str(path) in registry.SPECS and not Path(path).exists():
            return _same_pattern(registry.get_encoding(str(path)), Path(str(path)), pattern)
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
                tok = cls.from_tiktoken(
                    path / "vocab.tiktoken", meta["pattern"]["regex"], meta["special_tokens"], name=path.name
                )
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
    def max_token_value(self) -> int:
        """The largest token id, special tokens included."""
        return self._core.n_vocab - 1

    @property
    def eot_token(self) -> int | None:
        """The id of `<|endoftext|>`; None without one (where tiktoken raises KeyError)."""
        return self.special_tokens.get(ENDOFTEXT)

    @functools.cached_property
    def special_tokens_set(self) -> set[str]:
        return set(self.special_tokens)

    def is_special_token(self, token: int) -> bool:
        # Any integer (numpy's too); tiktoken asserts a Python int.
        return operator.index(token) in self._special_values

    def token_byte_values(self) -> list[bytes]:
        """The bytes of every regular token, sorted."""
        return sorted(token for token, _ in self._core.ranks())

    # tiktoken's private attributes that code written for tiktoken (its own tests too) reads.
    @property
    def _pat_str(self) -> str:
        return self._core.pattern

    @property
    def _special_tokens(self) -> dict[str, int]:
        return self.special_tokens

    @functools.cached_property
    def _mergeable_ranks(self) -> dict[bytes, int]:
        return dict(self._core.ranks())

    @property
    def pattern(self) -> str:
        return self._core.pattern

    @property
    def pattern_name(self) -> str | None:
        return self._core.pattern_name

    def token_bytes(self, token: int) -> bytes:
        """The bytes of one token, special tokens included (tiktoken's
        `decode_single_token_bytes`); an unknown id raises `UnknownTokenError`."""
        try:
            return self._core.token_bytes(token)
        except OverflowError:
            raise UnknownTokenError(token, self.n_vocab) from None
        except KeyError:
            raise UnknownTokenError(token, self.n_vocab) from None

    decode_single_token_bytes = token_bytes

    def __repr__(self) -> str:
        return f"<Tokenizer {self.name!r} n_vocab={self.n_vocab} pattern={self.pattern_name or 'custom'}>"

    # ---- pickling: the registry's encoders by name (as tiktoken does), others by value ------

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        from fastgpt.tokenizer import registry

        if registry.is_registered(self):
            return registry.get_encoding, (self.name,)
        if self._model == "ranks":
            return _unpickle_ranks, (self.name, self._core.to_tiktoken(), self.pattern, self.special_tokens)
        vocab = self._core.ranks()
        merges = self._core.merges()
        return _unpickle_merges, (self.name, vocab, merges, self.pattern, self.special_tokens, self._direct_lookup)

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
        if not allowed_special and disallowed_special == "all":
            # The default: no special token allowed, all disallowed. One scan for special
            # tokens' text, then ordinary encoding, at a third of the general path's cost.
            try:
                found = self._core.find_special(text) if self._special_set else None
                if found is None:
                    return self._core.encode_ordinary(text)
            except UnicodeEncodeError:
                return self.encode(fix_surrogates(text))
            _raise_disallowed(found)
        if not allowed_special and not disallowed_special:
            return self.encode_ordinary(text)  # nothing allowed, nothing checked: special text is plain text
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
        text: Sequence[str],
        *,
        num_threads: int | None = None,
        allowed_special: AllowedSpecial = (),
        disallowed_special: DisallowedSpecial = "all",
    ) -> list[list[int]]:
        """Encodes many texts on `num_threads` threads (all cores by default), GIL released."""
        _refuse_one_text("encode_batch", text)
        texts = list(text)
        try:
            allowed, allow_all = self._special_policy(allowed_special, disallowed_special, texts)
            return self._batch(texts, allowed, allow_all, num_threads)
        except TypeError:
            _name_a_text_that_is_not_str(texts)
            raise

    def encode_ordinary_batch(self, text: Sequence[str], *, num_threads: int | None = None) -> list[list[int]]:
        """`encode_ordinary` of many texts on `num_threads` threads (all cores by default)."""
        _refuse_one_text("encode_ordinary_batch", text)
        texts = list(text)
        try:
            return self._batch(texts, None, False, num_threads)
        except TypeError:
            _name_a_text_that_is_not_str(texts)
            raise

    def encode_single_token(self, text_or_bytes: str | bytes) -> int:
        """The id of the one token, regular or special, whose text or bytes this is;
        KeyError if there is none."""
        token = text_or_bytes.encode("utf-8") if isinstance(text_or_bytes, str) else text_or_bytes
        found = _core.token_id(self._core, token)
        if found is None:
            raise KeyError(token)
        return found

    def _encode_single_piece(self, text_or_bytes: str | bytes) -> list[int]:
        """BPE of the bytes as one piece (no split, no special tokens)."""
        piece = text_or_bytes.encode("utf-8") if isinstance(text_or_bytes, str) else text_or_bytes
        return self._encode_piece_like_encode(piece)

    def _encode_bytes(self, data: bytes) -> list[int]:
        """Encodes bytes that may not be UTF-8, as tiktoken does: the valid prefix as text;
        its last piece, with the bytes after it, as one BPE piece."""
        try:
            return self.encode_ordinary(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            valid = exc.start
        text = data[:valid].decode("utf-8")
        tokens = self.encode_ordinary(text)
        unstable_len = self._unstable_len(tokens, self._last_piece_len(text))
        tail = self.decode_bytes(tokens[len(tokens) - unstable_len :]) + data[valid:]
        del tokens[len(tokens) - unstable_len :]
        tokens.extend(self._encode_piece_like_encode(tail))
        return tokens

    def encode_with_unstable(
        self, text: str, *, allowed_special: AllowedSpecial = (), disallowed_special: DisallowedSpecial = "all"
    ) -> tuple[list[int], list[list[int]]]:
        """tiktoken's completion helper: the tokens of `text` that no continuation of it
        can change, and every token sequence that may follow them to cover the rest of
        `text` (in sorted order; tiktoken's order is arbitrary)."""
        allowed, allow_all = self._special_policy(allowed_special, disallowed_special, (text,))
        text = fix_surrogates(text)
        tokens = self._core.encode(text, allowed, allow_all)
        if allow_all or allowed:
            names = self._special_set if allow_all else frozenset(allowed or ())
            regex = re.compile("|".join(re.escape(s) for s in sorted(names, key=len, reverse=True)))
            tail = text
            for match in regex.finditer(text):
                tail = text[match.end() :]
        else:
            tail = text
        unstable_len = self._unstable_len(tokens, self._last_piece_len(tail))
        unstable = self.decode_bytes(tokens[len(tokens) - unstable_len :])
        del tokens[len(tokens) - unstable_len :]
        if not unstable:
            return tokens, []
        completions: set[tuple[int, ...]] = set()
        sorted_tokens = self._sorted_token_bytes
        # Single tokens that extend the unstable bytes.
        for token in _starting_with(sorted_tokens, unstable):
            completions.add((self._mergeable_ranks[token],))
        # The unstable bytes cut in two: the head, then any token that starts with the rest;
        # each such text contributes its tokens up to the first that covers all of them.
        encode_ordinary, token_bytes = self._core.encode_ordinary, self._core.token_bytes
        for cut in range(1, len(unstable)):
            head, rest = unstable[:cut], unstable[cut:]
            for token in _starting_with(sorted_tokens, rest):
                joined = head + token
                try:
                    encoded = encode_ordinary(joined.decode("utf-8"))  # strict UTF-8: no surrogates
                except UnicodeDecodeError:
                    encoded = _core.encode_piece(self._core, joined)
                covered = n = 0
                while covered < len(unstable) and n < len(encoded):
                    covered += len(token_bytes(encoded[n]))
                    n += 1
                completions.add(tuple(encoded[:n]))
        # A trailing whitespace character may later split off into a piece of its own.
        if len(unstable) > 1:
            size = _last_char_size(unstable)
            if size and len(unstable) > size and unstable[-size:].decode("utf-8") in _WHITE_SPACE:
                split = _core.encode_piece(self._core, unstable[:-size]) + _core.encode_piece(
                    self._core, unstable[-size:]
                )
                completions.add(tuple(split))
        return tokens, [list(c) for c in sorted(completions)]

    @functools.cached_property
    def _sorted_token_bytes(self) -> list[bytes]:
        return self.token_byte_values()

    def _last_piece_len(self, text: str) -> int:
        """How many tokens the last split piece of `text` (with no special token) encodes to."""
        pieces = _core.split(self.pattern, text) if text else []
        return len(self._encode_piece_like_encode(pieces[-1].encode("utf-8"))) if pieces else 0

    def _encode_piece_like_encode(self, piece: bytes) -> list[int]:
        # `encode` takes a piece that is a whole token as that token before any merging.
        whole = _core.token_id(self._core, piece) if self._direct_lookup else None
        if whole is not None and whole not in self._special_values:
            return [whole]
        return _core.encode_piece(self._core, piece)

    def _unstable_len(self, tokens: list[int], last_piece_len: int) -> int:
        """The last piece's token count, grown over the whitespace tokens before it: a
        continuation can regroup whitespace across the split (cl100k's `\\s*[\\r\\n]`)."""

        def all_space(token: int) -> bool:
            if token in self._special_values:
                return False
            return not self._core.token_bytes(token).strip(b" \n\t")

        if last_piece_len and all_space(tokens[len(tokens) - last_piece_len]):
            while last_piece_len < len(tokens) and all_space(tokens[len(tokens) - last_piece_len - 1]):
                last_piece_len += 1
        return last_piece_len

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
        if allowed_special == "all" and (disallowed_special == "all" or not disallowed_special):
            return None, True  # the usual call of chat templates: nothing is left to check
        allowed = frozenset(allowed_special)
        if not allowed <= self._special_set:
            allowed &= self._special_set  # tiktoken ignores names that are not special tokens
        disallowed = self._special_set - allowed if disallowed_special == "all" else frozenset(disallowed_special)
        if disallowed:
            for text in texts:
                found = self._find_disallowed(text, disallowed)
                if found is not None:
                    _raise_disallowed(found)
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
        """The bytes of `tokens`; an id outside the vocabulary (negative, or too large for
        an id) raises `UnknownTokenError`, a KeyError naming it."""
        try:
            return self._core.decode_bytes(_as_ids(tokens))
        except (OverflowError, KeyError):
            raise UnknownTokenError(_first_unknown(self, _as_ids(tokens)), self.n_vocab) from None

    def decode(self, tokens: Sequence[int] | np.ndarray, errors: str = "replace") -> str:
        """The text of `tokens`; invalid UTF-8 is handled by `errors` (as in `bytes.decode`)."""
        return self.decode_bytes(tokens).decode("utf-8", errors=errors)

    def decode_tokens_bytes(self, tokens: Sequence[int] | np.ndarray) -> list[bytes]:
        """The bytes of each token."""
        return [self.token_bytes(token) for token in _as_ids(tokens)]

    def decode_with_offsets(self, tokens: Sequence[int] | np.ndarray) -> tuple[str, list[int]]:
        """The text of `tokens` and, per token, the index of the character where it starts
        (for a token that starts inside a character, that character). Tokens that do not
        decode to valid UTF-8 raise UnicodeDecodeError."""
        parts = self.decode_tokens_bytes(tokens)
        offsets, chars = [], 0
        for part in parts:
            offsets.append(max(0, chars - (0x80 <= part[0] < 0xC0)) if part else chars)
            chars += len(part.translate(None, _CONTINUATION))
        return b"".join(parts).decode("utf-8", errors="strict"), offsets

    def decode_batch(
        self, batch: Sequence[Sequence[int]], *, errors: str = "replace", num_threads: int | None = None
    ) -> list[str]:
        """`decode` of each list of tokens."""
        _check_threads(num_threads)
        return [_named(i, tokens, self.decode, errors) for i, tokens in enumerate(batch)]

    def decode_bytes_batch(self, batch: Sequence[Sequence[int]], *, num_threads: int | None = None) -> list[bytes]:
        """`decode_bytes` of each list of tokens."""
        _check_threads(num_threads)
        return [_named(i, tokens, self.decode_bytes) for i, tokens in enumerate(batch)]


def _raise_disallowed(found: str) -> NoReturn:
    raise ValueError(
        f"the text contains the special token {found!r}, which is disallowed. To encode it as the "
        f"special token pass allowed_special={{{found!r}}} (or 'all'); to encode it as ordinary text "
        f"pass disallowed_special=() (or a set without it)."
    )


def _unknown_token(message: str, token: object) -> UnknownTokenError:
    error = UnknownTokenError.__new__(UnknownTokenError)
    error.args, error.token = (message,), token
    return error


def _name_a_text_that_is_not_str(texts: list) -> None:
    """Raises a TypeError naming the first text of a batch that is not a str, if one is: the
    core's own says only which type it met, not where in a batch of thousands."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            # reprlib: a repr that stays short however large the item is.
            raise TypeError(
                f"text {i} of the batch is of type {type(text).__name__}, not str: {reprlib.repr(text)}"
            ) from None


def _refuse_one_text(method: str, text: object) -> None:
    """A batch method given one str (or bytes) would encode each character as a text of its
    own, as tiktoken's does; that is always a mistake, so it is an error here."""
    if isinstance(text, (str, bytes)):
        raise TypeError(
            f"{method} takes a list of texts, not one {type(text).__name__} (its characters would be "
            f"taken as the texts); to encode one text use {method.removesuffix('_batch')}"
        )


def _named(i: int, tokens: Sequence[int], decode: Callable[..., Any], *args: object) -> Any:
    """`decode(tokens, *args)` for item `i` of a batch; an item that is no list of ids (a flat
    list of ids passed as the batch) is named in the error."""
    if isinstance(tokens, (int, str, bytes)) or not isinstance(tokens, Iterable):
        raise TypeError(
            f"item {i} of the batch is of type {type(tokens).__name__}, not a list of token ids: "
            f"{reprlib.repr(tokens)} (a batch is a list of token lists; to decode one list use "
            f"{decode.__name__})"
        )
    return decode(tokens, *args)


def _check_threads(num_threads: int | None) -> None:
    # Decoding is a copy of bytes per token: threads would cost more than they save, but
    # the argument is checked as `encode_batch` checks it.
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads must be at least 1, got {num_threads}")


def _first_unknown(tok: Tokenizer, ids: list[int]) -> object:
    for token in ids:
        if not isinstance(token, int):
            raise TypeError(f"a token id is an int, not {type(token).__name__}: {token!r}")
        if not 0 <= token < tok.n_vocab:
            return token
        try:
            tok._core.token_bytes(token)
        except KeyError:
            return token
    return None


def _starting_with(sorted_tokens: list[bytes], prefix: bytes) -> Iterable[bytes]:
    """The tokens (in a sorted list) that start with `prefix`."""
    i = bisect.bisect_left(sorted_tokens, prefix)
    while i < len(sorted_tokens) and sorted_tokens[i].startswith(prefix):
        yield sorted_tokens[i]
        i += 1


def _last_char_size(data: bytes) -> int:
    """The byte length of the UTF-8 character that ends `data`; 0 if it ends in no valid one."""
    for size in range(1, min(4, len(data)) + 1):
        try:
            if len(data[-size:].decode("utf-8")) == 1:
                return size
        except UnicodeDecodeError:
            continue
    return 0


def _unpickle_ranks(name: str, rank_file: bytes, pattern: str, special_tokens: dict[str, int]) -> Tokenizer:
    return Tokenizer._from_core(_core.CoreBPE.from_tiktoken(rank_file, name, pattern, _specials(special_tokens)), name)


def _unpickle_merges(
    name: str,
    vocab: list[tuple[bytes, int]],
    merges: list[tuple[int, int]],
    pattern: str,
    special_tokens: dict[str, int],
    direct_lookup: bool,
) -> Tokenizer:
    core = _core.CoreBPE.from_merges(vocab, merges, pattern, _specials(special_tokens), direct_lookup)
    tok = Tokenizer._from_core(core, name, "merges")
    tok._direct_lookup = direct_lookup
    return tok


def _as_ids(tokens: Sequence[int] | np.ndarray) -> list[int]:
    if type(tokens) is list:  # the common case, passed as is (Rust reads it without a copy)
        return tokens
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
