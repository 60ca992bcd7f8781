"""Reading inputs: formats, compression, document separation, invalid UTF-8, errors, and the
commands that read a corpus (pretokenize, tokenizer train, split) agreeing on all of it."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from fastgpt.data.inputs import CorpusStats, batched, expand_inputs, iter_blocks, iter_documents
from fastgpt.data.split import split


@pytest.fixture
def corpus_dir(tmp_path):
    (tmp_path / "a.txt").write_text("first line\nsecond line\n\nafter blank\n")
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress(b"gz one\ngz two\n"))
    (tmp_path / "c.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress(
            "".join(json.dumps({"text": t}) + "\n" for t in ["doc\none", "doc two"]).encode()
        )
    )
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    return tmp_path


def test_formats_and_separators(corpus_dir):
    paths = expand_inputs([corpus_dir])
    assert [p.name for p in paths] == ["a.txt", "b.txt.gz", "c.jsonl.zst"]
    stats = CorpusStats()
    docs = list(iter_documents(paths, "line", stats=stats))
    assert docs == ["first line", "second line", "after blank", "gz one", "gz two", "doc\none", "doc two"]
    assert stats.files == 3 and stats.documents == 7
    assert list(iter_documents(paths[:1], "blank")) == ["first line\nsecond line", "after blank"]
    assert list(iter_documents(paths[:1], "none")) == ["first line\nsecond line\n\nafter blank\n"]
    assert list(batched(docs, batch_bytes=20)) == [docs[:2], docs[2:5], docs[5:]]


def test_globs_repeats_and_invalid_utf8(corpus_dir):
    (corpus_dir / "bad.txt").write_bytes(b"ok \xff\xfe text \xef\xbf\xbd real\n")
    paths = expand_inputs([str(corpus_dir / "*.txt"), corpus_dir / "a.txt"])
    assert [p.name for p in paths] == ["a.txt", "bad.txt"]
    stats = CorpusStats()
    docs = list(iter_documents(paths[1:], stats=stats))
    assert docs == ["ok \ufffd\ufffd text \ufffd real"] and stats.invalid_utf8 == 2


def test_errors_name_the_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt: no such file"):
        expand_inputs([tmp_path / "missing.txt"])
    with pytest.raises(FileNotFoundError, match="matches no files"):
        expand_inputs([str(tmp_path / "*.txt")])
    with pytest.raises(FileNotFoundError, match="no text files"):
        expand_inputs([tmp_path])
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(ValueError, match="x.jsonl, line 2: no string field 'text'"):
        list(iter_documents([bad]))
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match="x.jsonl, line 1: not valid JSON"):
        list(iter_documents([bad]))
    truncated = tmp_path / "t.txt.gz"
    truncated.write_bytes(gzip.compress(b"hello\n" * 1000)[:40])
    with pytest.raises(ValueError, match="t.txt.gz: cannot read"):
        list(iter_documents([truncated]))
    with pytest.raises(ValueError, match="doc_sep"):
        list(iter_documents([bad], doc_sep="para"))


# ---- one reader for every command -------------------------------------------------------


def _zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def test_every_expansion_is_the_same(tmp_path):
    """Text corpora, WET files and token files are found by one expansion."""
    from fastgpt.cc.extract import expand_inputs as cc_expand
    from fastgpt.data.tokens import TokenDataset, write_tokens

    (tmp_path / "sub").mkdir()
    write_tokens(tmp_path / "b.bin", list(range(10)), vocab_size=300)
    write_tokens(tmp_path / "a.bin", list(range(10)), vocab_size=300)
    write_tokens(tmp_path / "sub" / "c.bin", list(range(10)), vocab_size=300)
    assert [p.name for p in TokenDataset(tmp_path, seq_len=2).paths] == ["a.bin", "b.bin"]
    (tmp_path / "x.warc.wet.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a WET file\n")
    assert [os.path.basename(p) for p in cc_expand([tmp_path])] == ["x.warc.wet.gz"]
    with pytest.raises(FileNotFoundError, match="nope.warc.wet.gz: no such file"):
        cc_expand([tmp_path / "nope.warc.wet.gz"])
    assert [p.name for p in expand_inputs([tmp_path])] == ["notes.txt"]
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "notes-checkpoint.txt").write_text("a copy\n")
    (tmp_path / ".notes.txt.tmp-1-ab").write_text("being written\n")
    (tmp_path / ".hidden.txt").write_text("hidden\n")
    assert [p.name for p in expand_inputs([tmp_path])] == ["notes.txt"]


def test_split_reads_compressed_inputs(tmp_path):
    docs = [f"document {i}" for i in range(50)]
    (tmp_path / "c.txt.gz").write_bytes(gzip.compress("".join(d + "\n" for d in docs[:25]).encode()))
    (tmp_path / "d.jsonl.zst").write_bytes(_zst("".join(json.dumps({"text": d}) + "\n" for d in docs[25:]).encode()))
    counts = split([tmp_path / "c.txt.gz", tmp_path / "d.jsonl.zst"], tmp_path / "t.txt", tmp_path / "e.txt", 0.2)
    out = (tmp_path / "t.txt").read_text().splitlines() + (tmp_path / "e.txt").read_text().splitlines()
    assert sorted(out) == sorted(docs) and counts["train"] + counts["eval"] == 50


# ---- defects of issue 11, each with the test that failed before its fix -----------------


@pytest.fixture(scope="module")
def byte_dir(tmp_path_factory):
    from fastgpt import Tokenizer

    tok = Tokenizer.from_ranks({bytes([i]): i for i in range(256)}, pattern="gpt2", special_tokens={EOT: 256})
    return tok.save(tmp_path_factory.mktemp("tok") / "bytes")


EOT = "<|endoftext|>"


def _every_reader(path: Path, byte_dir: Path, tmp_path: Path) -> list[str]:
    """The errors of pretokenize, tokenizer training and split on `path`."""
    from fastgpt import Tokenizer, pretokenize

    with pytest.raises(ValueError) as pre:
        pretokenize([path], byte_dir, tmp_path / "out.bin", progress=False)
    with pytest.raises(ValueError) as train:
        Tokenizer.train(path, 300, progress=False)
    with pytest.raises(ValueError) as spl:
        split([path], tmp_path / "t.txt", tmp_path / "e.txt")
    return [str(e.value) for e in (pre, train, spl)]


def test_defect02_a_zst_that_is_not_zstd_is_one_clear_error(tmp_path, byte_dir):
    bad = tmp_path / "random.txt.zst"
    bad.write_bytes(random.Random(0).randbytes(5000))
    with pytest.raises(ValueError, match=r"random.txt.zst: cannot read: not valid zstd data"):
        list(iter_documents([bad]))
    for message in _every_reader(bad, byte_dir, tmp_path):
        assert message.startswith(f"{bad}: cannot read: not valid zstd data")
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.txt"))
    run = subprocess.run(
        [sys.executable, "-m", "fastgpt", "pretokenize", "file", str(bad), "--tokenizer", str(byte_dir)],
        capture_output=True,
        text=True,
    )
    assert (
        run.returncode == 1
        and run.stderr.startswith(f"fastgpt: error: {bad}: cannot read")
        and "Traceback" not in run.stderr
    )


def test_defect05_a_truncated_zst_is_an_error_like_a_truncated_gz(tmp_path, byte_dir):
    text = "".join(f"line {i} of a corpus\n" for i in range(200_000)).encode()
    whole = _zst(text)
    cut = tmp_path / "cut.txt.zst"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    with pytest.raises(ValueError, match=r"cut.txt.zst: cannot read: the file ends inside a zstd frame"):
        list(iter_documents([cut]))
    for message in _every_reader(cut, byte_dir, tmp_path):
        assert message.startswith(f"{cut}: cannot read: the file ends inside a zstd frame")
    # Whole files, and files of several frames (zstd -c a b, pzstd), are read to the end.
    two = tmp_path / "two.txt.zst"
    two.write_bytes(whole + _zst(b"the second frame\n"))
    for block_bytes in (1000, 8 << 20):
        blocks = "".join(iter_blocks(two, CorpusStats(), block_bytes))
        assert blocks == text.decode() + "the second frame\n"
    empty = tmp_path / "empty.txt.zst"
    empty.write_bytes(b"")
    assert list(iter_documents([empty])) == []


def test_corrupt_gz_is_one_clear_error(tmp_path, byte_dir):
    data = bytearray(gzip.compress("".join(f"line {i} {i * i}\n" for i in range(20_000)).encode()))
    data[2000:2100] = bytes(b ^ 0x55 for b in data[2000:2100])
    bad = tmp_path / "bad.txt.gz"
    bad.write_bytes(bytes(data))
    for message in _every_reader(bad, byte_dir, tmp_path):
        assert message.startswith(f"{bad}: cannot read: Error -3 while decompressing data")


def test_defect08_split_never_writes_a_lossy_txt(tmp_path, byte_dir):
    """A .txt holds one document per line: split refuses to flatten a document into one, and
    the .jsonl it writes instead reads back as the same documents."""
    from fastgpt import pretokenize
    from fastgpt.data.tokens import TokenFile

    docs = [f"line one of {i}\nline two\\n of {i}" for i in range(40)]
    src = tmp_path / "corpus.jsonl"
    src.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    with pytest.raises(ValueError, match=r"corpus.jsonl, line 1: the document spans lines.*\.jsonl"):
        split(src, tmp_path / "t.txt", tmp_path / "e.txt", 0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl"]
    split(src, tmp_path / "t.jsonl", tmp_path / "e.jsonl", 0.1)
    back = list(iter_documents([tmp_path / "t.jsonl", tmp_path / "e.jsonl"]))
    assert sorted(back) == sorted(docs)
    pretokenize([tmp_path / "t.jsonl", tmp_path / "e.jsonl"], byte_dir, tmp_path / "all.bin", progress=False)
    ids = TokenFile(tmp_path / "all.bin")[:].tolist()
    assert sorted(bytes(ids[i : j - 1]).decode() for i, j in _doc_spans(ids)) == sorted(docs)
    # Documents without line breaks fit a .txt line and come back unchanged.
    flat = tmp_path / "flat.jsonl"
    flat.write_text("".join(json.dumps({"text": d.replace("\n", " ")}) + "\n" for d in docs))
    split(flat, tmp_path / "ft.txt", tmp_path / "fe.txt", 0.1)
    assert sorted(iter_documents([tmp_path / "ft.txt", tmp_path / "fe.txt"])) == sorted(
        d.replace("\n", " ") for d in docs
    )


def _doc_spans(ids: list[int]) -> list[tuple[int, int]]:
    ends = [i + 1 for i, t in enumerate(ids) if t == 256]
    return list(zip([0, *ends[:-1]], ends))


def test_defect08_cc_extract_writes_no_lossy_txt(tmp_path):
    from fastgpt.cc.extract import extract

    with pytest.raises(ValueError, match=r"c.txt: .*\.jsonl"):
        extract([tmp_path], str(tmp_path / "c.txt"))


def test_defect12_split_refuses_outputs_that_would_lose_data(tmp_path):
    src = tmp_path / "x.jsonl"
    src.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(100)))
    before = src.read_bytes()
    with pytest.raises(ValueError, match=r"--train and --eval are the same file"):
        split(src, tmp_path / "same.jsonl", tmp_path / "same.jsonl")
    with pytest.raises(ValueError, match=r"x.jsonl: --train would overwrite an input"):
        split(src, src, tmp_path / "e.jsonl")
    with pytest.raises(ValueError, match=r"x.jsonl: --eval would overwrite an input"):
        split([tmp_path], tmp_path / "t.jsonl", tmp_path / "x.jsonl")
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["x.jsonl"]
    run = subprocess.run(
        [sys.executable, "-m", "fastgpt", "split", str(src), "--train", str(src), "--eval", str(tmp_path / "e.txt")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "would overwrite an input" in run.stderr and src.read_bytes() == before


def test_defect17_lone_surrogates_are_u_fffd_everywhere(tmp_path, byte_dir):
    from fastgpt import Tokenizer, pretokenize
    from fastgpt.data.tokens import TokenFile

    src = tmp_path / "s.jsonl"
    src.write_text('{"text": "a\\ud800b"}\n{"text": "pair \\ud83d\\ude00 ok"}\n{"text": "end\\udfff"}\n')
    expected = ["a\ufffdb", "pair \U0001f600 ok", "end\ufffd"]
    stats = CorpusStats()
    assert list(iter_documents([src], stats=stats)) == expected and stats.invalid_utf8 == 2
    pretokenize([src], byte_dir, tmp_path / "s.bin", progress=False)
    assert TokenFile(tmp_path / "s.bin")[:].tolist() == [b for d in expected for b in [*d.encode(), 256]]
    split(src, tmp_path / "t.jsonl", tmp_path / "e.txt", 0.0)
    assert sorted(iter_documents([tmp_path / "t.jsonl"])) == sorted(expected)
    split(src, tmp_path / "t.txt", tmp_path / "e.txt", 0.0)
    assert sorted((tmp_path / "t.txt").read_text(encoding="utf-8").splitlines()) == sorted(expected)
    with pytest.warns(UserWarning, match="2 invalid"):
        trained = Tokenizer.train(src, 257, special_tokens=[], progress=False)
    assert trained.train_stats.invalid_utf8 == 2


def test_defect18_split_replaces_invalid_utf8_and_says_so(tmp_path):
    src = tmp_path / "bad.txt"
    src.write_bytes(b"good line\nbad \xff\xfe line\n")
    counts = split(src, tmp_path / "t.txt", tmp_path / "e.txt", 0.0)
    assert sorted((tmp_path / "t.txt").read_text(encoding="utf-8").splitlines()) == [
        "bad \ufffd\ufffd line",
        "good line",
    ]
    assert counts["invalid_utf8"] == 2
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastgpt",
            "split",
            str(src),
            "--train",
            str(tmp_path / "t2.txt"),
            "--eval",
            str(tmp_path / "e2.txt"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and "replaced 2 invalid UTF-8 sequences" in run.stderr


def test_defect20_json_errors_are_shown_whole(tmp_path):
    bad = tmp_path / "ctl.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": "tab\there"}\n')
    with pytest.raises(ValueError) as exc:
        list(iter_documents([bad]))
    assert str(exc.value) == f"{bad}, line 2: not valid JSON: Invalid control character at column 14"
    with pytest.raises(ValueError, match=r"ctl.jsonl, line 2: not valid JSON: Invalid control character at column"):
        split(bad, tmp_path / "t.txt", tmp_path / "e.txt")


def test_split_leaves_nothing_and_cleans_what_a_killed_split_left(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(100)))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "out" / f".t.jsonl.tmp-{dead.pid}-0000"
    stale.mkdir(parents=True)
    (stale / "train-0").write_text("a bucket of a killed run\n")
    counts = split(src, tmp_path / "out" / "t.jsonl", tmp_path / "out" / "e.jsonl", 0.1, memory_mb=0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["e.jsonl", "t.jsonl"]
    assert counts["train"] + counts["eval"] == 100 and counts["buckets"] >= 1
