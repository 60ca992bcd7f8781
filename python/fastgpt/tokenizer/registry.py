"""OpenAI's published encodings by name, as `tiktoken.get_encoding` knows them.

    >>> enc = get_encoding("cl100k_base")      # doctest: +SKIP
    >>> encoding_for_model("gpt-4o").name      # doctest: +SKIP
    'o200k_base'

The split patterns, special tokens, file addresses and sha256 sums are facts from tiktoken's
definitions. Rank files are looked for, in order, in tiktoken's own cache (the same file
names, so a file tiktoken downloaded once serves both) and in the data folder of the
`bpe-openai` package; only then downloaded (sha256 checked) into tiktoken's cache. Each
file is checked against its sha256 wherever it comes from.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple

from fastgpt import _core
from fastgpt.tokenizer.core import ENDOFTEXT, Tokenizer

_BLOB = "https://openaipublic.blob.core.windows.net"

# The regexes exactly as tiktoken spells them: fastgpt recognises them and takes its fast
# splitters (see rust/src/split/mod.rs), and `enc._pat_str` reads back the same string.
R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


class RankFile(NamedTuple):
    stem: str  # the file's name without `.tiktoken` (also its name in bpe-openai's data folder)
    sha256: str

    @property
    def url(self) -> str:
        return f"{_BLOB}/encodings/{self.stem}.tiktoken"


class Spec(NamedTuple):
    rank_file: RankFile
    pattern: str
    special_tokens: dict[str, int]
    n_vocab: int | None  # checked when given


R50K = RankFile("r50k_base", "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930")
P50K = RankFile("p50k_base", "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069")
CL100K = RankFile("cl100k_base", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7")
O200K = RankFile("o200k_base", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d")

# GPT-2's original files; tiktoken builds `gpt2` from them. Its ranks are r50k_base's, so
# r50k_base's rank file serves when these are not in the cache.
GPT2_ENCODER_JSON = (
    f"{_BLOB}/gpt-2/encodings/main/encoder.json",
    "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
)

_FIM = {"<|fim_prefix|>": 0, "<|fim_middle|>": 1, "<|fim_suffix|>": 2}
_HARMONY = {
    "<|startoftext|>": 199998,
    ENDOFTEXT: 199999,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|call|>": 200012,
    "<|endofprompt|>": 200018,
}

SPECS: dict[str, Spec] = {
    "gpt2": Spec(R50K, R50K_PATTERN, {ENDOFTEXT: 50256}, 50257),
    "r50k_base": Spec(R50K, R50K_PATTERN, {ENDOFTEXT: 50256}, 50257),
    "p50k_base": Spec(P50K, R50K_PATTERN, {ENDOFTEXT: 50256}, 50281),
    "p50k_edit": Spec(P50K, R50K_PATTERN, {ENDOFTEXT: 50256, **{k: 50281 + v for k, v in _FIM.items()}}, None),
    "cl100k_base": Spec(
        CL100K,
        CL100K_PATTERN,
        {ENDOFTEXT: 100257, **{k: 100258 + v for k, v in _FIM.items()}, "<|endofprompt|>": 100276},
        None,
    ),
    "o200k_base": Spec(O200K, O200K_PATTERN, {ENDOFTEXT: 199999, "<|endofprompt|>": 200018}, None),
    # o200k_base with the gpt-oss chat format's tokens; every other id up to 201087 is reserved.
    "o200k_harmony": Spec(
        O200K,
        O200K_PATTERN,
        {
            **_HARMONY,
            # tiktoken also names 200018 <|reserved_200018|>; one id has one name here.
            **{f"<|reserved_{i}|>": i for i in (200000, 200001, 200004, 200009, 200010, 200011)},
            **{f"<|reserved_{i}|>": i for i in range(200013, 201088) if i != 200018},
        },
        None,
    ),
}

# Models to encodings (facts from tiktoken's table): exact names first, then prefixes.
MODEL_TO_ENCODING: dict[str, str] = {
    **dict.fromkeys(["o1", "o3", "o4-mini", "gpt-5", "gpt-4.1", "gpt-4o"], "o200k_base"),
    **dict.fromkeys(
        [
            "gpt-4",
            "gpt-3.5-turbo",
            "gpt-3.5",
            "gpt-35-turbo",
            "davinci-002",
            "babbage-002",
            "text-embedding-ada-002",
            "text-embedding-3-small",
            "text-embedding-3-large",
        ],
        "cl100k_base",
    ),
    **dict.fromkeys(
        [
            "text-davinci-003",
            "text-davinci-002",
            "code-davinci-002",
            "code-davinci-001",
            "code-cushman-002",
            "code-cushman-001",
            "davinci-codex",
            "cushman-codex",
        ],
        "p50k_base",
    ),
    **dict.fromkeys(["text-davinci-edit-001", "code-davinci-edit-001"], "p50k_edit"),
    **dict.fromkeys(
        [
            "text-davinci-001",
            "text-curie-001",
            "text-babbage-001",
            "text-ada-001",
            "davinci",
            "curie",
            "babbage",
            "ada",
            *(f"text-similarity-{m}-001" for m in ("davinci", "curie", "babbage", "ada")),
            *(f"text-search-{m}-doc-001" for m in ("davinci", "curie", "babbage", "ada")),
            "code-search-babbage-code-001",
            "code-search-ada-code-001",
        ],
        "r50k_base",
    ),
    "gpt2": "gpt2",
    "gpt-2": "gpt2",
}
MODEL_PREFIX_TO_ENCODING: dict[str, str] = {
    **dict.fromkeys(
        ["o1-", "o3-", "o4-mini-", "gpt-5", "gpt-4.5-", "gpt-4.1-", "chatgpt-4o-", "gpt-4o-", "ft:gpt-4o"], "o200k_base"
    ),
    **dict.fromkeys(
        ["gpt-4-", "gpt-3.5-turbo-", "gpt-35-turbo-", "ft:gpt-4", "ft:gpt-3.5-turbo", "ft:davinci-002"], "cl100k_base"
    ),
    "ft:babbage-002": "cl100k_base",
    "gpt-oss-": "o200k_harmony",
}


class EncodingNotFoundError(FileNotFoundError):
    """No rank file for an encoding was found, and none could be downloaded."""


_lock = threading.RLock()
_ENCODINGS: dict[str, Tokenizer] = {}


def list_encoding_names() -> list[str]:
    return list(SPECS)


def get_encoding(encoding_name: str) -> Tokenizer:
    """The encoder of a named encoding (`cl100k_base`, ...), made once and then shared."""
    if not isinstance(encoding_name, str):
        raise ValueError(f"Expected a string in get_encoding, got {type(encoding_name)}")
    enc = _ENCODINGS.get(encoding_name)
    if enc is not None:
        return enc
    with _lock:
        if encoding_name in _ENCODINGS:
            return _ENCODINGS[encoding_name]
        spec = SPECS.get(encoding_name)
        if spec is None:
            raise ValueError(f"Unknown encoding {encoding_name}; fastgpt knows {', '.join(SPECS)}")
        enc = _build(encoding_name, spec)
        _ENCODINGS[encoding_name] = enc
        return enc


def encoding_name_for_model(model_name: str) -> str:
    """The encoding a model uses; KeyError for a model not known."""
    if model_name in MODEL_TO_ENCODING:
        return MODEL_TO_ENCODING[model_name]
    for prefix, name in MODEL_PREFIX_TO_ENCODING.items():
        if model_name.startswith(prefix):
            return name
    raise KeyError(
        f"Could not automatically map {model_name} to a tokeniser. Use get_encoding with one of: {', '.join(SPECS)}"
    )


def encoding_for_model(model_name: str) -> Tokenizer:
    return get_encoding(encoding_name_for_model(model_name))


def is_registered(tok: Tokenizer) -> bool:
    """Whether `tok` is the shared encoder of its name (then it pickles by name)."""
    return _ENCODINGS.get(tok.name) is tok


# ---- finding the files -------------------------------------------------------------------


def cache_dir() -> Path | None:
    """tiktoken's cache: TIKTOKEN_CACHE_DIR, else DATA_GYM_CACHE_DIR, else the system
    temp folder's `data-gym-cache`; None when set to "" (caching off)."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return Path(os.environ[var]) if os.environ[var] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def cache_path(url: str) -> Path | None:
    """Where tiktoken caches the file at `url`: named by the sha1 of the address."""
    directory = cache_dir()
    return None if directory is None else directory / hashlib.sha1(url.encode()).hexdigest()


