"""`cc extract` throughput (MB of WET payload per second) against a straightforward baseline:
warcio to read, py3langid on every document, nothing else. Same generated files for both.

    pytest benches/test_bench_cc.py --benchmark-enable
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastwarc")
pytest.importorskip("warcio")
py3langid = pytest.importorskip("py3langid")

from fastgpt.cc import extract as cc  # noqa: E402
from helpers import cc_synth  # noqa: E402

N_FILES, N_RECORDS = 4, 3000  # about 24 MB of text: startup (model load, imports) is a small part


@pytest.fixture(scope="module")
def wet_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("wet")
    paths = []
    for k in range(N_FILES):
        paths.append(str(d / f"f{k}.warc.wet.gz"))
        cc_synth.write_wet(paths[-1], cc_synth.mixed_records(k, N_RECORDS))
    return paths


def baseline(paths) -> tuple[int, int]:
    """Read every conversion record with warcio and language-ID its whole text."""
    from warcio.archiveiterator import ArchiveIterator

    n_bytes = n_en = 0
    for path in paths:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type == "conversion":
                    data = rec.content_stream().read()
                    n_bytes += len(data)
                    n_en += py3langid.classify(data.decode("utf-8", "replace"))[0] == "en"
    return n_bytes, n_en


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
    n_bytes, _ = benchmark.pedantic(baseline, args=(wet_files,), rounds=1, iterations=1)
    _record(benchmark, n_bytes, N_FILES * N_RECORDS)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.benchmark(group="cc-extract")
def test_fastgpt_cc_extract(benchmark, wet_files, tmp_path, workers):
    out = str(tmp_path / "corpus.jsonl")
    stats = benchmark.pedantic(
        lambda: cc.extract(wet_files, out, workers=workers, progress=False),
        setup=lambda: None,
        rounds=1,
        iterations=1,
    )
    _record(benchmark, stats["payload_bytes"], stats["records"])
    benchmark.extra_info["kept"] = stats["kept"]
