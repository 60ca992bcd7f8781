"""Exact parity with tiktoken on real vocabularies, real text and adversarial text."""

from __future__ import annotations

import os
import random
import signal
import string
from collections import defaultdict
from contextlib import suppress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgpt import Tokenizer, _core
from helpers.references import rank_file

# Fragments that stress each branch of the split patterns.
FRAGMENTS = [
    "'s",
    "'S",
    "'t",
    "'T",
    "'re",
    "'RE",
    "'Re",
    "'ve",
    "'VE",
    "'m",
    "'M",
    "'ll",
    "'LL",
    "'lL",
    "'d",
    "'D",
    "'",
    " ",
    "  ",
    "   ",
    "\t",
    "\t\t",
    "\n",
    "\n\n",
    "\r\n",
    "\r",
    " \n",
    "\n ",
    "\r\n\r\n",
    "\u00a0",
    "\u3000",
    "\u2009",
    "\u200b",
    "0",
    "12",
    "123",
    "1234",
    "٣",
    "²",
    "Ⅻ",
    "hello",
    "World",
    "HTTP",
    "camelCase",
    "ǅungla",
    "ﬁ",
    "ſ",
    "K",
    "ß",
    "İ",
    "e\u0301",
    "\u0301",
    "\u0915\u094d\u0937",
    "ā̃",
    "你好",
    "世界",
    "こんにちは",
    "한국어",
    "ᚠᛇᚻ",
    "עברית",
    "العربية",
    "ελληνικά",
    "кириллица",
    "🎉",
    "👍🏽",
    "👨‍👩‍👧",
    "🇫🇷",
    "!",
    "?",
    "...",
    "/",
    "//",
    "(",
    ")",
    "{",
    "}",
    "<|endoftext|>",
    "<|",
    "|>",
    "$",
    "_",
    "-",
    "—",
    "•",
    "\\",
    "\x00",
    "\x7f",
    "\ufffd",
    "\U0001f600",
    "\U000e0041",
]

stress_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=40).map("".join)


def test_stdlib_sources_match_tiktoken(openai_pair, stdlib_texts):
    tok, ref = openai_pair
    ours = tok.encode_ordinary_batch(stdlib_texts)
    theirs = ref.encode_ordinary_batch(stdlib_texts, num_threads=2)
    mismatched = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    assert not mismatched, f"{len(mismatched)} files differ, first: {mismatched[:3]}"
    assert sum(map(len, ours)) > 5_000_000


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=stress_text)
def test_adversarial_text_matches_tiktoken(openai_pair, text):
    tok, ref = openai_pair
    assert tok.encode_ordinary(text) == ref.encode_ordinary(text)
    assert tok.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_arbitrary_unicode_matches_tiktoken_and_round_trips(cl100k, cl100k_reference, text):
    ids = cl100k.encode_ordinary(text)
    assert ids == cl100k_reference.encode_ordinary(text)
    assert cl100k.decode_bytes(ids) == text.encode()