def bpe_openai_path(stem: str) -> Path | None:
    """The rank file in the `bpe-openai` package's data folder, if that is installed."""
    import importlib.util

    # Located, not imported: importing bpe_openai builds its own tokenizers (seconds).
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data" / f"{stem}.tiktoken.gz"


def _read_checked(path: Path, sha256: str, looked: list[str]) -> bytes | None:
    if not path.is_file():
        looked.append(f"{path} (absent)")
        return None
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    if hashlib.sha256(data).hexdigest() != sha256:
        looked.append(f"{path} (sha256 differs from the published file's)")
        return None
    return data


def download(url: str, timeout: float = 60.0) -> bytes:
    """The bytes at `url` (tests replace this with a function that fails)."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _download_to_cache(url: str, sha256: str, looked: list[str]) -> bytes | None:
    try:
        data = download(url)
    except OSError as exc:  # no network, HTTP errors (URLError is an OSError)
        looked.append(f"{url} (download failed: {exc})")
        return None
    if hashlib.sha256(data).hexdigest() != sha256:
        looked.append(f"{url} (downloaded, but its sha256 is not the published one)")
        return None
    target = cache_path(url)
    if target is not None:
        from fastgpt._util.atomic import atomic_path

        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
        except OSError:
            pass  # a read-only cache costs a download next time, nothing else
    return data


def find_rank_file(encoding_name: str, rank_file: RankFile, *, allow_download: bool = True) -> tuple[bytes, str]:
    """The contents of a rank file and where they came from; `EncodingNotFoundError`
    naming the encoding and every place looked when there is none."""
    looked: list[str] = []
    cached = cache_path(rank_file.url)
    if cached is None:
        looked.append("tiktoken's cache (off: TIKTOKEN_CACHE_DIR is empty)")
    else:
        data = _read_checked(cached, rank_file.sha256, looked)
        if data is not None:
            return data, str(cached)
    packaged = bpe_openai_path(rank_file.stem)
    if packaged is None:
        looked.append("the bpe-openai package's data folder (bpe-openai is not installed)")
    else:
        data = _read_checked(packaged, rank_file.sha256, looked)
        if data is not None:
            return data, str(packaged)
    if allow_download:
        data = _download_to_cache(rank_file.url, rank_file.sha256, looked)
        if data is not None:
            return data, rank_file.url
    raise EncodingNotFoundError(
        f"no rank file for the encoding {encoding_name!r}; looked in: {'; '.join(looked)}. "
        f"Put {rank_file.url} (sha256 {rank_file.sha256}) at {cached or 'TIKTOKEN_CACHE_DIR/<sha1 of the URL>'}"
    )


def _gpt2_ranks_from_cache() -> dict[bytes, int] | None:
    """GPT-2's own encoder.json, when tiktoken cached it (its ranks are the merges' order)."""
    url, sha256 = GPT2_ENCODER_JSON
    path = cache_path(url)
    data = None if path is None else _read_checked(path, sha256, [])
    if data is None:
        return None
    from fastgpt.tokenizer.huggingface import text_to_token

    encoder = json.loads(data)
    return {
        text_to_token(text, str(path)): rank
        for text, rank in encoder.items()
        if text not in ("<|endoftext|>", "<|startoftext|>")
    }


def _build(name: str, spec: Spec) -> Tokenizer:
    specials = list(spec.special_tokens.items())
    ranks = _gpt2_ranks_from_cache() if name == "gpt2" else None
    if ranks is not None:
        core = _core.CoreBPE.from_ranks(list(ranks.items()), spec.pattern, specials)
    else:
        data, source = find_rank_file(name, spec.rank_file)
        core = _core.CoreBPE.from_tiktoken(data, source, spec.pattern, specials)
    if spec.n_vocab is not None and core.n_vocab != spec.n_vocab:
        raise ValueError(f"{name}: the rank file gives {core.n_vocab} tokens, expected {spec.n_vocab}")
    return Tokenizer._from_core(core, name)
