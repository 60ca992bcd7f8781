"""Parquet, Arrow and Hugging Face `datasets` in and out: pretokenize, tokenizer training,
split and cc extract, against the same documents as JSON lines and against tiktoken;
row-group shards and Ray; bad input. Datasets are built locally; nothing downloads."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # before datasets is imported: never the network
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from fastgpt import Tokenizer, pretokenize  # noqa: E402
from fastgpt.apps.bench import WET_DIR as WET  # noqa: E402  (the project's real samples; absent in some clones)
from fastgpt.data.split import split  # noqa: E402
from fastgpt.data.tokens import TokenFile  # noqa: E402
from helpers import cc_synth  # noqa: E402


def fastgpt(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastgpt", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def docs(stdlib_texts) -> list[str]:
    """Real documents: standard library modules (newlines, indentation, non-ASCII), one empty."""
    out = [t for t in stdlib_texts[:120] if t]
    out.insert(5, "")  # an empty row is skipped, as an empty JSON lines text is
    return out


@pytest.fixture(scope="module")
def tok_dir(cl100k, tmp_path_factory):
    return cl100k.save(tmp_path_factory.mktemp("tok") / "cl100k")


def write_parquet(path: Path, docs: list[str], row_group_size: int = 16, **columns) -> Path:
    pq.write_table(pa.table({"text": docs, **columns}), path, row_group_size=row_group_size, compression="zstd")
    return path


def write_jsonl(path: Path, docs: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path


def tokens(path) -> list[int]:
    return TokenFile(path)[:].tolist()


def test_parquet_ids_equal_jsonl_and_tiktoken(docs, cl100k, cl100k_reference, tmp_path):
    write_parquet(tmp_path / "c.parquet", docs, ids=list(range(len(docs))))
    write_jsonl(tmp_path / "c.jsonl", docs)
    a = pretokenize(tmp_path / "c.parquet", cl100k, progress=False)  # default output: c.bin
    b = pretokenize(tmp_path / "c.jsonl", cl100k, tmp_path / "j.bin", progress=False)
    expected = [i for d in docs if d for i in [*cl100k_reference.encode_ordinary(d), cl100k_reference.eot_token]]
    assert tokens(tmp_path / "c.bin") == tokens(tmp_path / "j.bin") == expected
    assert a.documents == b.documents == len(docs) - 1 and a.tokens == len(expected)
    assert a.bytes == sum(len(d.encode()) for d in docs)  # text bytes, not the compressed file's


def test_arrow_strings_are_read_from_their_buffers_in_every_layout(docs, cl100k, tmp_path):
    """`TokenWriter.write_strings` reads Arrow string arrays in place through the C data
    interface (sliced arrays, 64-bit offsets; other arrays are refused); string views and
    strings that are not UTF-8 (which pyarrow's Parquet reader lets through) go as Python
    strs, invalid bytes replaced and counted, as in text files."""
    from fastgpt import _core
    from fastgpt.data.parquet import text_export

    def written(columns) -> list[int]:
        writer = _core.TokenWriter(str(tmp_path / "w.bin"), cl100k.n_vocab, cl100k.eot_token, None)
        writer.write_strings(cl100k._core, columns)
        (finished,) = writer.finish()  # a temporary name, which pretokenize renames
        return tokens(finished)

    def expected(texts) -> list[int]:
        return [i for d in texts if d for i in [*cl100k.encode_ordinary(d), cl100k.eot_token]]

    sliced = pa.array(docs[:30])[7:19]
    assert written([text_export(sliced), text_export(pa.array(docs[40:45], pa.large_string()))]) == expected(
        docs[7:19] + docs[40:45]
    )
    assert written([text_export(pa.array(["", ""]))]) == []
    with pytest.raises(ValueError, match="with nulls"):
        written([text_export(pa.array(["a", None]))])
    with pytest.raises(ValueError, match="not string or large string"):
        written([pa.array([1, 2]).__arrow_c_array__()])

    bad = pa.Array.from_buffers(
        pa.string(), 3, pa.array([b"ok", b"bad \xff x", b"\xef\xbf\xbd"], pa.binary()).buffers()
    )
    pq.write_table(pa.table({"text": bad}), tmp_path / "bad.parquet")
    summary = pretokenize(tmp_path / "bad.parquet", cl100k, tmp_path / "bad.bin", progress=False)
    assert tokens(tmp_path / "bad.bin") == expected(["ok", "bad \ufffd x", "\ufffd"])
    assert summary.invalid_utf8 == 1 and summary.documents == 3
    if hasattr(pa, "string_view"):
        views = pa.array(docs[50:60], pa.string_view())
        assert text_export(views) is None
        pq.write_table(pa.table({"text": views}), tmp_path / "views.parquet")
        summary = pretokenize(tmp_path / "views.parquet", cl100k, tmp_path / "views.bin", progress=False)
        assert tokens(tmp_path / "views.bin") == expected(docs[50:60])
        assert summary.bytes == sum(len(d.encode()) for d in docs[50:60])


def test_datasets_and_iterables_stream_into_pretokenize(docs, cl100k, tmp_path):
    datasets = pytest.importorskip("datasets")
    write_jsonl(tmp_path / "c.jsonl", docs)
    pretokenize(tmp_path / "c.jsonl", cl100k, tmp_path / "ref.bin", progress=False)
    ds = datasets.Dataset.from_dict({"text": docs, "n": list(range(len(docs)))})
    sources = {
        "dataset": ds,
        "iterable_dataset": ds.to_iterable_dataset(num_shards=3),
        "dicts": ({"text": d, "other": 1} for d in docs),
        "strings": iter(docs),
    }
    for name, source in sources.items():
        pretokenize(source, cl100k, tmp_path / f"{name}.bin", progress=False)
        assert tokens(tmp_path / f"{name}.bin") == tokens(tmp_path / "ref.bin"), name
    # A Dataset shards contiguously: the shards in rank order are the whole.
    shards = [pretokenize(ds, cl100k, tmp_path / "s.bin", rank=r, world_size=3, progress=False) for r in range(3)]
    assert np.concatenate([TokenFile(s.outputs[0])[:] for s in shards]).tolist() == tokens(tmp_path / "ref.bin")
    renamed = datasets.Dataset.from_dict({"content": docs})
    pretokenize(renamed, cl100k, tmp_path / "c2.bin", text_field="content", progress=False)
    assert tokens(tmp_path / "c2.bin") == tokens(tmp_path / "ref.bin")
    with pytest.raises(ValueError, match="no column 'text'; the columns are content"):
        pretokenize(renamed, cl100k, tmp_path / "x.bin", progress=False)
    with pytest.raises(TypeError, match="field 'text' of item 1 is NoneType"):
        pretokenize(iter([{"text": "a"}, {"text": None}]), cl100k, tmp_path / "x.bin", progress=False)
    with pytest.raises(ValueError, match="output= is required"):
        pretokenize(ds, cl100k, progress=False)
    assert not (tmp_path / "x.bin").exists()


def test_tokenizer_trained_from_parquet_equals_jsonl(docs, tmp_path):
    datasets = pytest.importorskip("datasets")
    write_parquet(tmp_path / "c.parquet", docs, row_group_size=7)
    write_jsonl(tmp_path / "c.jsonl", docs)
    ds = datasets.Dataset.from_dict({"text": docs})
    sources = {
        "parquet": tmp_path / "c.parquet",
        "dataset": ds,
        "iterable_dataset": ds.to_iterable_dataset(),
        "dicts": iter({"text": d} for d in docs),
    }
    reference = Tokenizer.train(tmp_path / "c.jsonl", 700, progress=False).save(tmp_path / "ref")
    for name, source in sources.items():
        out = Tokenizer.train(source, 700, progress=False).save(tmp_path / name)
        for file in ("vocab.tiktoken", "fastgpt.json"):
            assert (out / file).read_bytes() == (reference / file).read_bytes(), (name, file)
    # The same budget reads the same documents (max_lines counts rows as it counts records).
    a = Tokenizer.train(tmp_path / "c.parquet", 600, max_lines=30, progress=False).save(tmp_path / "a")
    b = Tokenizer.train(tmp_path / "c.jsonl", 600, max_lines=30, progress=False).save(tmp_path / "b")
    assert (a / "vocab.tiktoken").read_bytes() == (b / "vocab.tiktoken").read_bytes()
    run = fastgpt(
        "tokenizer", "train", "--train", str(tmp_path / "c.parquet"), "--vocab_size", "700",
        "--output_dir", str(tmp_path / "cli"), "--quiet",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "cli" / "vocab.tiktoken").read_bytes() == (reference / "vocab.tiktoken").read_bytes()


def encoded(tok: Tokenizer, docs: list[str]) -> list[int]:
    return [i for d in docs if d for i in [*tok.encode_ordinary(d), tok.eot_token]]


def test_one_parquet_file_splits_by_row_groups(docs, cl100k, tmp_path):
    """Shard r of W takes row groups r, r+W, ... (the one shard rule, over files and row groups)."""
    write_parquet(tmp_path / "big.parquet", docs, row_group_size=10)
    assert pq.ParquetFile(tmp_path / "big.parquet").metadata.num_row_groups == 13
    groups = [docs[i : i + 10] for i in range(0, len(docs), 10)]
    whole = pretokenize(tmp_path / "big.parquet", cl100k, tmp_path / "whole.bin", progress=False)
    for world in (2, 5):
        parts = [
            pretokenize(tmp_path / "big.parquet", cl100k, tmp_path / "o.bin", rank=r, world_size=world, progress=False)
            for r in range(world)
        ]
        assert sum(p.documents for p in parts) == whole.documents and all(p.files == 1 for p in parts)
        for r, part in enumerate(parts):
            mine = [d for g in groups[r::world] for d in g]
            assert tokens(part.outputs[0]) == encoded(cl100k, mine), (world, r)
    again = pretokenize(tmp_path / "big.parquet", cl100k, tmp_path / "o.bin", rank=1, world_size=5, progress=False)
    assert again.skipped


@pytest.mark.slow
def test_ray_equals_local(docs, cl100k, tok_dir, tmp_path):
    ray = pytest.importorskip("ray")
    write_parquet(tmp_path / "big.parquet", docs[:60], row_group_size=10)
    write_jsonl(tmp_path / "more.jsonl", docs[60:70])
    inputs = [str(tmp_path / "big.parquet"), str(tmp_path / "more.jsonl")]
    wet = None
    if importlib.util.find_spec("fastwarc") and importlib.util.find_spec("py3langid"):
        from fastgpt.cc.extract import extract

        rng = random.Random(9)
        wet = [tmp_path / f"w{k}.warc.wet.gz" for k in range(2)]
        for k, path in enumerate(wet):
            pages = [cc_synth.record(f"<http://en.example/{k}/{i}>", cc_synth.page(rng, "en"), "eng") for i in range(5)]
            cc_synth.write_wet(path, pages)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = pretokenize(inputs, str(tok_dir), tmp_path / "ray" / "t.bin", backend="ray", progress=False)
        if wet:
            extract(wet, str(tmp_path / "ray.parquet"), backend="ray", progress=False)
    finally:
        ray.shutdown()
    if wet:  # cc extract's Parquet output too: Ray's bytes are the local bytes
        extract(wet, str(tmp_path / "local.parquet"), workers=1, progress=False)
        assert (tmp_path / "ray.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()
        assert pq.read_metadata(tmp_path / "ray.parquet").num_rows == 10
    # Default world size: one shard per row group (6) and per other file (1).
    assert len(remote.outputs) == 7 and remote.documents == len([d for d in docs[:70] if d])
    for r, path in enumerate(sorted(remote.outputs)):
        mine = pretokenize(inputs, cl100k, tmp_path / "l" / "t.bin", rank=r, world_size=7, progress=False)
        assert Path(path).name == Path(mine.outputs[0]).name
        assert Path(path).read_bytes() == Path(mine.outputs[0]).read_bytes()


def test_mixed_directory_and_datasets_cache(docs, cl100k, tok_dir, tmp_path):
    """.parquet, .jsonl, .txt and a datasets cache (Arrow files beside its JSON metadata) in one tree."""
    datasets = pytest.importorskip("datasets")
    root = tmp_path / "corpus"
    root.mkdir()
    write_parquet(root / "a.parquet", docs[:30])
    write_jsonl(root / "b.jsonl", docs[30:40])
    (root / "c.txt").write_text("one line document\nanother one\n")
    write_jsonl(tmp_path / "d.jsonl", docs[40:50])
    cache = root / "d_cache"
    built = datasets.load_dataset("json", data_files=str(tmp_path / "d.jsonl"), cache_dir=str(cache), split="train")
    assert len(built) == 10 and list(cache.rglob("*.arrow")) and list(cache.rglob("dataset_info.json"))
    run = fastgpt("pretokenize", "file", str(root), "--tokenizer", str(tok_dir), "--output", str(tmp_path / "m.bin"))
    assert run.returncode == 0, run.stderr
    # Directory order: sorted paths, so a.parquet, b.jsonl, c.txt, then the cache's Arrow file.
    expected = [*docs[:40], "one line document", "another one", *docs[40:50]]
    write_jsonl(tmp_path / "all.jsonl", expected)
    pretokenize(tmp_path / "all.jsonl", cl100k, tmp_path / "all.bin", progress=False)
    assert tokens(tmp_path / "m.bin") == tokens(tmp_path / "all.bin")
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": docs[:20]}).save_to_disk(str(saved))
    run = fastgpt("pretokenize", "file", str(saved), "--tokenizer", str(tok_dir), "--output", str(tmp_path / "s.bin"))
    assert run.returncode == 0, run.stderr
    pretokenize(iter(docs[:20]), cl100k, tmp_path / "s_ref.bin", progress=False)
    assert tokens(tmp_path / "s.bin") == tokens(tmp_path / "s_ref.bin")
    # Arrow's random-access file format too (datasets writes the stream format).
    table = pa.table({"text": docs[:20]})
    with pa.ipc.new_file(str(tmp_path / "f.arrow"), table.schema) as writer:
        writer.write_table(table, max_chunksize=7)
    pretokenize(tmp_path / "f.arrow", cl100k, tmp_path / "f.bin", progress=False)
    assert tokens(tmp_path / "f.bin") == tokens(tmp_path / "s_ref.bin")
    with pa.ipc.new_stream(str(tmp_path / "nulls.arrow"), pa.schema([("text", pa.string())])) as writer:
        writer.write_table(pa.table({"text": ["a", None]}))
    with pytest.raises(ValueError, match=r"nulls.arrow, row 1: null in column 'text'"):
        pretokenize(tmp_path / "nulls.arrow", cl100k, tmp_path / "n.bin", progress=False)
    (tmp_path / "cut.arrow").write_bytes((tmp_path / "f.arrow").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cut.arrow: (not a readable Arrow file|cannot read)"):
        pretokenize(tmp_path / "cut.arrow", cl100k, tmp_path / "n.bin", progress=False)
    assert not (tmp_path / "n.bin").exists()


def test_split_round_trips_between_formats(docs, tmp_path):
    when = [datetime.datetime(2024, 1, 1, 12, i % 60) for i in range(len(docs))]
    write_parquet(tmp_path / "c.parquet", docs, ids=list(range(len(docs))), when=when)
    write_jsonl(tmp_path / "c.jsonl", docs)
    texts = {}
    for src in ("c.parquet", "c.jsonl"):
        for fmt in ("parquet", "jsonl"):
            counts = split(str(tmp_path / src), tmp_path / f"t.{fmt}", tmp_path / f"e.{fmt}", 0.2, seed=7)
            assert counts["train"] + counts["eval"] == len(docs) - 1 and counts["eval"] > 5
            texts[src, fmt] = read_texts(tmp_path / f"t.{fmt}") + read_texts(tmp_path / f"e.{fmt}")
    reference = texts["c.jsonl", "jsonl"]
    assert sorted(reference) == sorted(d for d in docs if d)
    for (src, fmt), got in texts.items():
        assert got == reference, (src, fmt)  # same documents in the same order whatever the formats
    # .txt holds one document per line: multi-line rows are refused (naming the row), one-line ones round-trip.
    with pytest.raises(ValueError, match=r"c.parquet, row \d+: the document spans lines"):
        split(str(tmp_path / "c.parquet"), tmp_path / "t.txt", tmp_path / "e.txt", 0.2, seed=7)
    lines = [line for d in docs[:20] for line in d.splitlines() if line.strip()]
    (tmp_path / "l.txt").write_text("".join(line + "\n" for line in lines))
    split(str(tmp_path / "l.txt"), tmp_path / "lt.parquet", tmp_path / "le.parquet", 0.2, seed=3)
    split(str(tmp_path / "l.txt"), tmp_path / "lt.txt", tmp_path / "le.txt", 0.2, seed=3)
    assert read_texts(tmp_path / "lt.parquet") == read_texts(tmp_path / "lt.txt")
    split([str(tmp_path / "lt.parquet"), str(tmp_path / "le.parquet")], tmp_path / "b.txt", tmp_path / "be.txt", 0)
    assert sorted(read_texts(tmp_path / "b.txt")) == sorted(line for line in lines)
    # Parquet to Parquet keeps every column and its type; to JSON lines, timestamps become ISO text.
    split(str(tmp_path / "c.parquet"), tmp_path / "t.parquet", tmp_path / "e.parquet", 0.2, seed=7)
    table = pa.concat_tables([pq.read_table(tmp_path / "t.parquet"), pq.read_table(tmp_path / "e.parquet")])
    assert table.schema == pq.read_schema(tmp_path / "c.parquet").remove_metadata()
    assert sorted(zip(table["ids"].to_pylist(), table["text"].to_pylist())) == [(i, d) for i, d in enumerate(docs) if d]
    split(str(tmp_path / "c.parquet"), tmp_path / "t.jsonl", tmp_path / "e.jsonl", 0.2, seed=7)
    row = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    assert row.keys() == {"text", "ids", "when"} and row["when"].startswith("2024-01-01T12:")
    # And back: the split of the split's Parquet output is a fixed point of the documents.
    split(str(tmp_path / "t.parquet"), tmp_path / "t2.parquet", tmp_path / "e2.parquet", 0.0, seed=7)
    assert sorted(pq.read_table(tmp_path / "t2.parquet")["text"].to_pylist()) == sorted(
        pq.read_table(tmp_path / "t.parquet")["text"].to_pylist()
    )
    run = fastgpt(
        "split", str(tmp_path / "c.parquet"), "--train", str(tmp_path / "ct.parquet"),
        "--eval", str(tmp_path / "ce.jsonl"), "--eval_fraction", "0.2", "--seed", "7",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert read_texts(tmp_path / "ct.parquet") == read_texts(tmp_path / "t.parquet")


def read_texts(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        return pq.read_table(path)["text"].to_pylist()
    if path.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in path.read_text().splitlines()]
    return path.read_text().splitlines()


def test_bad_parquet_inputs(docs, cl100k, tok_dir, tmp_path):
    good = write_parquet(tmp_path / "good.parquet", docs[:40], row_group_size=5)
    cases = {
        "no_column.parquet": (pa.table({"content": ["a"], "url": ["u"]}), r"no column 'text'; the columns are content, url"),
        "ints.parquet": (pa.table({"text": [1, 2]}), r"column 'text' holds int64, not text"),
        "binary.parquet": (pa.table({"text": pa.array([b"x"], pa.binary())}), r"column 'text' holds binary, not text"),
        "nulls.parquet": (pa.table({"text": ["a", "b", None, "d"]}), r"nulls.parquet, row 2: null in column 'text'"),
    }  # fmt: skip
    for name, (table, message) in cases.items():
        pq.write_table(table, tmp_path / name)
        with pytest.raises(ValueError, match=message):
            pretokenize([good, tmp_path / name], cl100k, tmp_path / "out.bin", progress=False)
        with pytest.raises(ValueError, match=message):
            Tokenizer.train(tmp_path / name, 300, progress=False)
        with pytest.raises(ValueError, match=message):
            split(str(tmp_path / name), tmp_path / "t.jsonl", tmp_path / "e.jsonl")
    data = good.read_bytes()
    (tmp_path / "truncated.parquet").write_bytes(data[: len(data) // 2])
    # Damage inside the data pages, footer intact: found while reading, not at open.
    damaged = bytearray(data)
    damaged[200:2000] = bytes(1800)
    (tmp_path / "corrupt.parquet").write_bytes(bytes(damaged))
    for name in ("truncated.parquet", "corrupt.parquet"):
        with pytest.raises(ValueError, match=rf"{name}: .*(not a readable Parquet file|cannot read)"):
            pretokenize([good, tmp_path / name], cl100k, tmp_path / "out.bin", progress=False)
        run = fastgpt("pretokenize", "file", str(good), str(tmp_path / name), "--tokenizer", str(tok_dir))
        assert run.returncode == 1 and name in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert run.stderr.count("\n") == 1
    # Nothing written: no .bin, no temporaries, no split outputs.
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".bin", ".jsonl") or ".tmp" in p.name]
    run = fastgpt("pretokenize", "file", str(tmp_path / "no_column.parquet"), "--tokenizer", str(tok_dir))
    assert run.returncode == 1 and "the columns are content, url (use --text_field" in run.stderr
    run = fastgpt(
        "pretokenize", "file", str(tmp_path / "no_column.parquet"), "--tokenizer", str(tok_dir), "--text_field", "url"
    )
    assert run.returncode == 0, run.stderr


def test_without_pyarrow_the_error_names_the_extra(tok_dir, tmp_path):
    write_parquet(tmp_path / "c.parquet", ["a document"])
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from fastgpt.cli import main\n"
        f"sys.exit(main(['pretokenize', 'file', {str(tmp_path / 'c.parquet')!r}, '--tokenizer', {str(tok_dir)!r}]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 1 and "pip install 'fastgpt[parquet]'" in run.stderr and "Traceback" not in run.stderr
    (tmp_path / "c.txt").write_text("plain text still works\n")
    code = code.replace("c.parquet", "c.txt")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


def test_cc_extract_writes_fineweb_columns(tmp_path):
    pytest.importorskip("fastwarc")
    pytest.importorskip("py3langid")
    from fastgpt.cc.extract import PARQUET_COLUMNS, extract
    from fastgpt.cc.filters import FilterConfig

    rng = random.Random(5)
    records = [cc_synth.record(f"<http://en.example/{i}>", cc_synth.page(rng, "en"), "eng") for i in range(8)]
    cc_synth.write_wet(tmp_path / "synth.warc.wet.gz", records)
    real = WET / "CC-MAIN-20140820021334-00006.warc.wet"
    # Filters off (but language ID) so the real 2014 pages, navigation-heavy, come through too.
    loose = dict(min_words=1, min_mean_word_length=0, max_mean_word_length=100, max_symbol_word_ratio=10)
    loose.update(min_alpha_words=0, min_stop_words=0, min_punct_lines=0, max_short_lines=1, max_dup_lines=1)
    cfg = FilterConfig(min_lang_score=0.0, max_bullet_lines=1, max_ellipsis_lines=1, max_dup_line_chars=1, **loose)
    has_real = real.exists()  # the real sample sits beside the checkout, not in it: a clone elsewhere has none
    inputs = [str(real)] * has_real + [str(tmp_path / "synth.warc.wet.gz")]
    stats = extract(inputs, str(tmp_path / "c.parquet"), cfg, workers=1, progress=False)
    extract(inputs, str(tmp_path / "c.jsonl"), cfg, workers=1, progress=False)
    table = pq.read_table(tmp_path / "c.parquet")
    assert table.schema.names == list(PARQUET_COLUMNS) and table.schema.field("language_score").type == pa.float64()
    meta = pq.ParquetFile(tmp_path / "c.parquet").metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    rows = table.to_pylist()
    jsonl = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert stats["kept"] == len(rows) == len(jsonl) == 8 + 3 * has_real
    assert [r["text"] for r in rows] == [d["text"] for d in jsonl] and [r["url"] for r in rows] == [
        d["url"] for d in jsonl
    ]
    real_rows = [r for r in rows if r["file_path"] == str(real)]
    synth_rows = [r for r in rows if r["file_path"] != str(real)]
    assert len(real_rows) == 3 * has_real and len(synth_rows) == 8
    first = (
        real_rows[0] if has_real else synth_rows[0]
    )  # the first page of the real file, its headers as Common Crawl wrote them
    if has_real:
        assert first["id"] == "<urn:uuid:293f96dd-4bea-42b2-b3fd-7bff8bf10dc9>"
        assert first["date"] == "2014-08-21T05:52:58Z" and first["dump"] == "CC-MAIN-2014-35"  # from the warcinfo
        assert first["url"] == "http://0pointer.de/photos/?gallery=Australia&photo=496"
        assert first["language"] == "en" and 0.65 < first["language_score"] <= 1
    assert all(r["dump"] is None and r["date"] == "2024-02-20T10:00:00Z" for r in synth_rows)  # cc_synth: no crawl
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "c.parquet"), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert loaded.column_names == list(PARQUET_COLUMNS) and loaded[rows.index(first)]["id"] == first["id"]