def test_gpt2_pattern_matches_tiktoken(cl100k_reference, stdlib_texts):
    """A GPT-2-pattern vocabulary: cl100k's ranks split with tiktoken's r50k pattern."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken_ext.openai_public import r50k_pat_str

    ranks = cl100k_reference._mergeable_ranks
    ref = tiktoken.Encoding(
        "gpt2-pattern", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 100257}
    )
    tok = Tokenizer.from_ranks(ranks, pattern="gpt2", special_tokens={"<|endoftext|>": 100257})
    texts = stdlib_texts[::7] + ["".join(random.Random(i).choices(FRAGMENTS, k=200)) for i in range(200)]
    assert tok.encode_ordinary_batch(texts) == ref.encode_ordinary_batch(texts)


@pytest.mark.parametrize("name", ["gpt2", "cl100k", "o200k"])
def test_split_matches_the_regex_module(name, stdlib_texts):
    """Our DFA splitting against an independent backtracking engine running the original pattern."""
    regex = pytest.importorskip("regex")
    pattern = regex.compile(Tokenizer.from_ranks({bytes([i]): i for i in range(256)}, pattern=name).pattern)
    texts = stdlib_texts[::25] + ["".join(random.Random(i).choices(FRAGMENTS, k=300)) for i in range(300)]
    for text in texts:
        assert _core.split(name, text) == pattern.findall(text)


def test_surrogates_behave_as_in_tiktoken(openai_pair):
    tok, ref = openai_pair
    for text in ["\ud800", "a\udfff b", "x \ud83d\ude00 \ud83d"]:
        assert tok.encode(text) == ref.encode(text)
        assert tok.encode_batch([text]) == [ref.encode(text)]
        assert tok.encode_to_numpy(text).tolist() == ref.encode(text)


def test_special_token_rules_match_tiktoken(openai_pair):
    tok, ref = openai_pair
    text = "a<|endoftext|>b<|endofprompt|>c"
    for allowed in [set(), {"<|endoftext|>"}, "all"]:
        for disallowed in [(), "all", {"<|endoftext|>"}]:
            try:
                expected = ref.encode(text, allowed_special=allowed, disallowed_special=disallowed)
            except ValueError:
                with pytest.raises(ValueError, match="<\\|endo"):
                    tok.encode(text, allowed_special=allowed, disallowed_special=disallowed)
            else:
                assert tok.encode(text, allowed_special=allowed, disallowed_special=disallowed) == expected
    assert tok.encode(text, allowed_special={"<|endoftext|>"}, disallowed_special=set()) == ref.encode(
        text, allowed_special={"<|endoftext|>"}, disallowed_special=set()
    )
    with pytest.raises(ValueError, match="<\\|endoftext\\|>"):
        tok.encode("x <|endoftext|>")
    with pytest.raises(ValueError, match="<\\|endoftext\\|>"):
        tok.encode_batch(["fine", "x <|endoftext|>"])
    assert tok.encode_ordinary(text) == ref.encode_ordinary(text)
    assert tok.eot_token == ref.eot_token
    assert tok.n_vocab == ref.n_vocab


def test_batch_and_numpy_equal_single(cl100k, stdlib_texts):
    texts = stdlib_texts[:50]
    single = [cl100k.encode(t, disallowed_special=()) for t in texts]
    for threads in (None, 1, 2):
        assert cl100k.encode_batch(texts, num_threads=threads, disallowed_special=()) == single
    assert cl100k.encode_ordinary_batch(texts, num_threads=2) == single
    array = cl100k.encode_to_numpy(texts[0], disallowed_special=())
    assert array.dtype.name == "uint32" and array.tolist() == single[0]
    with pytest.raises(ValueError, match="num_threads"):
        cl100k.encode_batch(texts, num_threads=0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_batches_in_a_forked_child(cl100k, stdlib_texts):
    # A forked child has none of its parent's helper threads (a thread pool that waits for
    # them hangs there): its batches must still finish, with the same ids.
    texts = stdlib_texts[:20]
    expected = cl100k.encode_ordinary_batch(texts, num_threads=2)  # starts the parent's helpers
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only with the right ids, killed by the alarm if stuck
        signal.alarm(60)
        same = cl100k.encode_ordinary_batch(texts, num_threads=2) == expected
        os._exit(0 if same else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


long_piece = st.tuples(
    st.sampled_from(
        ["ab", "aeinst", "xyzq", string.ascii_lowercase, string.ascii_letters, "!?.-=*#", " \t", "一丁七万丈三上下不与"]
    ),
    st.integers(65, 3000),
    st.randoms(use_true_random=False),
).map(lambda t: "".join(t[2].choices(t[0], k=t[1])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=long_piece)
def test_long_pieces_match_tiktoken(openai_pair, text):
    """Pieces over 64 bytes take the linear-time backtracking encoder."""
    tok, ref = openai_pair
    assert tok.encode_ordinary(text) == ref.encode_ordinary(text)


def is_one_character(token: bytes) -> bool:
    try:
        return len(token.decode()) == 1
    except UnicodeDecodeError:
        return False


def fragment_texts(ranks: dict[bytes, int]) -> list[str]:
    """Valid text in which each token that starts or ends inside a character (a fragment)
    crosses the edge of a character that is a token itself: where the encoder may not
    start a word's merge from that character whole."""
    chars = [t for t in ranks if len(t) in (2, 3) and is_one_character(t)]
    by_prefix, by_suffix = defaultdict(list), defaultdict(list)
    for c in chars:
        for k in range(1, len(c)):
            by_prefix[c[:k]].append(c)
            by_suffix[c[k:]].append(c)
    texts = []
    for token in ranks:
        # Its continuation bytes before the first character, and its last character's start.
        lead = next((i for i, b in enumerate(token[:3]) if b & 0xC0 != 0x80), min(3, len(token)))
        last = max((i for i, b in enumerate(token) if b & 0xC0 != 0x80), default=0)
        lefts = by_suffix.get(token[:lead], [])[:3] if lead else [b""]
        rights = (by_prefix.get(token[last:], []) if last > 0 else [])[:3] or [b""]
        for left in lefts:
            for right in rights:
                text = left[: len(left) - lead] + token + right[len(token) - last :]
                if text != token:
                    with suppress(UnicodeDecodeError):
                        texts.append(text.decode())
    return texts


