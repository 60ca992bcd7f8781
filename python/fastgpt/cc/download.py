"""`fastgpt cc download`: fetch WET files listed in a Common Crawl `wet.paths` file.

Each file is written to `<name>.part`, resumed with an HTTP Range request after a dropped
connection or an interrupted run, checked to be complete gzip, and only then renamed to
its final name, so a file that looks complete is complete.
"""

from __future__ import annotations

import gzip
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

CC_BASE_URL = "https://data.commoncrawl.org/"
CHUNK = 1 << 20


def read_paths(paths_file: str, n: int | None = None) -> list[str]:
    """The first `n` paths (all when `n` is None) of a wet.paths (or wet.paths.gz) file."""
    if n is not None and n < 1:
        # 0 and negative counts would slice to "everything" or "all but the last": on a real
        # crawl that starts a download of tens of thousands of files.
        raise ValueError(f"--n must be at least 1 (leave it out for every file), got {n}")
    opener = gzip.open if paths_file.endswith(".gz") else open
    try:
        with opener(paths_file, "rt", encoding="utf-8") as f:
            paths = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise ValueError(f"{paths_file}: not a wet.paths file (one path per line, optionally gzip): {exc}") from None
    return paths[:n] if n is not None else paths


def verify_gzip(path: str) -> None:
    """Raise ValueError unless `path` is complete gzip (all members, CRCs checked)."""
    try:
        with gzip.open(path, "rb") as f:
            while f.read(CHUNK):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: not a complete gzip file ({exc})") from None


def download_one(url: str, dest: str, retries: int = 5, timeout: float = 60.0, backoff: float = 1.0) -> str:
    """Download `url` to `dest`, resuming `dest.part`; returns 'skipped' or 'downloaded'."""
    if os.path.exists(dest):
        return "skipped"
    part = dest + ".part"
    attempt = 0
    while True:
        have = os.path.getsize(part) if os.path.exists(part) else 0
        req = urllib.request.Request(url, headers={"User-Agent": "fastgpt-cc/0.1"})
        if have:
            req.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if have and resp.status != 206:
                    have = 0  # server ignored the range: start over
                length = resp.headers.get("Content-Length")
                expected = have + int(length) if length is not None else None
                with open(part, "ab" if have else "wb") as f:
                    while chunk := resp.read(CHUNK):
                        f.write(chunk)
            got = os.path.getsize(part)
            if expected is not None and got < expected:
                raise ConnectionError(f"connection closed at byte {got} of {expected}")
            verify_gzip(part)
            os.replace(part, dest)
            return "downloaded"
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # range past the end: the part file is whole or bad
                try:
                    verify_gzip(part)
                    os.replace(part, dest)
                    return "downloaded"
                except ValueError:
                    os.unlink(part)
            elif exc.code < 500 and exc.code != 429:
                raise OSError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            err: Exception = exc
        except ValueError as exc:  # corrupt gzip: the bytes on disk are wrong, fetch again
            os.unlink(part)
            err = exc
        except (OSError, http.client.HTTPException) as exc:  # dropped connection, timeout, IncompleteRead
            err = exc
        attempt += 1
        if attempt > retries:
            raise OSError(f"{url}: failed after {retries} retries: {err}")
        time.sleep(backoff * 2 ** (attempt - 1))


def download(
    paths_file: str,
    out_dir: str = "wet",
    n: int | None = None,
    base_url: str = CC_BASE_URL,
    workers: int = 4,
    retries: int = 5,
    backoff: float = 1.0,
    progress: bool | None = None,
) -> dict:
    """Download the first `n` files of `paths_file` into `out_dir`; returns {path: status or error}.
    Raises OSError naming the failures after trying every file."""
    from tqdm import tqdm

    paths = read_paths(paths_file, n)
    os.makedirs(out_dir, exist_ok=True)
    results: dict[str, str] = {}

    def one(path: str) -> tuple[str, str]:
        dest = os.path.join(out_dir, os.path.basename(path))
        try:
            return path, download_one(base_url.rstrip("/") + "/" + path.lstrip("/"), dest, retries, backoff=backoff)
        except OSError as exc:
            return path, f"error: {exc}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        bar = tqdm(total=len(paths), unit="file", desc="download", disable=None if progress is None else not progress)
        for path, status in pool.map(one, paths):
            results[path] = status
            if status.startswith("error"):
                print(f"fastgpt cc download: {path}: {status}", file=sys.stderr)
            bar.update(1)
        bar.close()
    failed = [p for p, s in results.items() if s.startswith("error")]
    if failed:
        raise OSError(f"{len(failed)} of {len(paths)} downloads failed (first: {failed[0]}: {results[failed[0]]})")
    return results
