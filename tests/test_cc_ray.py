"""`cc extract --backend ray` on a local Ray gives the same bytes as the local backend."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("fastwarc")
pytest.importorskip("py3langid")

from fastgpt.cc import extract as cc  # noqa: E402
from helpers import cc_synth  # noqa: E402


def test_ray_backend_equals_local(tmp_path):
    for k in range(3):
        cc_synth.write_wet(tmp_path / f"f{k}.warc.wet.gz", cc_synth.mixed_records(k, 60))
    local = cc.extract([tmp_path], str(tmp_path / "local.jsonl"), workers=1, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = cc.extract([tmp_path], str(tmp_path / "ray.jsonl"), backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert remote["rejected"] == local["rejected"] and remote["kept"] == local["kept"] > 0