def test_fragments_across_character_edges_match_tiktoken(openai_pair):
    """New words start their merge from whole characters except where a fragment token
    crosses a character's edge; every fragment of the real vocabularies, alone and next to
    another."""
    tok, ref = openai_pair
    texts = fragment_texts(ref._mergeable_ranks)
    texts += [a + b for a, b in zip(texts, texts[1:])]
    assert len(texts) > 1000
    ours, theirs = tok.encode_ordinary_batch(texts), ref.encode_ordinary_batch(texts)
    mismatched = [text for text, a, b in zip(texts, ours, theirs) if a != b]
    assert not mismatched, f"{len(mismatched)} differ, first: {mismatched[:3]}"


def test_every_three_byte_character_matches_tiktoken(openai_pair):
    """Words of CJK and other such scripts are cut into parts that are mostly single
    characters of three bytes, whose ids come from a table made at load: every character
    from U+0800 to U+FFFF, in lines of 20 in random order (so each meets other neighbours),
    on a tokenizer that has not seen them."""
    tok, ref = openai_pair
    chars = [chr(c) for c in range(0x800, 0x10000) if not 0xD800 <= c < 0xE000]
    random.Random(3).shuffle(chars)
    lines = ["".join(chars[i : i + 20]) for i in range(0, len(chars), 20)]
    fresh = Tokenizer.from_tiktoken(rank_file(ref.name))
    ours, theirs = fresh.encode_ordinary_batch(lines, num_threads=1), ref.encode_ordinary_batch(lines)
    mismatched = [line for line, a, b in zip(lines, ours, theirs) if a != b]
    assert not mismatched, f"{len(mismatched)} of {len(lines)} lines differ, first: {mismatched[:2]}"
    assert tok.encode_ordinary("\n".join(lines)) == ref.encode_ordinary("\n".join(lines))


WORST_CASES = {
    "one letter": "a" * 1_000_000,
    "random letters": "".join(random.Random(0).choices(string.ascii_letters, k=1_000_000)),
    "spaces before a letter": " " * 1_000_000 + "a",
    "random CJK": "".join(map(chr, random.Random(1).choices(range(0x4E00, 0xA000), k=100_000))),
}


@pytest.mark.parametrize("case", WORST_CASES)
def test_worst_cases_are_correct(cl100k, cl100k_reference, case):
    """tiktoken's regex overflows on a million spaces; there the pieces come from the
    `regex` module and each piece's BPE from tiktoken."""
    text = WORST_CASES[case]
    ours = cl100k.encode_ordinary(text)
    if case == "spaces before a letter":
        regex = pytest.importorskip("regex")
        pieces = regex.findall(cl100k.pattern, text)
        assert pieces == [" " * 999_999, " a"]
        expected = [i for piece in pieces for i in cl100k_reference._encode_single_piece(piece.encode())]
    else:
        expected = cl100k_reference.encode_ordinary(text)
    assert ours == expected
    assert cl100k.decode(ours) == text
