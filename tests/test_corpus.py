"""Corpus reading: formats, compression, document separation, invalid UTF-8 and errors."""

from __future__ import annotations

import gzip
import json

import pytest
import zstandard

from fastgpt.data.inputs import CorpusStats, batched, expand_inputs, iter_documents


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
