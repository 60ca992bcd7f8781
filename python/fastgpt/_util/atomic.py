"""Atomic output: every file and directory fastgpt writes appears whole or not at all.

One temp-name scheme for everything (`.NAME.tmp-PID-RANDOM` beside the target), so a
rerun can recognise and delete what a killed run left (`remove_stale`). Files and
directories get the permissions the umask gives, as a plain `open` would: `mkstemp`'s
0600 and `mkdtemp`'s 0700 are not what a user expects of a tokenizer or a corpus.

>>> with atomic_path("out.txt") as tmp:     # doctest: +SKIP
...     tmp.write_text("hello")                # renamed to out.txt only if the block succeeds
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_name(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary name beside `path` (same directory, so the rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def is_temp_of(candidate: Path, path: Path) -> bool:
    """Whether `candidate` is a temporary name that `temp_name(path)` could have made."""
    return candidate.parent == path.parent and candidate.name.startswith(f".{path.name}{TMP_MARK}")


def remove_stale(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temporaries of `path` left by killed runs whose process is gone; return them."""
    path = Path(path)
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.glob(f".{path.name}{TMP_MARK}*"):
        pid = candidate.name[len(f".{path.name}{TMP_MARK}") :].split("-")[0]
        if pid.isdigit() and _alive(int(pid)):
            continue  # a concurrent run is still writing it
        _remove(candidate)
        removed.append(candidate)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours from an earlier, failed attempt in this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def check_writable(path: str | os.PathLike[str], *, directory: bool = False) -> None:
    """Raise an error naming `path` unless `atomic_path(path, directory=directory)` can
    write it: call before hours of work, not after (checks what can be checked cheaply)."""
    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        kind = "a directory; give a file name" if path.is_dir() else "a file, not a directory"
        raise (IsADirectoryError if path.is_dir() else NotADirectoryError)(f"{path} is {kind} for the output")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"{path}: cannot create it, {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"{path}: no permission to write in {ancestor}")


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, directory: bool = False, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it to `path`, on any error delete it.

    With `directory=True` the temporary is an empty directory (created with the umask's
    permissions) that replaces `path` as a whole. `overwrite=False` refuses an existing
    `path` before anything is written. The parent directory is created if missing.
    """
    path = Path(path)
    if path.is_dir() and not directory:
        raise IsADirectoryError(f"{path} is a directory; give a file name for the output")
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    if directory:
        tmp.mkdir(mode=0o777)  # the umask applies, as for mkdir(1)
    try:
        yield tmp
        if directory:
            if path.exists():
                old = temp_name(path)
                path.rename(old)  # two renames: a crash between them leaves the new one under a temp name
                tmp.rename(path)
                _remove(old)
            else:
                tmp.rename(path)
        else:
            if tmp.exists():
                os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
