"""The one atomic writer: whole output or none, umask permissions, stale temporaries removed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastgpt._util.atomic import atomic_path, remove_stale, temp_name


def test_file_appears_whole_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "sub" / "out.txt") as tmp:
            tmp.write_text("hello")
            assert not (tmp_path / "sub" / "out.txt").exists()
    finally:
        os.umask(old)
    out = tmp_path / "sub" / "out.txt"
    assert out.read_text() == "hello" and out.stat().st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path / "sub") == ["out.txt"]


def test_error_leaves_nothing_and_keeps_the_old_file(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert out.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_directory_replaced_as_a_whole(tmp_path):
    d = tmp_path / "tok"
    d.mkdir()
    (d / "stale").write_text("x")
    old = os.umask(0o022)
    try:
        with atomic_path(d, directory=True) as tmp:
            (tmp / "a").write_text("1")
    finally:
        os.umask(old)
    assert sorted(os.listdir(d)) == ["a"] and d.stat().st_mode & 0o777 == 0o755
    assert os.listdir(tmp_path) == ["tok"]


def test_refuses_a_directory_as_file_and_an_existing_path(tmp_path):
    with pytest.raises(IsADirectoryError, match=str(tmp_path)), atomic_path(tmp_path):
        pass
    (tmp_path / "x").write_text("1")
    with pytest.raises(FileExistsError, match="x already exists"), atomic_path(tmp_path / "x", overwrite=False):
        pass


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    out = tmp_path / "out.bin"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.bin.tmp-{dead.stdout.strip()}-abcd"
    stale.write_text("partial")
    live = temp_name(out).with_name(f".out.bin.tmp-{os.getppid()}-beef")
    live.write_text("being written")
    assert remove_stale(out) == [stale]
    assert not stale.exists() and live.exists()


def test_rust_token_writer_names_temporaries_as_atomic_does(tmp_path, byte_tokenizer):
    """The Rust .bin writer's temporaries follow this module's scheme, so `remove_stale`
    cleans what a killed pretokenize left, as it does for Python's own."""
    from fastgpt import _core
    from fastgpt._util.atomic import is_temp_of, remove_stale

    out = tmp_path / "t.bin"
    writer = _core.TokenWriter(str(out), 257, 256, 3)
    writer.write_texts(byte_tokenizer._core, ["abcdefgh"], [True])
    temporaries = [Path(t) for t in writer.finish()]
    assert len(temporaries) == 3 and len(set(temporaries)) == 3
    assert all(is_temp_of(t, out) for t in temporaries), temporaries
    assert sorted(remove_stale(out)) == sorted(temporaries) and not list(tmp_path.iterdir())
