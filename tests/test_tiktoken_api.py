"""tiktoken's whole public `Encoding` API on `Tokenizer`, checked against tiktoken itself on
the same real vocabularies: equal results and equal exception types. Also the registry
(`get_encoding` and friends, offline only) and `patch_tiktoken`."""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import pickle
import sys
from pathlib import Path

import hypothesis
import hypothesis.strategies as st
import pytest

import fastgpt
from fastgpt import Tokenizer
from fastgpt.tokenizer import EncodingNotFoundError, UnknownTokenError, registry
from fastgpt.tokenizer.huggingface import token_to_text
from helpers.references import rank_file

tiktoken = pytest.importorskip("tiktoken")

TEXTS = [
    "",
    "hello world",
    "hello <|endoftext|> world<|fim_prefix|>",
    "  leading and trailing  \n\n",
    "請考試我的軟件！12345 naïve café 👍🏽",
    "def f(x):\n    return x  # comment\n\n\n",
    "'s 're I'LL don't\r\n\r\n",
    "\ud83d lone surrogate",
]
UNSTABLE_TEXTS = ["hello fanta", "hello\n", " ", "x  ", "日本", "abc def", "'", "12345"]


@pytest.fixture(autouse=True)
def never_download(monkeypatch):
    """Tests never download: a download attempt fails as it would offline."""

    def offline(url: str, timeout: float = 60.0) -> bytes:
        raise OSError(f"tests never download ({url})")

    monkeypatch.setattr(registry, "download", offline)


@pytest.fixture(scope="module")
def pair(openai_pair):
    """(fastgpt's registry encoder, tiktoken's Encoding) of cl100k_base, then o200k_base."""
    theirs = openai_pair[1]
    return fastgpt.get_encoding(theirs.name), theirs


def outcome(call):
    """A call's result, or its exception's type (compared with issubclass below)."""
    try:
        return "ok", call()
    except Exception as exc:
        return "raised", type(exc)


def same(ours, theirs, method: str, *args, post=None, **kwargs):
    """`method(*args, **kwargs)` on both gives equal results or the same kind of exception."""

    def call(enc):
        result = getattr(enc, method)(*args, **kwargs)
        return result if post is None else post(result)

    assert_same(lambda: call(ours), lambda: call(theirs))


def assert_same(ours, theirs):
    (our_kind, our_value), (their_kind, their_value) = outcome(ours), outcome(theirs)
    assert our_kind == their_kind, (our_value, their_value)
    if our_kind == "raised":
        assert issubclass(our_value, their_value), (our_value, their_value)
    else:
        assert our_value == their_value


def test_every_public_member_is_there():
    public = {name for name in dir(tiktoken.Encoding) if not name.startswith("_")}
    instance_attributes = {"name", "max_token_value"}  # set in tiktoken's __init__
    assert public | instance_attributes <= set(dir(Tokenizer)) | {"name"}
    assert hasattr(fastgpt.get_encoding("cl100k_base"), "name")


def test_properties(pair):
    ours, theirs = pair
    assert ours.name == theirs.name
    assert (ours.max_token_value, ours.n_vocab, ours.eot_token) == (
        theirs.max_token_value,
        theirs.n_vocab,
        theirs.eot_token,
    )
    assert ours.special_tokens_set == theirs.special_tokens_set and isinstance(ours.special_tokens_set, set)
    assert ours.token_byte_values() == theirs.token_byte_values()
    assert ours._pat_str == theirs._pat_str and ours._special_tokens == theirs._special_tokens
    assert ours._mergeable_ranks == theirs._mergeable_ranks
    for token in [0, 255, theirs.eot_token, *theirs._special_tokens.values(), theirs.n_vocab, -1, 2**40]:
        assert ours.is_special_token(token) == theirs.is_special_token(token)
    np = pytest.importorskip("numpy")
    assert ours.is_special_token(np.int64(theirs.eot_token)) and not ours.is_special_token(np.uint32(5))
    with pytest.raises(TypeError):  # tiktoken: AssertionError
        ours.is_special_token("5")


