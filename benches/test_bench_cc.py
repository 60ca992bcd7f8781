"""`cc extract` throughput (MB of WET payload per second) against a straightforward baseline:
warcio to read, py3langid on every document, nothing else. The same files for both: the
real Common Crawl samples' records, repeated to about 24 MB.

    pytest benches/test_bench_cc.py --benchmark-enable
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastwarc")
pytest.importorskip("warcio")
py3langid = pytest.importorskip("py3langid")

from benchlib import real_wet_files  # noqa: E402
from fastgpt.cc import extract as cc  # noqa: E402

N_FILES, MEGABYTES = 4, 24  # startup (model load, imports) is a small part of this much text


@pytest.fixture(scope="module")
def wet_files(tmp_path_factory):
    return real_wet_files(tmp_path_factory.mktemp("wet"), MEGABYTES, N_FILES)


def baseline(paths) -> tuple[int, int]:
    """Read every conversion record with warcio and language-ID its whole text; returns
    (payload bytes, records)."""
    from warcio.archiveiterator import ArchiveIterator

    n_bytes = n_records = 0
    for path in paths:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type == "conversion":
                    data = rec.content_stream().read()
                    n_bytes += len(data)
                    n_records += 1
                    py3langid.classify(data.decode("utf-8", "replace"))
    return n_bytes, n_records


def _record(benchmark, payload_bytes: int, docs: int) -> None:
    seconds = benchmark.stats.stats.min
    benchmark.extra_info.update(
        payload_mb=round(payload_bytes / 1e6, 2),
        mb_per_s=round(payload_bytes / 1e6 / seconds, 2),
        docs_per_s=round(docs / seconds),
    )


@pytest.mark.benchmark(group="cc-extract")
def test_baseline_warcio_py3langid(benchmark, wet_files):
    py3langid.classify("warm up the model")
    n_bytes, n_records = benchmark.pedantic(baseline, args=(wet_files,), rounds=1, iterations=1)
    _record(benchmark, n_bytes, n_records)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.benchmark(group="cc-extract")
def test_fastgpt_cc_extract(benchmark, wet_files, tmp_path, workers):
    from fastgpt.cc.langid import classify

    # Loaded before timing, as the baseline's model is: loading takes about 0.4 s here,
    # which the 1-worker run (the first in this process) counted and the baseline did not.
    classify("warm up the model")
    out = str(tmp_path / "corpus.jsonl")
    stats = benchmark.pedantic(
        lambda: cc.extract(wet_files, out, workers=workers, progress=False),
        rounds=1,
        iterations=1,
    )
    _record(benchmark, stats["payload_bytes"], stats["records"])
    benchmark.extra_info["kept"] = stats["kept"]
