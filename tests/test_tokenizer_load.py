"""Loading a tokenizer directory: its files must agree with fastgpt.json, and a pattern given
on load must not be silently ignored (issue 11, defects 6 and 9)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fastgpt import Tokenizer


@pytest.fixture
def trained_dir(tmp_path, stdlib_texts):
    tok = Tokenizer.train(iter(stdlib_texts[:30]), 400, pattern="gpt2", progress=False)
    return tok, tok.save(tmp_path / "tok")


def test_defect06_a_cut_vocab_tiktoken_is_an_error(trained_dir):
    tok, directory = trained_dir
    assert Tokenizer.load(directory).encode("def main():") == tok.encode("def main():")
    vocab = directory / "vocab.tiktoken"
    lines = vocab.read_bytes().splitlines(keepends=True)
    vocab.write_bytes(b"".join(lines[:-10]))  # cut at a line boundary: still a valid rank file
    with pytest.raises(ValueError, match=r"tok: the tokenizer files disagree.*399 ranks, vocab.tiktoken has 389"):
        Tokenizer.load(directory)
    run = subprocess.run(
        [sys.executable, "-m", "fastgpt", "tokenizer", "info", str(directory)], capture_output=True, text=True
    )
    assert run.returncode == 1 and "the tokenizer files disagree" in run.stderr and "Traceback" not in run.stderr


def test_defect06_n_vocab_must_match_the_files(cl100k, tmp_path):
    directory = cl100k.save(tmp_path / "cl100k")
    assert Tokenizer.load(directory).n_vocab == cl100k.n_vocab  # holes between ids are fine
    meta = json.loads((directory / "fastgpt.json").read_text())
    meta["n_vocab"] += 1
    (directory / "fastgpt.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"says n_vocab {cl100k.n_vocab + 1}, the files give {cl100k.n_vocab}"):
        Tokenizer.load(directory)


def test_defect09_a_pattern_for_a_directory_is_honoured_or_refused(trained_dir):
    tok, directory = trained_dir
    assert Tokenizer.load(directory, pattern="gpt2").pattern == tok.pattern  # the directory's own: fine
    assert Tokenizer.load(directory, pattern=tok.pattern).pattern == tok.pattern
    with pytest.raises(ValueError, match=r"keeps its own split pattern \(gpt2\); pattern 'cl100k' applies only"):
        Tokenizer.load(directory, pattern="cl100k")
    with pytest.raises(ValueError, match="keeps its own split pattern"):
        Tokenizer.load(directory / "tokenizer.json", pattern="o200k")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastgpt",
            "tokenizer",
            "encode",
            "--tokenizer",
            str(directory),
            "--pattern",
            "o200k",
            "hi",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "keeps its own split pattern" in run.stderr and not run.stdout
