"""`fastgpt demo` end to end at the tiny size, `fastgpt bench` on a tiny input, and the
report that `make bench` writes (benches/report.py) on a synthetic pytest-benchmark file."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from fastgpt.apps.demo import DemoConfig, config_for, run_demo, split_documents
from fastgpt.cli import main

pytest.importorskip("torch")


# ---- the demo ------------------------------------------------------------------------------


def test_demo_tiny_end_to_end(tmp_path):
    lines: list[str] = []
    result = run_demo(config_for("tiny", out=str(tmp_path / "demo"), progress=False), log=lines.append)
    out = tmp_path / "demo"
    for path in (
        "data/train.jsonl",
        "data/eval.jsonl",
        "data/train.bin",
        "data/eval.bin",
        "tokenizer/fastgpt.json",
        "tokenizer/vocab.tiktoken",
        "runs/demo/last.pt",
        "runs/demo/best.pt",
        "runs/demo/config.json",
        "runs/demo/tokenizer/fastgpt.json",
    ):
        assert (out / path).is_file(), path
    assert [line[:5] for line in lines if line.startswith("[")] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
    assert result.steps == 6 and result.val_loss is not None and result.n_vocab == 320
    assert result.documents[0] > 0 and result.documents[1] > 0 and min(result.tokens) > 0
    assert result.samples[0].startswith("def ")
    assert any(str(result.run_dir) in line for line in lines)  # says where the checkpoint is
    if importlib.util.find_spec("matplotlib"):
        assert result.loss_plot == out / "runs/demo/loss.png" and result.loss_plot.is_file()

    from fastgpt.data.tokens import TokenFile

    assert TokenFile(result.train_bin).vocab_size == 320
    # A rerun replaces the previous demo run instead of refusing to overwrite it.
    again = run_demo(config_for("tiny", out=str(out), progress=False, max_steps=2), log=lambda line: None)
    assert again.steps == 2


def test_demo_trains_for_its_minutes(tmp_path):
    """The demo's budget is the trainer's --max_minutes: sized, re-planned, evaluated at the end."""
    from dataclasses import replace

    cfg = replace(config_for("tiny", out=str(tmp_path / "demo"), progress=False), max_steps=None, minutes=0.1)
    result = run_demo(cfg, log=lambda line: None)
    assert result.steps > 6 and result.val_loss is not None
    assert result.seconds["train"] <= 6 * 1.1 + 1  # train() itself ends inside 6 s; +1 s for loading torch parts
    metrics = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["final"] and metrics[-1]["step"] == result.steps


def test_demo_cli_on_own_corpus(tmp_path, capsys):
    """--corpus with one text file: its blank-line blocks become the documents."""
    text = "\n\n".join(f"Paragraph {i}: the quick brown fox jumps over the lazy dog {i} times." for i in range(200))
    (tmp_path / "book.txt").write_text(text)
    code = main(
        [
            "demo",
            "--size",
            "tiny",
            "--corpus",
            str(tmp_path / "book.txt"),
            "--out",
            str(tmp_path / "o"),
            "--prompt",
            "The",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "190 documents" in out and "10 (" in out  # 200 paragraphs, every 20th held out
    assert "----- sample 1\nThe" in out and "checkpoint" in out and "fastgpt generate --checkpoint" in out


def test_demo_on_jsonl_records(tmp_path):
    """Each record of a .jsonl corpus is a document, newlines inside it kept."""
    records = [{"text": f"def f{i}(x):\n    return x + {i}\n"} for i in range(60)]
    (tmp_path / "code.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = run_demo(
        config_for(
            "tiny",
            corpus=str(tmp_path / "code.jsonl"),
            out=str(tmp_path / "o"),
            progress=False,
            device="cpu",
            seq_len=8,
        ),
        log=lambda line: None,
    )
    assert result.documents == (57, 3)
    held = [json.loads(line)["text"] for line in result.eval_corpus.read_text().splitlines()]
    assert held == [records[i]["text"] for i in (19, 39, 59)]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--minutes", "0"], "--minutes must be positive, got 0.0"),
        (["--minutes", "-1"], "--minutes must be positive"),
        (["--corpus", "/nonexistent/corpus"], "/nonexistent/corpus: no such file or directory"),
    ],
)
def test_demo_errors(tmp_path, capsys, argv, message):
    assert main(["demo", "--size", "tiny", "--out", str(tmp_path / "o"), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastgpt: error:") and message in err


def test_demo_empty_corpus(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n   \n\n")
    assert main(["demo", "--size", "tiny", "--corpus", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "o")]) == 1
    assert (
        f"--corpus {tmp_path / 'empty.txt'}: 0 non-empty document(s); the demo needs at least 2"
        in capsys.readouterr().err
    )


def test_demo_refuses_to_delete_what_is_not_a_run(tmp_path):
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    with pytest.raises(ValueError, match="is not a training run"):
        run_demo(config_for("tiny", out=str(tmp_path)), log=lambda line: None)


def test_split_documents_holds_out_every_20th():
    docs = [str(i) for i in range(45)]
    train, held = split_documents(docs)
    assert held == ["19", "39"] and len(train) == 43
    assert split_documents(["a", "b", "c"]) == (["a", "b"], ["c"])  # fewer than 20: the last one
    with pytest.raises(ValueError, match="needs at least 2"):
        split_documents(["only one"])


def test_sizes_are_valid_configs():
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        config_for("huge")
    assert config_for("tiny", minutes=None).minutes == DemoConfig().minutes


# ---- fastgpt bench --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_inputs(tmp_path_factory):
    """A ~100 KB text file of the standard library and a small tokenizer trained on it."""
    from fastgpt import Tokenizer
    from fastgpt.apps.demo import stdlib_sources

    d = tmp_path_factory.mktemp("bench")
    text, size = [], 0
    for path in stdlib_sources():
        text.append(path.read_text(encoding="utf-8", errors="replace"))
        size += len(text[-1])
        if size > 100_000:
            break
    (d / "sample.txt").write_text("".join(text))
    Tokenizer.train(iter(text), 512, progress=False).save(d / "tok")
    return d / "sample.txt", d / "tok"


def test_bench_against_tiktoken(bench_inputs, tmp_path, capsys):
    pytest.importorskip("tiktoken")
    sample, tok = bench_inputs
    out = tmp_path / "bench.json"
    argv = [
        "bench",
        "--input",
        str(sample),
        "--tokenizer",
        str(tok),
        "--iterations",
        "1",
        "--threads",
        "2",
        "--compare",
        "tiktoken",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "| encode, 1 thread | fastgpt |" in table and "| text → .bin, 2 threads | tiktoken |" in table
    assert "x tiktoken" in table and "token counts differ" not in table
    results = json.loads(out.read_text())
    assert [(r["case"], r["library"]) for r in results] == [
        (case, lib)
        for case in ("encode, 1 thread", "encode, 2 threads", "text → .bin, 2 threads")
        for lib in ("fastgpt", "tiktoken")
    ]
    for r in results:
        assert r["tokens"] > 10_000 and r["seconds"] > 0 and r["peak_rss"] > 10 * 2**20 and r["mb_per_s"] > 0
    # The same vocabulary gives the same ids: every case counts the same tokens in both libraries.
    assert results[0]["tokens"] == results[1]["tokens"] and results[4]["tokens"] == results[5]["tokens"]


def test_bench_errors(bench_inputs, tmp_path, capsys):
    sample, tok = bench_inputs
    assert main(["bench", "--input", str(tmp_path / "missing.txt"), "--tokenizer", str(tok)]) == 1
    assert "--input " + str(tmp_path / "missing.txt") + ": no such file" in capsys.readouterr().err
    assert main(["bench", "--input", str(sample), "--tokenizer", str(tok), "--iterations", "0"]) == 1
    assert "--iterations must be at least 1, got 0" in capsys.readouterr().err
    hf_only = tmp_path / "hf"
    hf_only.mkdir()
    (hf_only / "tokenizer.json").write_bytes((tok / "tokenizer.json").read_bytes())
    assert main(["bench", "--input", str(sample), "--tokenizer", str(hf_only), "--compare", "tiktoken"]) == 1
    assert "tiktoken needs vocab.tiktoken and fastgpt.json" in capsys.readouterr().err


# ---- benches/report.py ----------------------------------------------------------------------


def _report_module():
    path = Path(__file__).resolve().parent.parent / "benches" / "report.py"
    spec = importlib.util.spec_from_file_location("bench_report", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _run(name: str, group: str, median: float, params: dict | None = None, **extra) -> dict:
    return {
        "name": name,
        "group": group,
        "params": params,
        "extra_info": extra,
        "stats": {"median": median, "mean": median, "min": median, "rounds": 3},
    }


def test_report_ratios_markdown_and_chart(tmp_path):
    report = _report_module()
    data = {
        "datetime": "2025-01-02T03:04:05.000000+00:00",
        "machine_info": {
            "cpu": {"brand_raw": "Test CPU", "count": 2},
            "system": "Linux",
            "release": "6",
            "python_version": "3.11",
        },
        "commit_info": {"id": "abcdef1234567", "dirty": False},
        "benchmarks": [
            _run("test_encode_batch[1-fastgpt]", "encode batch", 1.0, {"peer": "fastgpt", "threads": 1}, bytes=1000),
            _run("test_encode_batch[1-tiktoken]", "encode batch", 4.0, {"peer": "tiktoken", "threads": 1}, bytes=1000),
            _run(
                "test_encode_batch[2-fastgpt]",
                "encode batch",
                0.5,
                {"peer": "fastgpt", "threads": 2},
                bytes=1000,
                one_thread_seconds=1.1,  # timed in the same benchmark, alternating with 2 threads
            ),
            _run("test_encode_batch[2-tiktoken]", "encode batch", 3.0, {"peer": "tiktoken", "threads": 2}, bytes=1000),
            _run("test_baseline_warcio_py3langid", "cc-extract", 6.0),
            _run("test_fastgpt_cc_extract[1]", "cc-extract", 3.0, {"workers": 1}),
            _run("test_fastgpt_cc_extract[2]", "cc-extract", 2.0, {"workers": 2}),
            _run(
                "test_encode_worst_case[fastgpt-prose]",
                "worst case vs prose: cl100k_base, fastgpt",
                1.0,
                {"case": "prose", "peer": "fastgpt"},
                bytes=100,
            ),
            _run(
                "test_encode_worst_case[fastgpt-one letter]",
                "worst case vs prose: cl100k_base, fastgpt",
                3.0,
                {"case": "one letter", "peer": "fastgpt"},
                bytes=200,
            ),
            _run("test_pretokenize_to_bin", "pretokenize vs in-memory batch encode", 1.0, bytes=100),
            _run("test_nanogpt_style_pipeline", "pretokenize vs in-memory batch encode", 20.0, bytes=100),
            _run("test_in_memory_batch_encode", "pretokenize vs in-memory batch encode", 0.95, bytes=100),
            _run("test_parquet_to_bin", "parquet → .bin (cl100k, all threads)", 0.8, bytes=100),
            _run("test_txt_to_bin", "parquet → .bin (cl100k, all threads)", 1.0, bytes=100),
            _run("test_pyarrow_tiktoken_loop", "parquet → .bin (cl100k, all threads)", 12.0, bytes=100),
            _run("test_peak_rss_is_flat[100]", "parquet → .bin peak RSS", 1.0, parquet_bytes=10**8, peak_rss_mb=200),
            _run("test_peak_rss_is_flat[1000]", "parquet → .bin peak RSS", 9.0, parquet_bytes=10**9, peak_rss_mb=230),
            _run("test_generate_512_tokens_cpu[kv_cache]", "generate 512 new tokens (CPU)", 1.0),
            _run("test_generate_512_tokens_cpu[recompute]", "generate 512 new tokens (CPU)", 8.0),
            _run(
                "test_encode_documents[first_sight-cl100k_base-code-4KB-fastgpt]",
                "encode 1 thread first sight: cl100k_base code 4KB",
                1.0,
                {"peer": "fastgpt"},
                bytes=100,
                fastokens_seconds=1.5,
                alternating_seconds=1.25,
            ),
            _run(
                "test_encode_documents[first_sight-cl100k_base-code-4KB-fastokens]",
                "encode 1 thread first sight: cl100k_base code 4KB",
                0.9,
                {"peer": "fastokens"},
                bytes=100,
            ),
            _run(
                "test_encode_short[cl100k_base-encode-fastgpt]",
                "encode short inputs (13-100 bytes, calls/s): cl100k_base encode",
                2.0,
                {"peer": "fastgpt"},
                bytes=100,
                fastokens_seconds=3.0,  # timed in the same benchmark, alternating with ours
                alternating_seconds=2.5,
            ),
            _run(
                "test_train_steps_cpu[fastgpt]",
                "train step (CPU, fp32)",
                6.0,
                {"which": "fastgpt"},
                nanogpt_reference_seconds=5.4,  # timed in the same benchmark, alternating with ours
                alternating_seconds=5.0,
            ),
            _run(
                "test_train_steps_cpu[nanogpt_reference]", "train step (CPU, fp32)", 4.8, {"which": "nanogpt_reference"}
            ),
            _run(
                "test_encode_short[cl100k_base-encode-fastokens]",
                "encode short inputs (13-100 bytes, calls/s): cl100k_base encode",
                1.0,
                {"peer": "fastokens"},
                bytes=100,
            ),
        ],
    }
    got = {(r.group, r.ours, r.other): round(r.value, 3) for r in report.ratios(data["benchmarks"])}
    assert got == {
        ("encode batch", "fastgpt, threads=1", "tiktoken, threads=1"): 4.0,  # each thread count against its own
        ("encode batch", "fastgpt, threads=2", "tiktoken, threads=2"): 6.0,
        ("encode batch", "2 threads", "1 thread"): 2.2,  # our own scaling (bar: at least 1.8), not 1.0 / 0.5
        (
            "cc-extract",
            "fastgpt_cc_extract, workers=1",
            "baseline_warcio_py3langid",
        ): 2.0,  # the baseline against each of ours
        ("cc-extract", "fastgpt_cc_extract, workers=2", "baseline_warcio_py3langid"): 3.0,
        ("worst case vs prose: cl100k_base, fastgpt", "one letter", "prose"): 1.5,  # per byte
        ("pretokenize vs in-memory batch encode", "text → .bin", "in-memory batch encode"): 0.95,
        ("pretokenize vs in-memory batch encode", "text → .bin", "nanoGPT-style tiktoken pipeline"): 20.0,
        ("generate 512 new tokens (CPU)", "KV cache", "recomputing the context"): 8.0,
        # Parquet: against the same documents from .txt (bar: at least 0.9), the plain loop, RSS 1 GB / 100 MB
        ("parquet → .bin (cl100k, all threads)", "Parquet → .bin", "the same documents from .txt"): 1.25,
        ("parquet → .bin (cl100k, all threads)", "Parquet → .bin", "pyarrow + tiktoken loop"): 15.0,
        ("parquet → .bin peak RSS", "1000 MB of Parquet", "100 MB of Parquet"): 1.15,
        # First sight and short inputs: the fastokens cell of its own, and the rounds
        # alternating with ours (the bar)
        ("encode 1 thread first sight: cl100k_base code 4KB", "fastgpt", "fastokens"): 0.9,
        ("encode 1 thread first sight: cl100k_base code 4KB", "fastgpt", "fastokens, alternating rounds"): 1.2,
        ("encode short inputs (13-100 bytes, calls/s): cl100k_base encode", "fastgpt", "fastokens"): 0.5,
        (
            "encode short inputs (13-100 bytes, calls/s): cl100k_base encode",
            "fastgpt",
            "fastokens, alternating rounds",
        ): 1.2,
        ("train step (CPU, fp32)", "fastgpt", "nanogpt_reference"): 0.8,
        ("train step (CPU, fp32)", "fastgpt", "nanogpt_reference, alternating rounds"): 1.08,
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    assert report.main([str(path), "--markdown", str(tmp_path / "r.md"), "--chart", str(tmp_path / "r.png")]) == 0
    md = (tmp_path / "r.md").read_text()
    assert "Measured 2025-01-02 03:04 UTC on Test CPU, 2 cores" in md and "commit abcdef1234" in md
    assert "| encode batch | fastgpt, threads=1 | tiktoken, threads=1 | **4.00** × faster |" in md
    assert "| encode batch | 1-fastgpt | 1.000 s | 3 | 0.0 MB/s |" in md
    short = "| encode short inputs (13-100 bytes, calls/s): cl100k_base encode | fastgpt | fastokens"
    assert f"{short} | **0.50** × faster |  |" in md  # the bar goes to the alternating rounds
    assert f"{short}, alternating rounds | **1.20** × faster | ≥ 1 |" in md
    first = "| encode 1 thread first sight: cl100k_base code 4KB | fastgpt | fastokens"
    assert (
        f"{first} | **0.90** × faster |  |" in md and f"{first}, alternating rounds | **1.20** × faster | ≥ 1 |" in md
    )
    train = "| train step (CPU, fp32) | fastgpt | nanogpt_reference"
    assert (
        f"{train} | **0.80** × faster |  |" in md and f"{train}, alternating rounds | **1.08** × faster | ≥ 0.9 |" in md
    )
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_peers_share_one_tokenizer_json():
    # Every tokenizer.json peer load used to write a new temporary directory and leave it
    # behind (12 GB of them after some benchmark runs).
    pytest.importorskip("bpe_openai")
    from fastgpt.apps import bench

    first = bench._hub_json("cl100k_base")
    assert bench._hub_json("cl100k_base") == first
    regex = json.loads(Path(first).read_text(encoding="utf-8"))["pre_tokenizer"]["pretokenizers"][0]["pattern"]
    assert regex["Regex"] == bench.HUB_CL100K
    directory = Path(first).parent.parent
    for held in bench._JSON_DIRS.values():
        held.cleanup()
    bench._JSON_DIRS.clear()
    assert not directory.exists()


def test_bench_rounds_time_documents_the_instance_has_not_seen():
    # Rounds hold disjoint documents until the corpus runs out, then start over; no round
    # holds the spare first document or any text of the warm-up (the corpus's tail).
    from fastgpt.apps import bench

    docs, warm = bench.documents("docs", "64KB"), bench.warm_text("docs")
    rounds = [bench.round_documents("docs", "64KB", r) for r in range(12)]
    firsts = [r[0] for r in rounds]
    fits = firsts.index(firsts[0], 1)
    assert fits >= 3 and len(set(firsts[:fits])) == fits
    assert all(rounds[r] == rounds[r % fits] for r in range(12))
    timed = [d for r in rounds for d in r]
    assert docs[0] not in timed
    assert all(d not in warm and warm[:1000] not in d for d in timed)
    assert all(len(r) == bench.ROUND_BYTES // bench.DOC_SIZES["64KB"] for r in rounds)
