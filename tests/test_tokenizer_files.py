"""Loading and saving tokenizers (tiktoken rank files, Hugging Face tokenizer.json, the
tokenizer directory) and the errors bad input gets."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from fastgpt import Tokenizer, _core

SAMPLE = "Hello world! It's 2026: naïve café, 你好, emoji 🎉\n\n\tdef f(x):\n        return x**2  \n"


def test_import_does_not_import_torch():
    code = "import sys, fastgpt; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    pytest.importorskip("torch")
    lazy = "import fastgpt; assert callable(fastgpt.generate) and fastgpt.generate.generate"
    subprocess.run([sys.executable, "-c", lazy], check=True)


def test_save_and_load_round_trip(cl100k, tmp_path):
    out = cl100k.save(tmp_path / "tok")
    assert sorted(p.name for p in out.iterdir()) == ["fastgpt.json", "tokenizer.json", "vocab.tiktoken"]
    loaded = Tokenizer.load(out)
    assert loaded.encode(SAMPLE) == cl100k.encode(SAMPLE)
    assert loaded.special_tokens == cl100k.special_tokens and loaded.pattern == cl100k.pattern
    # Saving over an existing directory replaces the files.
    cl100k.save(out)
    assert Tokenizer.load(out / "vocab.tiktoken", pattern="cl100k").encode_ordinary(SAMPLE) == cl100k.encode_ordinary(
        SAMPLE
    )


def test_saved_files_give_the_same_ids_in_tiktoken_and_tokenizers(cl100k, tmp_path, stdlib_texts):
    tiktoken = pytest.importorskip("tiktoken")
    tokenizers = pytest.importorskip("tokenizers")
    out = cl100k.save(tmp_path / "tok")
    meta = json.loads((out / "fastgpt.json").read_text())
    from tiktoken.load import load_tiktoken_bpe

    ref = tiktoken.Encoding(
        "saved",
        pat_str=meta["pattern"]["regex"],
        mergeable_ranks=load_tiktoken_bpe(str(out / "vocab.tiktoken")),
        special_tokens=meta["special_tokens"],
    )
    hf = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    texts = [SAMPLE, *stdlib_texts[:300:3]]
    ours = cl100k.encode_ordinary_batch(texts)
    assert ours == ref.encode_ordinary_batch(texts)
    assert ours == [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    assert Tokenizer.from_huggingface(out / "tokenizer.json").encode_ordinary_batch(texts) == ours


def test_huggingface_trained_tokenizer_matches_tokenizers(tmp_path, stdlib_texts):
    """A byte-level BPE trained by Hugging Face itself (merges semantics, no whole-word lookup)."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(stdlib_texts[:200], trainer=trainer)
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    tok = Tokenizer.load(path)
    texts = [SAMPLE, *stdlib_texts[200:400]]
    assert tok.encode_ordinary_batch(texts) == [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    assert tok.special_tokens == {"<|endoftext|>": 0}
    # A merges-model tokenizer saved and loaded stays a merges model.
    again = Tokenizer.load(tok.save(tmp_path / "dir"))
    assert again.encode_ordinary(SAMPLE) == tok.encode_ordinary(SAMPLE)


def write_ranks(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def byte_lines():
    import base64

    return [f"{base64.b64encode(bytes([i])).decode()} {i}" for i in range(256)]


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("!!!notbase64 256", "line 257: invalid base64"),
        ("YWI= 255", "line 257: duplicate rank 255"),
        ("YWI= x", 'line 257: rank "x" is not'),
        ("YWI= 300", "rank 256 is missing"),
        ("YQ== 256", "line 257: duplicate token"),
        ("YWI=", "line 257: expected"),
    ],
)
def test_corrupt_rank_files_name_file_and_line(tmp_path, bad_line, message):
    path = write_ranks(tmp_path / "bad.tiktoken", [*byte_lines(), bad_line])
    with pytest.raises(ValueError, match=message) as info:
        Tokenizer.from_tiktoken(path, pattern="gpt2")
    assert str(path) in str(info.value)


