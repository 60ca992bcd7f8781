"""`fastgpt tokenizer encode | decode | info` through the real console entry point."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers.references import rank_file


def fastgpt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastgpt", *args], capture_output=True, text=True)


def test_encode_decode_info(cl100k, tmp_path):
    directory = cl100k.save(tmp_path / "tok")
    out = fastgpt("tokenizer", "encode", "--tokenizer", str(directory), "hello world")
    assert out.returncode == 0, out.stderr
    ids = [int(i) for i in out.stdout.split()]
    assert ids == cl100k.encode("hello world")
    out = fastgpt("tokenizer", "decode", "--tokenizer", str(directory), *map(str, ids))
    assert out.stdout == "hello world\n"
    info = json.loads(fastgpt("tokenizer", "info", str(rank_file("o200k_base"))).stdout)
    assert info["n_vocab"] == 200019 and info["pattern"] == "o200k" and info["eot_token"] == 199999
    special = fastgpt("tokenizer", "encode", "--tokenizer", str(directory), "--allow_special", "<|endoftext|>")
    assert special.stdout.split() == ["100257"]
    by_name = fastgpt("tokenizer", "encode", "--tokenizer", "o200k_base", "hello world")  # a registry name
    assert by_name.returncode == 0 and by_name.stdout.split() == ["24912", "2375"]


def test_errors_are_one_clear_line(cl100k, tmp_path):
    missing = fastgpt("tokenizer", "info", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"fastgpt: error: {tmp_path / 'nope'}: no such tokenizer directory or file"
    directory = cl100k.save(tmp_path / "tok")
    special = fastgpt("tokenizer", "encode", "--tokenizer", str(directory), "a <|endoftext|>")
    assert special.returncode == 1 and "disallowed" in special.stderr and "Traceback" not in special.stderr
    bad_id = fastgpt("tokenizer", "decode", "--tokenizer", str(directory), "999999")
    assert bad_id.returncode == 1 and "token id 999999 is not in the vocabulary" in bad_id.stderr
    for bad in ("4294967296", "-1"):  # ids no 32-bit token can have: the same one line, no OverflowError
        out = fastgpt("tokenizer", "decode", "--tokenizer", str(directory), "--", "15339", bad)
        assert out.returncode == 1 and out.stdout == ""
        assert out.stderr == f"fastgpt: error: token id {bad} is not in the vocabulary (ids 0 to 100276)\n"


def test_train_checks_the_output_first_and_names_the_users_path(tmp_path):
    """Defect 19: output errors came after training and named internal temporary paths."""
    (tmp_path / "corpus.txt").write_text("hello world, hello tokens\n" * 200)
    (tmp_path / "afile").write_text("not a directory")
    for out in [tmp_path / "afile", tmp_path / "afile" / "tok"]:
        run = fastgpt(
            "tokenizer", "train", "--train", str(tmp_path / "corpus.txt"), "--vocab_size", "300",
            "--output_dir", str(out), "--quiet",
        )  # fmt: skip
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
        assert (
            str(tmp_path / "afile") in run.stderr and ".tmp" not in run.stderr and "vocab.tiktoken." not in run.stderr
        )
        assert "trained" not in run.stdout, "the output is checked before any training"
    missing_input = fastgpt(
        "tokenizer", "train", "--train", str(tmp_path / "missing.txt"), "--vocab_size", "300",
        "--output_dir", str(tmp_path / "afile"),
    )  # fmt: skip
    assert "afile" in missing_input.stderr and "missing.txt" not in missing_input.stderr


def test_saved_tokenizer_respects_the_umask(cl100k, tmp_path):
    """Defect 24: the directory was created 0700 and the files 0600 whatever the umask."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        directory = cl100k.save(tmp_path / "tok")
        again = cl100k.save(tmp_path / "tok")  # into an existing directory: each file replaced
    finally:
        os.umask(old)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in again.iterdir()}
    assert modes == {"fastgpt.json": 0o644, "vocab.tiktoken": 0o644, "tokenizer.json": 0o644}
