"""Document cleaning and quality filters for `fastgpt cc extract`.

Thresholds follow Gopher (Rae et al. 2021, appendix A), C4 (Raffel et al. 2020)
and FineWeb (Penedo et al. 2024); each default carries its source. Filters run
cheapest first and a document is charged to the first filter that rejects it,
so the per-filter counts in stats.json depend on this order (that of `quality_reason`).
The word-based filters assume a language that separates words with spaces.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass, field, fields

import numpy as np


@dataclass
class FilterConfig:
    """Every threshold of `cc extract`; the CLI builds one flag per field."""

    lang: str = field(default="en", metadata={"help": "keep documents in this language (ISO 639-1 code)"})
    min_lang_score: float = field(default=0.65, metadata={"help": "minimum language-ID probability (FineWeb: 0.65)"})
    min_words: int = field(default=50, metadata={"help": "fewer words: rejected as too_short (Gopher: 50)"})
    max_words: int = field(default=100_000, metadata={"help": "more words: rejected as too_long (Gopher: 100,000)"})
    min_mean_word_length: float = field(default=3.0, metadata={"help": "Gopher: 3 characters"})
    max_mean_word_length: float = field(default=10.0, metadata={"help": "Gopher: 10 characters"})
    max_symbol_word_ratio: float = field(default=0.1, metadata={"help": "'#' and ellipses per word (Gopher: 0.1)"})
    max_bullet_lines: float = field(
        default=0.9, metadata={"help": "fraction of lines starting with a bullet (Gopher: 0.9)"}
    )
    max_ellipsis_lines: float = field(
        default=0.3, metadata={"help": "fraction of lines ending with an ellipsis (Gopher: 0.3)"}
    )
    min_alpha_words: float = field(default=0.8, metadata={"help": "fraction of words with a letter (Gopher: 0.8)"})
    min_stop_words: int = field(
        default=2, metadata={"help": "distinct English stop words required, 'en' only (Gopher: 2)"}
    )
    min_punct_lines: float = field(
        default=0.12, metadata={"help": "fraction of lines ending in punctuation (FineWeb: 0.12)"}
    )
    max_short_lines: float = field(
        default=0.67, metadata={"help": "fraction of lines under 30 characters (FineWeb: 0.67)"}
    )
    max_dup_lines: float = field(
        default=0.3, metadata={"help": "fraction of lines repeated in the document (Gopher: 0.3)"}
    )
    max_dup_line_chars: float = field(
        default=0.2, metadata={"help": "fraction of characters in repeated lines (Gopher: 0.2)"}
    )
    line_dedup_min_docs: int = field(
        default=3, metadata={"help": "a line found in this many distinct documents of a run is boilerplate and removed"}
    )


# Gopher's repetition thresholds: the most frequent n-gram may cover at most this
# fraction of the characters (n = 2..4), and all duplicated n-grams together at most
# this fraction (n = 5..10).
TOP_NGRAM_MAX = {2: 0.20, 3: 0.18, 4: 0.16}
DUP_NGRAM_MAX = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}

GOPHER_STOP_WORDS = frozenset(("the", "be", "to", "of", "and", "that", "have", "with"))
# Common Crawl's WARC-Identified-Content-Language header uses ISO 639-3 codes.
ISO639_3 = {
    "en": "eng",
    "de": "deu",
    "fr": "fra",
    "es": "spa",
    "it": "ita",
    "pt": "por",
    "nl": "nld",
    "ru": "rus",
    "zh": "zho",
    "ja": "jpn",
    "ko": "kor",
    "pl": "pol",
    "sv": "swe",
    "cs": "ces",
    "tr": "tur",
    "ar": "ara",
    "uk": "ukr",
    "fi": "fin",
    "da": "dan",
    "no": "nor",
    "hu": "hun",
    "ro": "ron",
    "el": "ell",
    "vi": "vie",
}
BULLETS = ("•", "-", "*", "‣", "▪", "●", "◦", "–")
ELLIPSES = ("...", "…")
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", "。", "！", "？")

# C4-style line cleaning: lines about cookies, policies, javascript or sign-ups are
# page furniture, not content; they are dropped before any document-level filter.
# Matched against lowercased text; searched per line only when the whole page matches.
BOILERPLATE_LINE = re.compile(
    r"cookie|privacy policy|terms of (?:use|service)|terms and conditions|all rights reserved|javascript"
    r"|skip to (?:main )?content|sign up for our newsletter|subscribe to our newsletter|log in to (?:reply|comment)"
)
_ALPHA_WORD = re.compile(r"\S*[^\W\d_]\S*")
_NORM_TABLE = str.maketrans("0123456789" + string.punctuation, "0" * 10 + " " * len(string.punctuation))


def clean_lines(text: str) -> tuple[list[str], int]:
    """Strip lines, drop empty and boilerplate ones; returns (lines, boilerplate lines dropped)."""
    lines = [s for s in (line.strip() for line in text.replace("\r", "").split("\n")) if s]
    if not BOILERPLATE_LINE.search(text.lower()):
        return lines, 0
    kept = [s for s in lines if not BOILERPLATE_LINE.search(s.lower())]
    return kept, len(lines) - len(kept)


def repetition_reason(words: list[str]) -> str | None:
    """Gopher's n-gram repetition filters, on rolling 64-bit hashes of the n-grams."""
    n_words = len(words)
    if n_words < 2:
        return None
    # Word identity only matters inside this document, so the process-local str hash is fine.
    ids = np.fromiter(map(hash, words), dtype=np.int64, count=n_words).view(np.uint64)
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=n_words)
    total = int(lengths.sum())
    # A duplicated (n+1)-gram is made of duplicated n-grams, so the covered fraction only
    # shrinks as n grows, while the limits shrink too: n = 5 under the smallest limit settles all.
    smallest = min(DUP_NGRAM_MAX.values())
    gram = ids
    prime = np.uint64(1_000_003)
    with np.errstate(over="ignore"):
        for n in range(2, 11):
            if n > n_words:
                return None
            gram = gram[:-1] * prime + ids[n - 1 :]  # hash of words[i : i + n]
            order = np.argsort(gram, kind="stable")
            ranked = gram[order]
            same = ranked[1:] == ranked[:-1]
            if n in TOP_NGRAM_MAX:
                if not same.any():
                    continue
                # Longest run of equal hashes = most frequent n-gram; its first start gives its length.
                ends = np.flatnonzero(np.concatenate((~same, [True])))
                runs = np.diff(ends, prepend=-1)
                top = int(np.argmax(runs))
                start = int(order[ends[top] - runs[top] + 1])
                chars = int(lengths[start : start + n].sum())
                if chars * int(runs[top]) / total > TOP_NGRAM_MAX[n]:
                    return "top_ngram"
                continue
            dup_sorted = np.zeros(len(gram), dtype=bool)
            dup_sorted[1:] |= same
            dup_sorted[:-1] |= same
            if not dup_sorted.any():
                return None
            dup_start = np.empty_like(dup_sorted)
            dup_start[order] = dup_sorted
            # A word is covered when a duplicated n-gram starting in the n positions up to it covers it.
            covered = np.convolve(dup_start.astype(np.int32), np.ones(n, dtype=np.int32))[:n_words] > 0
            fraction = float(lengths[covered].sum()) / total
            if fraction > DUP_NGRAM_MAX[n]:
                return "dup_ngram"
            if fraction <= smallest:
                return None
    return None


