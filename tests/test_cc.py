"""The Common Crawl pipeline on generated WET files: extract, bad input, shards, split, download, CLI."""

from __future__ import annotations

import gzip
import http.server
import json
import os
import random
import threading

import pytest

pytest.importorskip("fastwarc")
pytest.importorskip("py3langid")

from fastgpt.cc import extract as cc  # noqa: E402
from fastgpt.cc.filters import FilterConfig, doc_hashes, quality_reason, repetition_reason  # noqa: E402
from helpers import cc_synth

R = random.Random(1234)
EN = [cc_synth.page(R, "en") for _ in range(12)]
NAV = ["Home", "About us", "Contact", "Share this story", "Copyright 2024 Example Media Group"]
FOOTER = [
    "The newsroom of the example group has reported on the city and the river for over fifty years.",
    "Our editors check every story with care and correct mistakes as soon as they are found.",
    "Readers who have a tip for the newsroom can write to the editors at any time of the day.",
    "The paper is printed in the old harbour station and delivered to the villages before morning.",
]


def fixture_records(tag: str) -> list[bytes]:
    """Every kind of page the filters must handle, with known outcomes (see test_extract)."""
    rec = cc_synth.record
    rng = random.Random(tag)
    out = [rec(f"<http://en.example/{tag}/{i}>", cc_synth.page(rng, "en"), "eng" if i % 2 else None) for i in range(6)]
    out += [
        rec(f"<http://de.example/{tag}>", cc_synth.page(rng, "de"), "deu"),
        rec(f"<http://de2.example/{tag}>", cc_synth.page(rng, "de")),  # no header: language ID decides
        rec(f"<http://ru.example/{tag}>", cc_synth.page(rng, "ru")),
        rec(f"<http://zh.example/{tag}>", cc_synth.page(rng, "zh"), "zho"),
        rec(f"<http://short.example/{tag}>", "Too short to be an article.", "eng"),
        rec(f"<http://spam.example/{tag}>", "\n".join(["Buy cheap watches online today, best prices."] * 30)),
        rec(f"<http://lorem.example/{tag}>", "Lorem ipsum dolor sit amet. " + EN[0]),
        # The same article on three sites, with different case and spacing: one survives.
        rec(f"<http://dup1.example/{tag}>", EN[1]),
        rec(f"<http://dup2.example/{tag}>", EN[1].upper().replace(" ", "  ")),
        rec(f"<http://dup3.example/{tag}>", EN[1] + "\n"),
    ]
    # Pages wrapped in the same navigation: the shared lines go, the articles stay.
    for i in range(3):
        body = [cc_synth.page(rng, "en")]
        out.append(rec(f"<http://news.example/{tag}/{i}>", "\n".join(NAV[:3] + body + NAV[3:] + FOOTER)))
    out.append(
        rec(f"<http://cookie.example/{tag}>", "We use cookies to improve your experience.\n" + EN[2 + len(tag) % 5])
    )
    # Long enough to pass the per-page filters, but nothing is left once the shared lines go.
    out.append(rec(f"<http://navonly.example/{tag}>", "\n".join(NAV + FOOTER + ["Welcome to our site, friends."])))
    return out


@pytest.fixture(scope="module")
def wet_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("wet")
    cc_synth.write_wet(d / "a.warc.wet.gz", fixture_records("a"))
    cc_synth.write_wet(d / "b.warc.wet", fixture_records("b"), compress=False)
    return d


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_extract_filters_and_dedup(wet_dir, tmp_path):
    out = tmp_path / "corpus.jsonl"
    stats = cc.extract([wet_dir], str(out), workers=1, rejects=str(tmp_path / "rejects.jsonl"), progress=False)
    docs = read_jsonl(out)
    urls = [d["url"] for d in docs]
    assert all(not u.startswith("<") for u in urls)  # angle brackets stripped
    assert {d["source"] for d in docs} == {"a.warc.wet.gz", "b.warc.wet"}
    # six English pages per file, the three news articles, one copy of the duplicate, the cookie page
    assert sum(u.startswith("http://en.example/") for u in urls) == 12
    assert sum(u.startswith("http://news.example/") for u in urls) == 6
    assert sum(u.startswith("http://dup") for u in urls) == 1
    assert not any(
        x in u for u in urls for x in ("de.example", "de2.", "ru.", "zh.", "short.", "spam.", "lorem.", "navonly.")
    )
    for d in docs:
        assert not set(d["text"].split("\n")) & set(NAV[:4] + FOOTER), "shared lines removed"
        assert "cookies" not in d["text"]
    rejected = stats["rejected"]
    assert rejected["lang_header"] == 4 and rejected["lang"] >= 4  # de, zh by header; de2, ru by language ID
    assert rejected["too_short"] >= 2 and rejected["lorem_ipsum"] == 2
    assert rejected["exact_duplicate"] >= 4  # dup2, dup3 in a; all three in b (dup1 also equals a's)
    # the nav-only page once its shared lines go (b's copy is an exact duplicate of a's)
    assert rejected["boilerplate_lines"] == 1
    assert stats["lines_removed"]["cross_document"] > 0 and stats["lines_removed"]["boilerplate_pattern"] == 2
    assert stats["kept"] == len(docs) and stats["errors"] == 0
    assert sum(rejected.values()) + stats["kept"] == stats["records"] == 2 * len(fixture_records("a"))
    assert json.loads((tmp_path / "corpus.jsonl.stats.json").read_text())["kept"] == len(docs)
    reasons = {r["reason"] for r in read_jsonl(tmp_path / "rejects.jsonl")}
    assert {"lang", "lang_header", "exact_duplicate", "too_short"} <= reasons