def test_lists_of_ids_hold_one_reference_per_item(pair):
    """Lists of ids are filled in place with shared ints (one reference taken per item):
    the counts rise by exactly the items held and fall back when the lists go."""
    ours, theirs = pair
    text = "the cat sat on the mat, the end " * 50
    ids = ours.encode_ordinary(text)
    assert ids == theirs.encode_ordinary(text)
    the = ids[0]  # "the": an int of the tokenizer's own (CPython shares those up to 256)
    assert the > 256
    before = sys.getrefcount(the)
    lists = [ours.encode_ordinary(text) for _ in range(10)] + ours.encode_batch([text] * 10)
    count = sum(ids.count(the) for ids in lists)
    assert sys.getrefcount(the) == before + count
    assert all(ids == lists[0] and isinstance(ids, list) for ids in lists)
    del lists
    gc.collect()
    assert sys.getrefcount(the) == before


@pytest.mark.parametrize("text", TEXTS)
def test_encoding_calls(pair, text):
    ours, theirs = pair
    for kwargs in [
        {},
        {"allowed_special": "all"},
        {"disallowed_special": ()},
        {"allowed_special": {"<|endoftext|>"}, "disallowed_special": ()},
        {"allowed_special": {"<|endoftext|>", "<|not a special token|>"}},
        {"disallowed_special": {"<|fim_prefix|>"}},
    ]:
        same(ours, theirs, "encode", text, **kwargs)
        if "\ud83d" in text:  # tiktoken's encode_to_numpy (alone) raises on lone surrogates; ours is encode's
            assert_same(
                lambda kw=kwargs: ours.encode_to_numpy(text, **kw).tolist(), lambda kw=kwargs: theirs.encode(text, **kw)
            )
        else:
            same(ours, theirs, "encode_to_numpy", text, post=lambda a: a.tolist(), **kwargs)
        same(ours, theirs, "encode_batch", [text, "a", text], num_threads=2, **kwargs)
    assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)
    assert ours.encode_ordinary_batch([text, text[::-1]]) == theirs.encode_ordinary_batch([text, text[::-1]])
    assert ours.encode_to_numpy(text, disallowed_special=()).dtype == theirs.encode_to_numpy("").dtype
    same(ours, theirs, "encode_batch", [text], num_threads=0)
    valid = text.encode("utf-8", "replace")
    assert ours._encode_bytes(valid) == theirs._encode_bytes(valid)


def test_a_batch_item_that_is_no_str_is_named(pair):
    ours, theirs = pair
    for method in ["encode_batch", "encode_ordinary_batch"]:
        same(ours, theirs, method, ["a", 3, b"c"])  # a TypeError from both
        with pytest.raises(TypeError, match=r"^text 1 of the batch is of type int, not str: 3$"):
            getattr(ours, method)(["a", 3, b"c"])
        with pytest.raises(TypeError, match=r"text 2 of the batch is of type bytes, not str: b'c'"):
            getattr(ours, method)(("a", "b", b"c"), num_threads=1)


def test_a_batch_that_is_one_text_or_a_flat_list_of_ids_is_an_error(pair):
    ours, theirs = pair
    # tiktoken encodes each character of a str as a text of its own; that is always a mistake.
    assert theirs.encode_ordinary_batch("ab") == [theirs.encode_ordinary("a"), theirs.encode_ordinary("b")]
    for method in ["encode_batch", "encode_ordinary_batch"]:
        for one in ["ab", b"ab"]:
            with pytest.raises(TypeError, match=rf"^{method} takes a list of texts, not one {type(one).__name__} "):
                getattr(ours, method)(one)
    assert ours.decode_batch([[15339], (1917,), []]) == theirs.decode_batch([[15339], (1917,), []])
    for method in ["decode_batch", "decode_bytes_batch"]:
        with pytest.raises(TypeError, match=r"^item 0 of the batch is of type int, not a list of token ids: 15339 "):
            getattr(ours, method)([15339, 1917])
        with pytest.raises(TypeError, match=r"^item 1 of the batch is of type str, not a list of token ids: 'x' "):
            getattr(ours, method)([[15339], "x"])


def test_single_tokens(pair):
    ours, theirs = pair
    for value in ["hello", b" world", "<|endoftext|>", b"<|endofprompt|>", "hello world", b"\xff\xfe", "", 17, None]:
        same(ours, theirs, "encode_single_token", value)
    for token in [0, 1000, theirs.eot_token, theirs.max_token_value, 100261, theirs.n_vocab, -1, 2**32, 2**40, "7"]:
        same(ours, theirs, "decode_single_token_bytes", token)
        same(ours, theirs, "decode_tokens_bytes", [5, token])
    # A sample of the ids (o200k has unused ones): each token round-trips through its bytes.
    used = {*theirs._special_tokens.values(), *theirs._mergeable_ranks.values()}
    for token in [*range(0, theirs.n_vocab, 97), *range(199_990, 200_020), *theirs._special_tokens.values()]:
        same(ours, theirs, "decode_single_token_bytes", token)
        if token in used:
            assert ours.encode_single_token(ours.decode_single_token_bytes(token)) == token