def quality_reason(lines: list[str], cfg: FilterConfig, lang_score=None) -> str | None:
    """First quality filter that rejects the cleaned `lines`, or None to keep.

    `lang_score(text) -> (lang, prob)` is called only once the cheap filters pass, since
    language ID is the most expensive step per byte.
    """
    text = "\n".join(lines)
    words = text.split()
    n_words = len(words)
    if "lorem ipsum" in text.lower():
        return "lorem_ipsum"
    if n_words < cfg.min_words:
        return "too_short"
    if n_words > cfg.max_words:
        return "too_long"
    if lang_score is not None:
        lang, prob = lang_score(text)
        if lang != cfg.lang or prob < cfg.min_lang_score:
            return "lang"
    mean_len = sum(map(len, words)) / n_words
    if not cfg.min_mean_word_length <= mean_len <= cfg.max_mean_word_length:
        return "mean_word_length"
    symbols = text.count("#") + text.count("...") + text.count("…")
    if symbols / n_words > cfg.max_symbol_word_ratio:
        return "symbol_ratio"
    n_lines = len(lines)
    if sum(line.startswith(BULLETS) for line in lines) / n_lines > cfg.max_bullet_lines:
        return "bullet_lines"
    if sum(line.endswith(ELLIPSES) for line in lines) / n_lines > cfg.max_ellipsis_lines:
        return "ellipsis_lines"
    if len(_ALPHA_WORD.findall(text)) / n_words < cfg.min_alpha_words:
        return "alpha_words"
    if cfg.lang == "en" and len(GOPHER_STOP_WORDS.intersection(text.lower().split())) < cfg.min_stop_words:
        return "stop_words"
    if sum(line.endswith(TERMINAL_PUNCT) for line in lines) / n_lines < cfg.min_punct_lines:
        return "punct_lines"
    if sum(len(line) < 30 for line in lines) / n_lines > cfg.max_short_lines:
        return "short_lines"
    seen: set[str] = set()
    dup_lines = dup_chars = 0
    for line in lines:
        if line in seen:
            dup_lines += 1
            dup_chars += len(line)
        else:
            seen.add(line)
    if dup_lines / n_lines > cfg.max_dup_lines:
        return "dup_lines"
    if dup_chars / len(text) > cfg.max_dup_line_chars:
        return "dup_line_chars"
    return repetition_reason(words)


def _hash64(data: bytes) -> int:
    # blake2b, not hash(): results must agree across worker processes and machines.
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def doc_hashes(lines: list[str]) -> tuple[int, np.ndarray]:
    """Hash of the whole document and one per line, after lowercasing, mapping digits to 0
    and ASCII punctuation to spaces and collapsing whitespace, so that pages differing only
    in those agree. A line left empty gets 0 (never treated as cross-document boilerplate)."""
    normed = [" ".join(line.split()) for line in "\n".join(lines).lower().translate(_NORM_TABLE).split("\n")]
    out = np.zeros(len(lines), dtype=np.uint64)
    for i, line in enumerate(normed):
        if line:
            out[i] = _hash64(line.encode()) or 1
    return _hash64(" ".join(normed).encode()), out


def config_fields():
    """(name, type, default, help) of each FilterConfig field, for building CLI flags."""
    types = {"str": str, "int": int, "float": float}
    return [(f.name, types[str(f.type)], f.default, f.metadata.get("help", "")) for f in fields(FilterConfig)]