def test_workers_agree_and_txt_output_is_refused(wet_dir, tmp_path):
    one = cc.extract([wet_dir], str(tmp_path / "one.jsonl"), workers=1, progress=False)
    two = cc.extract([wet_dir], str(tmp_path / "two.jsonl"), workers=2, progress=False)
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    assert one["rejected"] == two["rejected"]
    # Pages span lines; a .txt of one document per line could not hold them (issue 11, defect 8).
    with pytest.raises(ValueError, match="c.txt: the output must be .jsonl"):
        cc.extract([wet_dir], str(tmp_path / "c.txt"), workers=1, progress=False)
    assert not list(tmp_path.glob("c.txt*"))


def test_bad_inputs_are_reported_and_skipped(tmp_path):
    good = fixture_records("g")
    # truncated gzip: the last record is cut
    cc_synth.write_wet(tmp_path / "trunc.warc.wet.gz", good[:6])
    data = (tmp_path / "trunc.warc.wet.gz").read_bytes()
    (tmp_path / "trunc.warc.wet.gz").write_bytes(data[: len(data) - 200])
    # Content-Length too short (record 2) and, in another file, too long (swallows the next ones)
    text = cc_synth.page(random.Random(5), "en")
    short = [good[0], cc_synth.record("<http://bad/short>", text, content_length=40), *good[1:6]]
    cc_synth.write_wet(tmp_path / "short.warc.wet.gz", short)
    long = [good[0], cc_synth.record("<http://bad/long>", text, content_length=len(text) + 300), *good[1:6]]
    cc_synth.write_wet(tmp_path / "long.warc.wet", long, compress=False)
    (tmp_path / "empty.warc.wet.gz").write_bytes(b"")
    (tmp_path / "notwet.warc.wet.gz").write_bytes(gzip.compress(b"<html>not a warc</html>\n" * 50))
    stats = cc.extract([tmp_path], str(tmp_path / "out.jsonl"), workers=1, progress=False)
    files = {os.path.basename(k): v for k, v in stats["files"].items()}
    assert files["trunc.warc.wet.gz"]["records"] == 5 and "truncated" in files["trunc.warc.wet.gz"]["errors"][0]
    assert files["short.warc.wet.gz"]["records"] == 6  # the bad record dropped, reading resumed after it
    assert any("Content-Length" in e for e in files["short.warc.wet.gz"]["errors"])
    assert any("Content-Length" in e for e in files["long.warc.wet"]["errors"])
    assert files["empty.warc.wet.gz"]["errors"] == ["empty file"]
    assert "not a WET file" in files["notwet.warc.wet.gz"]["errors"][0]
    urls = {d["url"] for d in read_jsonl(tmp_path / "out.jsonl")}
    assert not any(u.startswith("http://bad/") for u in urls)
    assert sum(u.startswith("http://en.example/g/") for u in urls) == 6