@pytest.mark.parametrize("text", UNSTABLE_TEXTS)
def test_encode_with_unstable(pair, text):
    ours, theirs = pair
    stable, completions = ours.encode_with_unstable(text)
    their_stable, their_completions = theirs.encode_with_unstable(text)
    assert stable == their_stable
    assert sorted(completions) == sorted(their_completions) and completions == sorted(completions)
    with pytest.raises(ValueError):
        ours.encode_with_unstable(text + "<|endoftext|>")
    ends_special = ours.encode_with_unstable(text + "<|endoftext|>", allowed_special="all")
    assert ends_special == (theirs.encode(text + "<|endoftext|>", allowed_special="all"), [])
    theirs_mid = theirs.encode_with_unstable("<|endoftext|>" + text, allowed_special="all")
    ours_mid = ours.encode_with_unstable("<|endoftext|>" + text, allowed_special="all")
    assert ours_mid[0] == theirs_mid[0] and ours_mid[1] == sorted(theirs_mid[1])


def test_decoding_calls(pair):
    ours, theirs = pair
    hello = theirs.encode("hello <|endoftext|> wörld 👍", allowed_special="all")
    split_char = theirs.encode("👍")[:1]  # the first bytes of one character
    batches = [[hello, [], split_char], [hello, [-1]], [[theirs.n_vocab]], [[2**40]], [["x"]]]
    for tokens in [hello, [], split_char, [*hello, 2**33], [theirs.n_vocab + 5], [-1], [2**40], [1.5], (1, 2)]:
        same(ours, theirs, "decode", tokens)
        same(ours, theirs, "decode", tokens, errors="strict")
        same(ours, theirs, "decode", tokens, "ignore")
        same(ours, theirs, "decode_bytes", tokens)
        same(ours, theirs, "decode_with_offsets", tokens)
    for batch in batches:
        same(ours, theirs, "decode_batch", batch)
        same(ours, theirs, "decode_batch", batch, errors="strict")
        same(ours, theirs, "decode_bytes_batch", batch)
    same(ours, theirs, "decode_batch", [hello], num_threads=0)


def test_unknown_ids_are_a_key_error_naming_the_id(pair):
    ours, _ = pair
    for bad in (-1, 2**32, 2**40, ours.n_vocab):
        with pytest.raises(KeyError, match=f"token id {bad} is not in the vocabulary"):
            ours.decode([1, bad])
        with pytest.raises(UnknownTokenError) as caught:
            ours.decode_single_token_bytes(bad)
        assert caught.value.token == bad
        assert pickle.loads(pickle.dumps(caught.value)).args == caught.value.args


@hypothesis.given(text=st.text())
@hypothesis.settings(deadline=None, max_examples=150)
def test_hyp_round_trips(pair, text):
    ours, theirs = pair
    tokens = ours.encode(text, disallowed_special=())
    assert tokens == theirs.encode(text, disallowed_special=())
    clean = text.encode("utf-8", "replace").decode()  # lone surrogates become U+FFFD in both
    assert ours.decode(tokens) == clean
    assert ours.decode_with_offsets(tokens) == theirs.decode_with_offsets(tokens)
    assert ours.decode_batch([tokens, tokens[:1]]) == theirs.decode_batch([tokens, tokens[:1]])


@hypothesis.given(tokens=st.lists(st.integers(0, 100_255), max_size=12))
@hypothesis.settings(deadline=None, max_examples=150)
def test_hyp_offsets_of_any_tokens(pair, tokens):
    ours, theirs = pair
    same(ours, theirs, "decode_with_offsets", tokens)
    assert ours.decode_tokens_bytes(tokens) == theirs.decode_tokens_bytes(tokens)


@hypothesis.given(data=st.binary(max_size=40))
@hypothesis.settings(deadline=None, max_examples=150)
def test_hyp_encode_bytes(pair, data):
    ours, theirs = pair
    encoded = ours._encode_bytes(data)
    assert encoded == theirs._encode_bytes(data)
    assert ours.decode_bytes(encoded) == data
    if data:  # tiktoken's panics on b""
        assert ours._encode_single_piece(data) == theirs._encode_single_piece(data)
    else:
        assert ours._encode_single_piece(data) == []


