"""What the benches share, kept here so they never import from tests/: corpora (from the
package and from real data, not from test generators), real rank files, tiktoken on a
fastgpt vocabulary and the one peak-memory measurement (both `fastgpt bench`'s own)."""

from __future__ import annotations

import gzip
import io
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastgpt.apps.bench import WET_DIR, peak_rss, tiktoken_encoding
from fastgpt.apps.demo import stdlib_sources

__all__ = [
    "stdlib_sources",
    "rank_file",
    "tiktoken_encoding",
    "real_wet_files",
    "peak_rss",
    "python_peak_rss",
    "timed",
    "alternating_medians",
]

HERE = Path(__file__).resolve().parent
# Real Common Crawl WET samples (see their README); override with FASTGPT_WET_SAMPLES.
WET_SAMPLES = WET_DIR


def rank_file(name: str) -> Path:
    """A real OpenAI rank file as the `bpe-openai` package ships it (nothing downloads)."""
    bpe_openai = pytest.importorskip("bpe_openai")
    return Path(bpe_openai.__file__).parent / "data" / f"{name}.tiktoken.gz"


def real_wet_files(directory: Path, megabytes: float, n_files: int) -> list[str]:
    """`n_files` WET files of about `megabytes` together, each the real samples' records
    repeated, gzipped one member per record as Common Crawl ships them (warcio requires it)."""
    fastwarc = pytest.importorskip("fastwarc.warc")
    samples = sorted(WET_SAMPLES.glob("*.wet")) if WET_SAMPLES.is_dir() else []
    if not samples:
        pytest.skip(f"no real WET samples in {WET_SAMPLES} (set FASTGPT_WET_SAMPLES)")
    members = []
    for sample in samples:
        data = sample.read_bytes()
        starts = [r.stream_pos for r in fastwarc.ArchiveIterator(io.BytesIO(data), parse_http=False)]
        members += [gzip.compress(data[a:b]) for a, b in zip(starts, [*starts[1:], len(data)])]
    unit = b"".join(members)
    raw = sum(p.stat().st_size for p in samples)
    copies = max(1, int(megabytes * 1e6 / raw / n_files))
    paths = []
    for k in range(n_files):
        paths.append(str(directory / f"real{k}.warc.wet.gz"))
        Path(paths[-1]).write_bytes(unit * copies)
    return paths


def python_peak_rss(code: str, *args: str) -> int:
    """Runs `code` (with `args` as sys.argv[1:]) in a fresh Python; returns its peak RSS in bytes."""
    epilogue = "\nfrom fastgpt.apps.bench import peak_rss\nprint(peak_rss())\n"
    out = subprocess.run([sys.executable, "-c", code + epilogue, *args], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def alternating_medians(alternating: dict[str, list[float]], rounds: int) -> dict[str, float]:
    """The medians of the last `rounds` rounds (a warm-up round runs the setup too) that a
    benchmark of ours timed alternating with a peer's, as `benches/report.py` reads them for
    the bar against that peer: `alternating_seconds` ours, `<peer>_seconds` the peer's."""
    return {
        "alternating_seconds" if name == "fastgpt" else f"{name}_seconds": statistics.median(times[-rounds:])
        for name, times in alternating.items()
    }