def test_nothing_readable_is_an_error(tmp_path):
    (tmp_path / "x.warc.wet.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="no WET records"):
        cc.extract([tmp_path / "x.warc.wet.gz"], str(tmp_path / "o.jsonl"), workers=1, progress=False)
    assert not (tmp_path / "o.jsonl.done").exists()


def test_shards_cover_inputs_and_skip_when_done(tmp_path, monkeypatch):
    for k in range(3):
        cc_synth.write_wet(tmp_path / f"f{k}.warc.wet.gz", fixture_records(f"s{k}")[:6])
    out = str(tmp_path / "out" / "c.jsonl")
    os.makedirs(tmp_path / "out")
    seen = []
    for rank in range(2):
        st = cc.extract([tmp_path / "*.warc.wet.gz"], out, workers=1, rank=rank, world_size=2, progress=False)
        seen += list(st["files"])
    assert sorted(os.path.basename(p) for p in seen) == ["f0.warc.wet.gz", "f1.warc.wet.gz", "f2.warc.wet.gz"]
    shard = tmp_path / "out" / "c.00001-of-00002.jsonl"
    assert shard.exists() and (tmp_path / "out" / "c.00001-of-00002.jsonl.done").exists()
    # A Slurm array task finds its shard from the environment; a finished shard is skipped.
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.setattr(cc.shards, "map_unordered", lambda *a, **k: pytest.fail("finished shard was redone"))
    assert cc.extract([tmp_path / "*.warc.wet.gz"], out, workers=1, progress=False)["rank"] == 1


def test_filters_unit():
    cfg = FilterConfig()
    rng = random.Random(3)
    lines = cc_synth.page(rng, "en", 12).split("\n")
    assert quality_reason(lines, cfg) is None
    assert quality_reason(lines, cfg, lambda t: ("de", 0.99)) == "lang"
    assert quality_reason(lines, cfg, lambda t: ("en", 0.5)) == "lang"
    assert quality_reason(["##### " + line for line in lines], cfg) == "symbol_ratio"
    assert quality_reason([line + " ..." for line in lines], cfg) in ("symbol_ratio", "ellipsis_lines")
    assert quality_reason(["- " + line for line in lines], cfg) == "bullet_lines"
    assert quality_reason([line.rstrip(".!?") for line in lines], cfg) == "punct_lines"
    assert quality_reason([line + " 1234 5678" * 6 + "." for line in lines], cfg) == "alpha_words"
    words = " ".join(lines).split()
    assert repetition_reason(words) is None
    assert repetition_reason(words[:20] * 5) in ("top_ngram", "dup_ngram")
    assert repetition_reason(words + words[:40]) == "dup_ngram"
    a, la = doc_hashes(["Hello, World!", "Line 42"])
    b, lb = doc_hashes(["hello world", "line 17"])
    assert a == b and list(la) == list(lb)


def test_fast_langid_equals_py3langid():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from fastgpt.cc.langid import FastLangId

    ref = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    fast = FastLangId()
    rng = random.Random(9)
    texts = [cc_synth.page(rng, lang, 3) for lang in ("en", "de", "ru", "zh") for _ in range(5)]
    texts += ["", "a", "ab", "ABC DEF", "\x00\x00abc", "Ünïcödé ẞ 中文 русский 😀"]
    texts += ["".join(rng.choice("ab c.\n\x00éü中ж😀") for _ in range(rng.randint(0, 200))) for _ in range(60)]
    for t in texts:
        (la, pa), (lb, pb) = ref.classify(t), fast.classify(t)
        assert la == lb and abs(pa - pb) < 1e-2, t


def test_split_deterministic_disjoint_streaming(tmp_path):
    docs = [{"text": f"document {i}\nsecond line {i % 7}", "url": f"u{i}"} for i in range(500)]
    docs += docs[:20]  # duplicates must land on one side
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    from fastgpt.data.split import split

    a = split(str(src), str(tmp_path / "tr.jsonl"), str(tmp_path / "ev.jsonl"), 0.1, seed=1, memory_mb=0)
    assert a["buckets"] > 1 or os.path.getsize(src) < (1 << 19)
    train = read_jsonl(tmp_path / "tr.jsonl")
    ev = read_jsonl(tmp_path / "ev.jsonl")
    assert len(train) + len(ev) == len(docs) and 20 < len(ev) < 90
    assert not {d["text"] for d in train} & {d["text"] for d in ev}
    assert sorted(train + ev, key=json.dumps) == sorted(docs, key=json.dumps)  # records kept whole
    assert train != sorted(train, key=json.dumps)  # shuffled
    split(str(src), str(tmp_path / "tr2.jsonl"), str(tmp_path / "ev2.jsonl"), 0.1, seed=1)
    assert read_jsonl(tmp_path / "tr2.jsonl") == train


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def _serve(files: dict[str, bytes], drop_first: set[str], log: list):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            name = self.path.lstrip("/")
            log.append((name, self.headers.get("Range")))
            if name not in files:
                self.send_error(404)
                return
            data, start = files[name], 0
            rng = self.headers.get("Range")
            if rng:
                start = int(rng.split("=")[1].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if name in drop_first:  # first request: send half, then drop the connection
                drop_first.discard(name)
                self.wfile.write(data[start : len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data[start:])

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_resumes_and_reports(tmp_path):
    from fastgpt.cc.download import download

    blob = gzip.compress(os.urandom(300_000))
    files = {"crawl/seg/a.warc.wet.gz": blob, "crawl/seg/b.warc.wet.gz": gzip.compress(b"b" * 1000)}
    log: list = []
    server = _serve(files, {"crawl/seg/a.warc.wet.gz"}, log)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        paths = tmp_path / "wet.paths.gz"
        paths.write_bytes(
            gzip.compress(b"crawl/seg/a.warc.wet.gz\ncrawl/seg/b.warc.wet.gz\ncrawl/seg/missing.wet.gz\n")
        )
        with pytest.raises(OSError, match="1 of 3 downloads failed.*HTTP 404"):
            download(str(paths), str(tmp_path / "wet"), base_url=base, workers=2, backoff=0.01, progress=False)
        assert (tmp_path / "wet" / "a.warc.wet.gz").read_bytes() == blob
        assert ("crawl/seg/a.warc.wet.gz", f"bytes={len(blob) // 2}-") in log  # resumed, not restarted
        assert not list((tmp_path / "wet").glob("*.part"))
        res = download(str(paths), str(tmp_path / "wet"), n=2, base_url=base, progress=False)
        assert set(res.values()) == {"skipped"}
    finally:
        server.shutdown()


def test_cli_errors_and_commands(wet_dir, tmp_path, monkeypatch, capsys):
    from fastgpt import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ("cc", "split"))
    out = tmp_path / "c.jsonl"
    assert cli.main(["cc", "extract", str(wet_dir), "--output", str(out), "--workers", "1", "--min_words", "40"]) == 0
    assert json.loads((tmp_path / "c.jsonl.stats.json").read_text())["config"]["min_words"] == 40
    assert cli.main(["split", str(out), "--train", str(tmp_path / "t.jsonl"), "--eval", str(tmp_path / "e.jsonl")]) == 0
    assert cli.main(["cc", "extract", str(tmp_path / "nope.wet.gz"), "--output", str(out)]) == 1
    assert "fastgpt: error: " in capsys.readouterr().err


def test_download_n_must_be_positive_and_bad_paths_files_are_named(tmp_path, monkeypatch, capsys):
    """Defect 7: --n 0 downloaded every file and --n -1 all but the last. Defect 23: a
    garbage paths.gz gave an error naming no file."""
    from fastgpt import cli
    from fastgpt.cc import download as dl

    paths = tmp_path / "wet.paths"
    paths.write_text("crawl/a.warc.wet.gz\ncrawl/b.warc.wet.gz\n")
    monkeypatch.setattr(dl, "download_one", lambda *a, **k: pytest.fail("nothing may be downloaded"))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("cc",))
    for n in ["0", "-1"]:
        assert cli.main(["cc", "download", "--paths", str(paths), "--n", n, "--out", str(tmp_path / "wet")]) == 1
        assert f"--n must be at least 1 (leave it out for every file), got {n}" in capsys.readouterr().err
    assert dl.read_paths(str(paths), 1) == ["crawl/a.warc.wet.gz"] and len(dl.read_paths(str(paths))) == 2
    garbage = tmp_path / "wet.paths.gz"
    garbage.write_bytes(os.urandom(500))
    assert cli.main(["cc", "download", "--paths", str(garbage), "--out", str(tmp_path / "wet")]) == 1
    err = capsys.readouterr().err
    assert f"fastgpt: error: {garbage}: not a wet.paths file" in err and err.count("\n") == 1


def test_failed_extract_leaves_no_output_and_empty_directories_are_named(tmp_path, capsys):
    """Defect 16: an extract that read no record left an empty output file. Defect 23: an
    empty input directory was not named."""
    from fastgpt import cli

    (tmp_path / "x.warc.wet.gz").write_bytes(gzip.compress(b"<html>not a warc</html>\n"))
    with pytest.raises(ValueError, match="no WET records could be read from 1 input file.*x.warc.wet.gz"):
        cc.extract([tmp_path / "x.warc.wet.gz"], str(tmp_path / "o.jsonl"), workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.warc.wet.gz"]
    (tmp_path / "out.jsonl").mkdir()  # an output that cannot be written is refused before any reading
    with pytest.raises(IsADirectoryError, match="out.jsonl is a directory"):
        cc.extract([tmp_path / "x.warc.wet.gz"], str(tmp_path / "out.jsonl"), workers=1, progress=False)
    (tmp_path / "out.jsonl").rmdir()
    (tmp_path / "empty").mkdir()
    assert cli.main(["cc", "extract", str(tmp_path / "empty"), "--output", str(tmp_path / "o.jsonl")]) == 1
    err = capsys.readouterr().err
    assert f"fastgpt: error: {tmp_path / 'empty'}: a directory with no WET files" in err