@hypothesis.given(text=st.text(alphabet=st.sampled_from("ab \n\t'.1é日👍"), max_size=8))
@hypothesis.settings(deadline=None, max_examples=25)  # a text ending in a space takes ~1 s (o200k)
def test_hyp_encode_with_unstable(pair, text):
    ours, theirs = pair
    stable, completions = ours.encode_with_unstable(text)
    their_stable, their_completions = theirs.encode_with_unstable(text)
    assert stable == their_stable and completions == sorted(their_completions)


# ---- pickling ---------------------------------------------------------------------------


def test_pickling(tmp_path, byte_tokenizer):
    enc = fastgpt.get_encoding("cl100k_base")
    assert pickle.loads(pickle.dumps(enc)) is enc  # the registry's encoders travel by name
    assert len(pickle.dumps(enc)) < 200
    custom = Tokenizer(
        "custom_enc",
        pat_str=enc._pat_str,
        mergeable_ranks=enc._mergeable_ranks,
        special_tokens={"<|pickle|>": 100_300},
    )
    for tok in (custom, byte_tokenizer, Tokenizer.from_tiktoken(rank_file("o200k_base"))):
        back = pickle.loads(pickle.dumps(tok))
        assert type(back) is Tokenizer and back is not tok
        assert (back.name, back.pattern, back.special_tokens, back.n_vocab) == (
            tok.name,
            tok.pattern,
            tok.special_tokens,
            tok.n_vocab,
        )
        text = "hello world <|pickle|> <|endoftext|> 日本語"
        assert back.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert custom.encode("<|pickle|>", allowed_special="all") == [100_300]
    # A Hugging Face (merges) tokenizer keeps its model through a pickle.
    from tokenizers import Tokenizer as HFTokenizer

    path = byte_tokenizer.save(tmp_path / "tok") / "tokenizer.json"
    hf = Tokenizer.from_huggingface(path)
    back = pickle.loads(pickle.dumps(hf))
    assert back._model == "merges" and back.encode("hello there") == hf.encode("hello there")
    assert back.encode("hello there") == HFTokenizer.from_file(str(path)).encode("hello there").ids


def test_constructor_is_tiktokens(pair):
    ours, theirs = pair
    args = {
        "pat_str": theirs._pat_str,
        "mergeable_ranks": theirs._mergeable_ranks,
        "special_tokens": {"<|x|>": 250_000},
    }
    made = Tokenizer("mine", **args)
    assert made.name == "mine" and made.pattern_name == ours.pattern_name  # tiktoken's regex → the fast splitter
    assert made.encode("a <|x|>", allowed_special="all") == tiktoken.Encoding("t", **args).encode(
        "a <|x|>", allowed_special="all"
    )
    n = len(theirs._mergeable_ranks)
    wrong = {**args, "special_tokens": {"<|x|>": n}}
    Tokenizer("ok", **wrong, explicit_n_vocab=n + 1)
    with pytest.raises(ValueError, match="explicit_n_vocab"):
        Tokenizer("bad", **wrong, explicit_n_vocab=n + 2)


# ---- the registry -----------------------------------------------------------------------


@pytest.fixture
def fresh_registry(monkeypatch, tmp_path):
    """An empty registry whose cache is a temporary TIKTOKEN_CACHE_DIR."""
    monkeypatch.setattr(registry, "_ENCODINGS", {})
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_names_and_models_match_tiktoken():
    assert registry.list_encoding_names() == fastgpt.list_encoding_names()
    assert set(fastgpt.list_encoding_names()) == set(tiktoken.list_encoding_names())
    for name in fastgpt.list_encoding_names():
        spec = registry.SPECS[name]
        assert spec.pattern in (registry.R50K_PATTERN, registry.CL100K_PATTERN, registry.O200K_PATTERN)
    from tiktoken import model as tk_model

    models = [*tk_model.MODEL_TO_ENCODING, *(p + "2099-01-01" for p in tk_model.MODEL_PREFIX_TO_ENCODING)]
    for model in [*models, "gpt-4o", "gpt-4-0314", "not-a-model", "gpt"]:
        same(fastgpt, tiktoken, "encoding_name_for_model", model)
    assert fastgpt.encoding_for_model("gpt-4o") is fastgpt.get_encoding("o200k_base")
    with pytest.raises(ValueError, match="Unknown encoding"):
        fastgpt.get_encoding("cl200k_base")
    with pytest.raises(ValueError):
        fastgpt.get_encoding(None)