def test_other_bad_inputs(tmp_path, byte_tokenizer):
    good = write_ranks(tmp_path / "ok.tiktoken", byte_lines())
    with pytest.raises(ValueError, match="gpt2, cl100k, o200k"):
        Tokenizer.from_tiktoken(good, pattern="cl50k")
    with pytest.raises(ValueError, match="not a valid regex: .*without closing parenthesis"):
        Tokenizer.from_tiktoken(good, pattern="([a-z]")
    with pytest.raises(ValueError, match="pass pattern="):
        Tokenizer.from_tiktoken(good)
    with pytest.raises(FileNotFoundError):
        Tokenizer.from_tiktoken(tmp_path / "missing.tiktoken", pattern="gpt2")
    truncated = tmp_path / "t.tiktoken.gz"
    truncated.write_bytes(gzip.compress(good.read_bytes())[:100])
    with pytest.raises(ValueError, match="gzip"):
        Tokenizer.from_tiktoken(truncated, pattern="gpt2")
    with pytest.raises(ValueError, match="single byte 0x05"):
        Tokenizer.from_ranks({bytes([i]): i for i in range(256) if i != 5}, pattern="gpt2")
    with pytest.raises(KeyError, match="token id 1000 is not in the vocabulary"):
        byte_tokenizer.decode([65, 1000])
    for bad in (-1, 2**32, 2**40):  # a KeyError naming the id; also the OverflowError tiktoken raises
        with pytest.raises(KeyError, match=f"token id {bad} is not in the vocabulary"):
            byte_tokenizer.decode([65, bad])
        with pytest.raises(OverflowError):
            byte_tokenizer.decode_single_token_bytes(bad)
    # As in tiktoken, allowed names that are not special tokens are ignored.
    assert byte_tokenizer.encode("x<|nope|>", allowed_special={"<|nope|>"}) == list(b"x<|nope|>")
    with pytest.raises(FileNotFoundError, match="not a tokenizer directory"):
        Tokenizer.load(tmp_path)


def test_decode_replaces_invalid_utf8(byte_tokenizer):
    assert byte_tokenizer.decode([0xE4, 0xBD]) == "\ufffd"
    assert byte_tokenizer.decode_bytes([0xE4, 0xBD]) == b"\xe4\xbd"
    with pytest.raises(UnicodeDecodeError):
        byte_tokenizer.decode([0xE4], errors="strict")


def test_old_or_broken_directories_are_clear_errors(cl100k, tmp_path):
    out = cl100k.save(tmp_path / "tok")
    meta = json.loads((out / "fastgpt.json").read_text())
    meta["format_version"] = 0
    (out / "fastgpt.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format version 0.*reads version 1"):
        Tokenizer.load(out)
    (out / "fastgpt.json").write_text("{not json")
    with pytest.raises(ValueError, match="fastgpt.json: not valid JSON"):
        Tokenizer.load(out)


def test_unsupported_huggingface_models_say_why(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {}}}))
    with pytest.raises(ValueError, match="not BPE"):
        Tokenizer.from_huggingface(path)
    path.write_text("[")
    with pytest.raises(ValueError, match="not valid JSON"):
        Tokenizer.from_huggingface(path)


def test_custom_regex_patterns(byte_tokenizer):
    words = Tokenizer.from_ranks({bytes([i]): i for i in range(256)}, pattern=r"\w+")
    assert words.encode("ab, c") == [97, 98, 99]  # unmatched text is skipped, as in tiktoken
    lookahead = Tokenizer.from_ranks({bytes([i]): i for i in range(256)}, pattern=r"\s+(?!\S)|\S++")
    assert _core.split(lookahead.pattern, "a  b") == ["a", " ", "b"]
    assert lookahead.pattern_name is None and byte_tokenizer.pattern_name == "gpt2"