def test_specs_match_tiktokens_definitions():
    """Patterns and special tokens equal tiktoken's own definitions (read, not downloaded)."""
    from tiktoken_ext import openai_public

    def no_ranks(*args, **kwargs):
        return {b"x": 0}

    original = (openai_public.load_tiktoken_bpe, openai_public.data_gym_to_mergeable_bpe_ranks)
    openai_public.load_tiktoken_bpe = openai_public.data_gym_to_mergeable_bpe_ranks = no_ranks
    try:
        for name in fastgpt.list_encoding_names():
            theirs = openai_public.ENCODING_CONSTRUCTORS[name]()
            ours = registry.SPECS[name]
            assert ours.pattern == theirs["pat_str"]
            extra = {"<|reserved_200018|>"} if name == "o200k_harmony" else set()  # one id, one name
            assert ours.special_tokens == {k: v for k, v in theirs["special_tokens"].items() if k not in extra}
            assert ours.n_vocab == theirs.get("explicit_n_vocab")
    finally:
        openai_public.load_tiktoken_bpe, openai_public.data_gym_to_mergeable_bpe_ranks = original


def test_rank_file_from_tiktokens_cache(fresh_registry, monkeypatch):
    monkeypatch.setattr(registry, "bpe_openai_path", lambda stem: None)
    url = registry.CL100K.url
    fresh_registry.mkdir()
    # tiktoken's naming: the sha1 of the address.
    (fresh_registry / hashlib.sha1(url.encode()).hexdigest()).write_bytes(
        gzip.decompress(rank_file("cl100k_base").read_bytes())
    )
    enc = fastgpt.get_encoding("cl100k_base")
    assert enc.encode("hello world") == [15339, 1917] and enc.name == "cl100k_base"
    assert fastgpt.get_encoding("cl100k_base") is enc


def test_data_gym_cache_dir_and_the_bpe_openai_fallback(fresh_registry, monkeypatch, tmp_path):
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path / "gym"))
    assert registry.cache_path("u") == tmp_path / "gym" / hashlib.sha1(b"u").hexdigest()
    monkeypatch.delenv("DATA_GYM_CACHE_DIR")
    assert registry.cache_path("u").parent.name == "data-gym-cache"  # tiktoken's default
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "gym"))
    # A cached file whose sha256 is wrong is passed over; bpe-openai's copy is used.
    (tmp_path / "gym").mkdir()
    (tmp_path / "gym" / hashlib.sha1(registry.O200K.url.encode()).hexdigest()).write_bytes(b"aGk= 0\n")
    assert fastgpt.get_encoding("o200k_base").encode("hello world") == [24912, 2375]


def test_missing_rank_file_is_one_error_naming_where_it_looked(fresh_registry, monkeypatch):
    monkeypatch.setattr(registry, "bpe_openai_path", lambda stem: None)
    with pytest.raises(EncodingNotFoundError) as caught:
        fastgpt.get_encoding("cl100k_base")
    message = str(caught.value)
    assert "'cl100k_base'" in message and "\n" not in message
    assert str(fresh_registry / hashlib.sha1(registry.CL100K.url.encode()).hexdigest()) in message
    assert "bpe-openai" in message and "tests never download" in message
    assert isinstance(caught.value, FileNotFoundError)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # caching off, as in tiktoken
    with pytest.raises(EncodingNotFoundError, match="cache \\(off"):
        fastgpt.get_encoding("p50k_edit")


def test_a_download_is_checked_and_cached_under_tiktokens_name(fresh_registry, monkeypatch):
    """The download path with the network replaced by the published file's bytes (tests
    never download): sha256 checked, then kept in tiktoken's cache for the next time."""
    monkeypatch.setattr(registry, "bpe_openai_path", lambda stem: None)
    published = gzip.decompress(rank_file("cl100k_base").read_bytes())
    asked = []

    def served(url: str, timeout: float = 60.0) -> bytes:
        asked.append(url)
        return published if len(asked) == 1 else published[:-10]

    monkeypatch.setattr(registry, "download", served)
    assert fastgpt.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert asked == [registry.CL100K.url]
    assert (fresh_registry / hashlib.sha1(registry.CL100K.url.encode()).hexdigest()).read_bytes() == published
    assert [p.name for p in fresh_registry.iterdir()] == [hashlib.sha1(registry.CL100K.url.encode()).hexdigest()]
    with pytest.raises(EncodingNotFoundError, match="its sha256 is not the published one"):
        fastgpt.get_encoding("o200k_base")  # a corrupted download is refused, and not cached
    assert len(list(fresh_registry.iterdir())) == 1


def test_gpt2_from_gpt2s_own_files_in_the_cache(fresh_registry, monkeypatch, tmp_path):
    """tiktoken builds gpt2 from GPT-2's encoder.json; fastgpt reads the same cached file.
    A small synthetic pair of files, checked against tiktoken's own reader."""
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    order = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    order += [b for b in range(256) if b not in order]
    encoder = {token_to_text(bytes([b])): i for i, b in enumerate(order)}
    merges = [(b"h", b"e"), (b"l", b"l"), (b"he", b"ll"), (b" ", b"\n")]
    for i, (a, b) in enumerate(merges):
        encoder[token_to_text(a + b)] = 256 + i
    encoder["<|endoftext|>"] = 260
    (tmp_path / "vocab.bpe").write_text(
        "#version: 0.2\n" + "".join(f"{token_to_text(a)} {token_to_text(b)}\n" for a, b in merges)
    )
    (tmp_path / "encoder.json").write_text(json.dumps(encoder))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    theirs = data_gym_to_mergeable_bpe_ranks(str(tmp_path / "vocab.bpe"), str(tmp_path / "encoder.json"))
    data = (tmp_path / "encoder.json").read_bytes()
    fresh_registry.mkdir()
    url = registry.GPT2_ENCODER_JSON[0]
    (fresh_registry / hashlib.sha1(url.encode()).hexdigest()).write_bytes(data)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(fresh_registry))
    monkeypatch.setattr(registry, "GPT2_ENCODER_JSON", (url, hashlib.sha256(data).hexdigest()))
    assert registry._gpt2_ranks_from_cache() == theirs


# ---- patch_tiktoken ---------------------------------------------------------------------


def test_patch_and_unpatch():
    original = (tiktoken.get_encoding, tiktoken.encoding_for_model, tiktoken.Encoding, tiktoken.core.Encoding)
    fastgpt.patch_tiktoken()
    try:
        fastgpt.patch_tiktoken()  # twice is harmless
        enc = tiktoken.get_encoding("cl100k_base")
        assert enc is fastgpt.get_encoding("cl100k_base") and isinstance(enc, tiktoken.Encoding)
        assert tiktoken.registry.get_encoding("o200k_base") is fastgpt.get_encoding("o200k_base")
        assert tiktoken.encoding_for_model("gpt-4o") is fastgpt.get_encoding("o200k_base")
        assert tiktoken.model.encoding_for_model("gpt-4").name == "cl100k_base"
        assert set(tiktoken.list_encoding_names()) >= set(fastgpt.list_encoding_names())
        made = tiktoken.Encoding(
            "mine", pat_str=enc._pat_str, mergeable_ranks=enc._mergeable_ranks, special_tokens=enc._special_tokens
        )
        assert type(made) is Tokenizer and made.encode("hello world") == [15339, 1917]
        with pytest.raises(ValueError, match="Unknown encoding"):
            tiktoken.get_encoding("no_such_encoding")
    finally:
        fastgpt.unpatch_tiktoken()
    assert (tiktoken.get_encoding, tiktoken.encoding_for_model, tiktoken.Encoding, tiktoken.core.Encoding) == original
    assert not isinstance(tiktoken.Encoding, Tokenizer)


def test_a_prepare_py_loop_runs_unchanged(tmp_path):
    """nanoGPT's prepare.py shape, untouched, after the patch: same .bin as tiktoken's."""
    np = pytest.importorskip("numpy")
    from helpers.references import reference_encoding, stdlib_sources

    docs = [p.read_text(encoding="utf-8", errors="replace") for p in stdlib_sources()[:40]]

    def prepare(out: Path) -> None:  # as nanoGPT writes it, against the `tiktoken` module
        enc = tiktoken.get_encoding("cl100k_base")
        ids = [[*tokens, enc.eot_token] for tokens in enc.encode_ordinary_batch(docs)]
        arr = np.memmap(out, dtype=np.uint32, mode="w+", shape=(sum(map(len, ids)),))
        arr[:] = np.concatenate(ids)
        arr.flush()

    fastgpt.patch_tiktoken()
    try:
        prepare(tmp_path / "fastgpt.bin")
    finally:
        fastgpt.unpatch_tiktoken()
    reference = reference_encoding("cl100k_base")
    expected = np.concatenate([[*reference.encode_ordinary(d), reference.eot_token] for d in docs])
    assert np.array_equal(np.fromfile(tmp_path / "fastgpt.bin", dtype=np.uint32), expected)
