"""The trainer: a run directory that generation can use alone, exact resume, clear errors, DDP."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import sysconfig
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastgpt  # noqa: E402
from fastgpt import cli  # noqa: E402
from fastgpt.data.tokens import TokenFile, write_tokens  # noqa: E402
from fastgpt.gpt.model import GPTConfig  # noqa: E402
from fastgpt.gpt.trainer import TrainConfig, lr_at, train  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY_MODEL = dict(embed_dim=32, n_heads=2, num_layers=2, seq_len=32)
TINY_FLAGS = [
    "--embed_dim",
    "32",
    "--n_heads",
    "2",
    "--num_layers",
    "2",
    "--seq_len",
    "32",
    "--batch_size",
    "8",
    "--device",
    "cpu",
]  # CPU even where CUDA exists: bit-exact comparisons


def stdlib_text(
    names=("json/__init__.py", "json/decoder.py", "json/encoder.py", "textwrap.py", "shlex.py"),
) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [(root / n).read_text(encoding="utf-8", errors="replace") for n in names]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, byte_tokenizer) -> Path:
    """Tokenizer dir plus train.bin / eval.bin of real Python sources, documents separated by end-of-text."""
    d = tmp_path_factory.mktemp("corpus")
    byte_tokenizer.save(d / "tok")
    ids = np.concatenate([byte_tokenizer.encode_ordinary(t) + [byte_tokenizer.eot_token] for t in stdlib_text()])
    cut = int(len(ids) * 0.9)
    write_tokens(d / "train.bin", ids[:cut], vocab_size=257, eot_token=256)
    write_tokens(d / "eval.bin", ids[cut:], vocab_size=257, eot_token=256)
    return d


def fastgpt_cli(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("train", "generate"))  # only the commands under test
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_cli_run_directory_is_self_contained(corpus, tmp_path, monkeypatch, capsys):
    rc, out, err = fastgpt_cli(
        monkeypatch,
        capsys,
        "train",
        "--tokenizer",
        corpus / "tok",
        "--train_data",
        corpus / "train.bin",
        "--eval_data",
        corpus / "eval.bin",
        "--experiment_name",
        "cli",
        "--out_dir",
        tmp_path,
        *TINY_FLAGS,
        "--max_steps",
        30,
        "--eval_interval",
        15,
        "--log_interval",
        5,
        "--warmup_steps",
        5,
    )
    assert rc == 0, err
    run = tmp_path / "cli"
    assert "finished at step 30/30" in out and str(run) in out
    assert {"config.json", "tokenizer", "last.pt", "best.pt", "metrics.jsonl"} <= {p.name for p in run.iterdir()}
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["vocab_size"] == 257 and config["model"]["embed_dim"] == 32
    assert fastgpt.Tokenizer.load(run / "tokenizer").n_vocab == 257
    metrics = read_metrics(run)
    losses = [m["loss"] for m in metrics if "loss" in m]
    evals = [m for m in metrics if "val_loss" in m]
    assert losses[0] == pytest.approx(math.log(257), abs=0.01) and losses[-1] < losses[0] - 1
    assert [e["step"] for e in evals] == [15, 30]
    assert evals[-1]["val_ppl"] == pytest.approx(math.exp(evals[-1]["val_loss"]))
    assert 0 < evals[-1]["val_bpb"] < 8  # byte tokens: bits per byte = loss / ln 2 over the byte tokens
    try:
        import matplotlib  # noqa: F401

        assert (run / "loss.png").stat().st_size > 0
    except ImportError:
        assert "matplotlib is not installed" in out


def test_resume_equals_uninterrupted_run(corpus, tmp_path):
    def config(name, **kw):
        return TrainConfig(
            device="cpu",
            tokenizer=str(corpus / "tok"),
            train_data=str(corpus / "train.bin"),
            eval_data=str(corpus / "eval.bin"),
            experiment_name=name,
            out_dir=str(tmp_path),
            max_steps=8,
            batch_size=4,
            warmup_steps=2,
            total_batch_tokens=2 * 4 * 32,
            eval_interval=3,
            eval_batches=2,
            log_interval=1,
            **kw,
        )

    model = GPTConfig(**TINY_MODEL, dropout_rate=0.1)  # dropout: the RNG state must be restored too
    whole = train(config("whole"), model)
    stopped = train(config("split"), model, on_step=lambda step, record: step == 4)
    assert stopped["interrupted"] and stopped["step"] == 4
    resumed = train(config("split", resume=True), model)
    assert resumed["step"] == 8 and not resumed["interrupted"]
    a, b = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "split")
    assert [m["step"] for m in a] == [m["step"] for m in b]
    for ma, mb in zip(a, b):  # every train loss and eval loss, bit for bit
        assert ma.get("loss") == mb.get("loss") and ma.get("val_loss") == mb.get("val_loss")
    assert whole["val_loss"] == resumed["val_loss"]


def test_budget_in_epochs_or_tokens(corpus, tmp_path):
    def planned_steps(name, **budget):
        config = TrainConfig(
            device="cpu",
            tokenizer=str(corpus / "tok"),
            train_data=str(corpus / "train.bin"),
            out_dir=str(tmp_path),
            experiment_name=name,
            batch_size=8,
            **budget,
        )
        # Stop after the first step: only the plan matters here.
        return train(config, GPTConfig(**TINY_MODEL), on_step=lambda step, record: True)["max_steps"]

    windows = (len(TokenFile(corpus / "train.bin")) - 1) // 32  # non-overlapping 32-token windows: one epoch
    assert planned_steps("e", epochs=0.5) == math.ceil(0.5 * windows / 8)
    assert planned_steps("t", max_tokens=1000) == math.ceil(1000 / (8 * 32))


def test_out_of_memory_suggests_a_smaller_batch(corpus, tmp_path, monkeypatch):
    from fastgpt.gpt import trainer as train_module

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module.GPT, "forward", out_of_memory)
    config = TrainConfig(
        device="cpu",
        tokenizer=str(corpus / "tok"),
        train_data=str(corpus / "train.bin"),
        out_dir=str(tmp_path),
        batch_size=8,
        max_steps=2,
    )
    with pytest.raises(ValueError, match="out of GPU memory.*--batch_size 4 with --total_batch_tokens 256"):
        train(config, GPTConfig(**TINY_MODEL))


def test_mfu_peaks_by_device_name():
    from fastgpt.gpt.trainer import peak_flops

    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12 and peak_flops("NVIDIA A10G") == 70e12
    assert peak_flops("NVIDIA H200") == 989e12 and peak_flops("Some Future GPU") is None
    assert peak_flops(torch.device("cpu")) is None


def test_untrained_model_scores_uniform(corpus, byte_tokenizer):
    """A zero-initialised head predicts uniformly: ln(257) nats, and 8 bits per byte-token over one byte."""
    from fastgpt.data.tokens import TokenDataset
    from fastgpt.gpt.model import GPT
    from fastgpt.gpt.trainer import _token_bytes, evaluate

    model = GPT(GPTConfig(**TINY_MODEL, vocab_size=257))
    ds = TokenDataset(corpus / "eval.bin", 32)
    token_bytes = _token_bytes(byte_tokenizer)
    assert token_bytes[:256].eq(1).all() and token_bytes[256] == 0  # end-of-text is no byte
    val = evaluate(model, ds, 4, 3, token_bytes)
    assert val["val_loss"] == pytest.approx(math.log(257), abs=1e-5)
    assert val["val_ppl"] == pytest.approx(257, rel=1e-4)
    assert val["val_bpb"] == pytest.approx(math.log2(257), rel=1e-5)


def test_small_text_and_pt_data(corpus, tmp_path, byte_tokenizer):
    """.txt files are encoded on the fly with the run's tokenizer; .pt tensors load as they are."""
    (tmp_path / "train.txt").write_text("\n".join(stdlib_text()[:2]))
    torch.save(torch.tensor(byte_tokenizer.encode_ordinary(stdlib_text()[2])), tmp_path / "eval.pt")
    summary = train(
        TrainConfig(
            device="cpu",
            tokenizer=str(corpus / "tok"),
            train_data=str(tmp_path / "train.txt"),
            eval_data=str(tmp_path / "eval.pt"),
            out_dir=str(tmp_path),
            max_steps=3,
            batch_size=4,
        ),
        GPTConfig(**TINY_MODEL),
    )
    assert summary["step"] == 3 and summary["val_loss"] > 0


def test_lr_schedule():
    cfg = TrainConfig(learning_rate=1.0, warmup_steps=10, min_lr_ratio=0.1, schedule="cosine")
    assert lr_at(0, cfg, 110) == pytest.approx(0.1) and lr_at(9, cfg, 110) == pytest.approx(1.0)
    assert lr_at(60, cfg, 110) == pytest.approx(0.55) and lr_at(110, cfg, 110) == pytest.approx(0.1)
    wsd = TrainConfig(learning_rate=1.0, warmup_steps=10, min_lr_ratio=0.1, schedule="wsd", cooldown_frac=0.5)
    assert lr_at(5, wsd, 200) == pytest.approx(0.6) and lr_at(100, wsd, 200) == pytest.approx(1.0)
    assert lr_at(150, wsd, 200) == pytest.approx(0.55) and lr_at(200, wsd, 200) == pytest.approx(0.1)
    # A re-planned (longer) run moves only the cooldown: the rate before it is unchanged.
    assert lr_at(90, wsd, 200) == lr_at(90, wsd, 400) == 1.0


def test_flags_cover_both_configs(monkeypatch):
    from fastgpt.commands import train as command

    flags = {name for name, _, _ in command.MODEL_FLAGS + command.TRAIN_FLAGS}
    assert {f.name for f in fields(GPTConfig)} - {"vocab_size"} <= flags  # vocab comes from the tokenizer
    assert {f.name for f in fields(TrainConfig)} <= flags
    from fastgpt.gpt.model import ACTIVATIONS, NORMS
    from fastgpt.gpt.optim import OPTIMIZERS
    from fastgpt.gpt.trainer import SCHEDULES

    assert command.CHOICES == {"norm": NORMS, "activation": ACTIVATIONS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}


@pytest.fixture()
def bad_data(corpus, tmp_path) -> Path:
    write_tokens(tmp_path / "vocab300.bin", np.arange(1000) % 300, vocab_size=300)
    raw = np.arange(1000, dtype=np.uint16) % 200
    raw[100] = 400  # headerless: no vocabulary in a header, caught when a batch reads it
    raw.tofile(tmp_path / "raw.bin")
    write_tokens(tmp_path / "short.bin", np.arange(10), vocab_size=257)
    return tmp_path


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--tgt_vocab_size", "1000"], "--tgt_vocab_size 1000 disagrees with the tokenizer.*257"),
        (["--train_data", "{bad}/vocab300.bin"], "vocab300.bin: vocabulary mismatch"),
        (["--train_data", "{bad}/raw.bin", "--headerless", "--no-shuffle"], "raw.bin: token id 400 at position 100"),
        (["--eval_data", "{bad}/short.bin"], "seq_len 32 is longer than the data.*short.bin has 10"),
        (["--max_steps", "3", "--epochs", "1"], "at most one of"),
        (["--total_batch_tokens", "1000"], "not a multiple of batch_size x seq_len"),
        (["--resume"], "no checkpoint to resume from"),
        (["--tokenizer", "{bad}/nowhere"], "nowhere"),
        (["--train_data", "{bad}/missing.bin"], "missing.bin: no such data file"),
    ],
)
def test_errors_are_one_clear_line(corpus, bad_data, monkeypatch, capsys, extra, message):
    base = {"--tokenizer": str(corpus / "tok"), "--train_data": str(corpus / "train.bin"), "--max_steps": "2"}
    extra = [e.replace("{bad}", str(bad_data)) for e in extra]
    for flag in list(base):
        if flag in extra:
            del base[flag]
    argv = ["train", *sum(base.items(), ()), "--out_dir", str(bad_data / "runs"), *TINY_FLAGS, *extra]
    rc, _, err = fastgpt_cli(monkeypatch, capsys, *argv)
    assert rc == 1
    last = err.strip().splitlines()[-1]  # before it, at most the progress bar
    assert last.startswith("fastgpt: error: ") and "Traceback" not in err
    assert re.search(message, last), err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_but_absent(corpus, tmp_path, monkeypatch, capsys):
    rc, _, err = fastgpt_cli(
        monkeypatch,
        capsys,
        "train",
        "--tokenizer",
        corpus / "tok",
        "--train_data",
        corpus / "train.bin",
        "--out_dir",
        tmp_path,
        *TINY_FLAGS,
        "--device",
        "cuda",
    )
    assert rc == 1 and "CUDA is not available" in err


def test_existing_run_and_resume_config_checks(corpus, tmp_path, monkeypatch, capsys):
    args = [
        "train",
        "--tokenizer",
        corpus / "tok",
        "--train_data",
        corpus / "train.bin",
        "--out_dir",
        tmp_path,
        "--experiment_name",
        "r",
        *TINY_FLAGS,
    ]
    assert fastgpt_cli(monkeypatch, capsys, *args, "--max_steps", 2)[0] == 0
    rc, _, err = fastgpt_cli(monkeypatch, capsys, *args, "--max_steps", 2)
    assert rc == 1 and "already holds a run: pass --resume" in err
    rc, _, err = fastgpt_cli(monkeypatch, capsys, *args, "--max_steps", 4, "--resume", "--embed_dim", 64)
    assert rc == 1 and "embed_dim is 32 in the checkpoint but 64 was given" in err
    fastgpt.Tokenizer.from_ranks({bytes([i]): i for i in range(256)}, pattern="gpt2").save(tmp_path / "tok256")
    other = [a if a != corpus / "tok" else tmp_path / "tok256" for a in args]
    rc, _, err = fastgpt_cli(monkeypatch, capsys, *other, "--max_steps", 4, "--resume")
    assert rc == 1 and "the checkpoint's vocabulary is 257 tokens" in err and "tok256 has 256" in err
    rc, out, err = fastgpt_cli(monkeypatch, capsys, *args, "--max_steps", 4, "--resume")
    assert rc == 0 and "finished at step 4/4" in out, err


def subprocess_env() -> dict:
    """Environment for `python -m fastgpt` in a child: this checkout's package, one thread."""
    path = os.pathsep.join([str(Path(fastgpt.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_after_the_step_and_saves(corpus, tmp_path):
    import signal
    import time

    cmd = [
        sys.executable,
        "-m",
        "fastgpt",
        "train",
        "--tokenizer",
        corpus / "tok",
        "--train_data",
        corpus / "train.bin",
        "--out_dir",
        tmp_path,
        "--experiment_name",
        "sig",
        "--max_steps",
        "1000000",
        "--log_interval",
        "1",
        "--embed_dim",
        "16",
        "--n_heads",
        "2",
        "--num_layers",
        "1",
        "--seq_len",
        "16",
        "--batch_size",
        "2",
        "--device",
        "cpu",
    ]
    child = subprocess.Popen(
        [str(c) for c in cmd], env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = tmp_path / "sig" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3) and time.monotonic() < deadline:
        assert child.poll() is None, child.communicate()[1][-2000:]
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    # Defect 22: a distinct exit status (a completed run exits 0), and how to continue.
    assert child.returncode == 130, err[-2000:]
    step = int(re.search(r"stopped at step (\d+)/1000000", out).group(1))
    saved = torch.load(tmp_path / "sig" / "last.pt", weights_only=True)
    assert saved["step"] == step and saved["data"]["step"] == step  # one batch per step, no accumulation
    hint = err.strip().splitlines()[-1]
    assert hint.startswith("fastgpt: interrupted; to continue: fastgpt train ") and hint.endswith(" --resume")
    assert "--experiment_name sig" in hint and "--max_steps 1000000" in hint


@pytest.mark.slow
def test_learns_real_text(byte_tokenizer, tmp_path):
    """A few hundred steps on CPython sources: eval loss far below ln(vocab) = 5.55 nats."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = [p.read_text(encoding="utf-8", errors="replace") for p in sorted((root / "email").glob("*.py"))]
    ids = np.concatenate([byte_tokenizer.encode_ordinary(d) + [256] for d in docs])
    cut = int(len(ids) * 0.95)
    write_tokens(tmp_path / "train.bin", ids[:cut], 257, 256)
    write_tokens(tmp_path / "eval.bin", ids[cut:], 257, 256)
    byte_tokenizer.save(tmp_path / "tok")
    summary = train(
        TrainConfig(
            device="cpu",
            tokenizer=str(tmp_path / "tok"),
            train_data=str(tmp_path / "train.bin"),
            eval_data=str(tmp_path / "eval.bin"),
            out_dir=str(tmp_path),
            max_steps=300,
            batch_size=16,
            warmup_steps=30,
            eval_interval=300,
        ),
        GPTConfig(embed_dim=64, n_heads=4, num_layers=2, seq_len=64),
    )
    assert summary["val_loss"] < 0.55 * math.log(257), summary  # about 2.6 nats after 300 steps


@pytest.mark.slow
def test_ddp_two_processes_match_one(corpus, tmp_path):
    """torchrun with 2 gloo ranks x batch 4 gives the losses of 1 process x batch 8."""
    common = [
        "--tokenizer",
        corpus / "tok",
        "--train_data",
        corpus / "train.bin",
        "--eval_data",
        corpus / "eval.bin",
        "--out_dir",
        tmp_path,
        "--embed_dim",
        "32",
        "--n_heads",
        "2",
        "--num_layers",
        "2",
        "--seq_len",
        "32",
        "--max_steps",
        "4",
        "--log_interval",
        "1",
        "--eval_interval",
        "4",
        "--eval_batches",
        "2",
        "--device",
        "cpu",
        "--warmup_steps",
        "1",
        "--learning_rate",
        "1e-2",
    ]
    env = subprocess_env()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "fastgpt",
        "train",
        *map(str, common),
        "--experiment_name",
        "ddp",
        "--batch_size",
        "4",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, "-m", "fastgpt", "train", *map(str, common), "--experiment_name", "one", "--batch_size", "8"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "one")
    assert [m["step"] for m in a] == [m["step"] for m in b]
    for ma, mb in zip(a, b):
        for key in ("loss", "val_loss"):
            if key in mb:
                assert ma[key] == pytest.approx(mb[key], rel=1e-4, abs=1e-5)


# ---- time budget (--max_minutes), optimizers, and the run directory's defences -----------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(budget, pace, steps_cap=100_000, pace_after=None, change_at=None):
    """Drive a TimeBudget as the trainer does: a loss read every 10 steps, a plan every step."""
    from fastgpt.gpt.trainer import TimeBudget

    clock = FakeClock()
    tb = TimeBudget(budget, clock=clock, eval_batches=0)
    step, max_steps = 0, 1 << 62
    while step < max_steps and step < steps_cap:
        clock.now += pace if change_at is None or step < change_at else pace_after
        step += 1
        if step == 1:
            tb.first_pace(clock.now)
        if step == 1 or step % 10 == 0:
            tb.observe(step)
        max_steps = tb.plan(step)
    return step, clock.now, tb


@pytest.mark.parametrize(
    "pace, pace_after, change_at",
    [(0.1, None, None), (0.1, 0.5, 300), (0.5, 0.1, 50)],  # steady; 5x slower after a while; 5x faster
)
def test_time_budget_sizes_and_replans_the_run(pace, pace_after, change_at):
    step, end, tb = simulate(100.0, pace, pace_after=pace_after, change_at=change_at)
    assert 0.95 * 100 <= end <= 100  # ends inside the budget, having used nearly all of it
    assert step > 100


def test_time_budget_pays_for_evaluations_and_saves():
    from fastgpt.gpt.trainer import TimeBudget

    clock = FakeClock()
    tb = TimeBudget(100.0, clock=clock, eval_batches=10)
    for step in (1, 10, 20):
        clock.now = step * 0.1
        tb.observe(step)
    assert tb.step_s == pytest.approx(0.1)
    plain = tb.plan(20)
    tb.add_overhead(5.0, "eval")
    tb.add_overhead(1.0, "save")
    assert tb.final_reserve() == pytest.approx(5.0 + 1.0 + 1.0)
    # The measured final evaluation and save (7 s instead of the 1.4 s estimated) and four
    # more evaluations and saves to come (4 x 6 s) leave that much less time for steps.
    assert tb.plan(20, evals_left=4) == pytest.approx(plain - (7 - 1.4 + 24) / 0.1, abs=2)
    clock.now = 99.0
    assert tb.plan(990) == 990  # the budget is spent: this step is the last


def time_boxed_config(corpus, tmp_path, name, **kw):
    return TrainConfig(
        device="cpu",
        tokenizer=str(corpus / "tok"),
        train_data=str(corpus / "train.bin"),
        eval_data=str(corpus / "eval.bin"),
        out_dir=str(tmp_path),
        experiment_name=name,
        batch_size=8,
        eval_batches=4,
        warmup_steps=5,
        **kw,
    )


def test_max_minutes_ends_within_the_budget_evaluated_and_saved(corpus, tmp_path):
    # The bar (5% of the budget) is measured by the benchmark at 150 s; a 6 s test on a shared
    # machine gets 10%, the same relative slack being a third of a second here.
    budget = 6.0
    summary = train(
        time_boxed_config(corpus, tmp_path, "tb", max_minutes=budget / 60, evals=2), GPTConfig(**TINY_MODEL)
    )
    assert 0.85 * budget <= summary["seconds"] <= 1.1 * budget, summary
    assert not summary["interrupted"] and summary["step"] == summary["max_steps"] > 10
    metrics = read_metrics(tmp_path / "tb")
    final = metrics[-1]
    assert final["final"] and final["step"] == summary["step"] and final["val_loss"] == summary["val_loss"]
    assert 0 < final["val_bpb"] < 8 and final["elapsed_s"] <= 1.1 * budget
    assert len([m for m in metrics if "val_loss" in m]) == 2
    saved = torch.load(tmp_path / "tb" / "last.pt", weights_only=True)
    assert saved["step"] == summary["step"] and saved["elapsed_s"] <= 1.1 * budget


def test_max_minutes_resumes_with_what_is_left(corpus, tmp_path):
    cfg = time_boxed_config(corpus, tmp_path, "tbr", max_minutes=0.1)  # 6 s in all
    first = train(cfg, GPTConfig(**TINY_MODEL), on_step=lambda step, record: step == 5)
    assert first["interrupted"] and first["step"] == 5
    resumed = train(replace(cfg, resume=True), GPTConfig(**TINY_MODEL))
    assert resumed["step"] > 5 and not resumed["interrupted"]
    saved = torch.load(tmp_path / "tbr" / "last.pt", weights_only=True)
    assert saved["elapsed_s"] <= 1.1 * 6  # the two segments together stay in the budget
    with pytest.raises(ValueError, match="already trained .* of its --max_minutes 0.1; give a larger"):
        train(replace(cfg, resume=True), GPTConfig(**TINY_MODEL))


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_max_minutes_must_be_positive(corpus, tmp_path, monkeypatch, capsys, value):
    argv = ["train", "--tokenizer", corpus / "tok", "--train_data", corpus / "train.bin", "--out_dir", tmp_path]
    rc, _, err = fastgpt_cli(monkeypatch, capsys, *argv, *TINY_FLAGS, "--max_minutes", value)
    assert rc == 1 and f"--max_minutes must be a positive number of minutes, got {float(value)}" in err
    assert not (tmp_path / "gpt").exists()  # nothing left behind
    rc, _, err = fastgpt_cli(monkeypatch, capsys, *argv, *TINY_FLAGS, "--max_minutes", "1", "--max_steps", "3")
    assert rc == 1 and "at most one of" in err


def test_unknown_optimizer_lists_the_choices(corpus, tmp_path, monkeypatch, capsys):
    argv = ["train", "--tokenizer", corpus / "tok", "--train_data", corpus / "train.bin", "--optimizer", "sgd"]
    with pytest.raises(SystemExit) as exc:
        fastgpt_cli(monkeypatch, capsys, *argv)
    assert exc.value.code == 2
    assert re.search(r"invalid choice: 'sgd' \(choose from '?adamw'?, '?muon'?\)", capsys.readouterr().err)
    with pytest.raises(ValueError, match="--optimizer 'sgd' is not one of: adamw, muon"):
        train(replace(time_boxed_config(corpus, tmp_path, "o"), optimizer="sgd"), GPTConfig(**TINY_MODEL))


def test_resuming_with_another_optimizer_names_both(corpus, tmp_path, monkeypatch, capsys):
    args = ["train", "--tokenizer", corpus / "tok", "--train_data", corpus / "train.bin", "--out_dir", tmp_path]
    args += ["--experiment_name", "opt", *TINY_FLAGS]
    assert fastgpt_cli(monkeypatch, capsys, *args, "--max_steps", 2, "--optimizer", "adamw")[0] == 0
    rc, _, err = fastgpt_cli(monkeypatch, capsys, *args, "--max_steps", 4, "--resume", "--optimizer", "muon")
    assert rc == 1
    assert "trained with --optimizer adamw, it cannot resume with --optimizer muon" in err
    # Not given: the checkpoint's optimizer (and the rest of its settings) carries on.
    rc, out, err = fastgpt_cli(monkeypatch, capsys, *args, "--max_steps", 4, "--resume")
    assert rc == 0 and "finished at step 4/4" in out, err


def test_muon_trains_hidden_matrices_and_adamw_the_rest(corpus, tmp_path):
    from fastgpt.gpt.model import GPT
    from fastgpt.gpt.optim import make_optimizer

    model = GPT(GPTConfig(**TINY_MODEL, vocab_size=257))
    cfg = TrainConfig(optimizer="muon", muon_lr=0.05, embedding_lr=0.3, head_lr=0.006)
    opt = make_optimizer(model, cfg, width=32)
    muon, adam = sorted(opt.optimizers, key=lambda o: not isinstance(o, torch.optim.Muon))
    assert isinstance(muon, torch.optim.Muon) and isinstance(adam, torch.optim.AdamW)
    assert {id(p) for g in muon.param_groups for p in g["params"]} == {id(p) for p in model.param_kinds()["matrix"]}
    rates = {id(p): g["base_lr"] for g in adam.param_groups for p in g["params"]}
    assert rates[id(model.wte.weight)] == pytest.approx(0.3 * (768 / 32) ** 0.5)  # width-scaled
    assert rates[id(model.lm_head.weight)] == pytest.approx(0.006 * (768 / 32) ** 0.5)
    assert muon.param_groups[0]["base_lr"] == 0.05


def test_truncated_checkpoint_on_resume_is_one_clear_error(corpus, tmp_path, monkeypatch, capsys):
    """Defect 3: a truncated last.pt with --resume raised an unpickling traceback."""
    args = ["train", "--tokenizer", corpus / "tok", "--train_data", corpus / "train.bin", "--out_dir", tmp_path]
    args += ["--experiment_name", "cut", *TINY_FLAGS]
    assert fastgpt_cli(monkeypatch, capsys, *args, "--max_steps", 2)[0] == 0
    last = tmp_path / "cut" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    rc, _, err = fastgpt_cli(monkeypatch, capsys, *args, "--max_steps", 4, "--resume")
    assert rc == 1 and "Traceback" not in err
    assert re.search(r"fastgpt: error: .*cut/last\.pt: not a readable checkpoint .*truncated or damaged", err), err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks and signals")
def test_second_run_with_the_same_name_fails_while_the_first_trains(corpus, tmp_path, monkeypatch, capsys):
    """Defect 11: both runs proceeded (the check looked only for last.pt) and mixed one directory."""
    import signal
    import time

    common = ["--tokenizer", corpus / "tok", "--train_data", corpus / "train.bin", "--out_dir", tmp_path]
    common += ["--experiment_name", "same", *TINY_FLAGS]
    cmd = [sys.executable, "-m", "fastgpt", "train", *common, "--max_steps", "1000000", "--log_interval", "1"]
    child = subprocess.Popen(
        [str(c) for c in cmd], env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        metrics = tmp_path / "same" / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (metrics.exists() and metrics.read_text().count("\n") >= 2) and time.monotonic() < deadline:
            assert child.poll() is None, child.communicate()[1][-2000:]
            time.sleep(0.1)
        before = metrics.read_text()
        rc, _, err = fastgpt_cli(monkeypatch, capsys, "train", *common, "--max_steps", 3)
        assert rc == 1 and f"{tmp_path / 'same'} is in use by another training run (pid {child.pid})" in err
        assert metrics.read_text().startswith(before)  # the first run's history is untouched
    finally:
        child.send_signal(signal.SIGINT)
        child.communicate(timeout=120)
    # Once the first run has stopped, the lock is gone with it: the run resumes.
    step = torch.load(tmp_path / "same" / "last.pt", weights_only=True)["step"]
    rc, out, err = fastgpt_cli(monkeypatch, capsys, "train", *common, "--resume", "--max_steps", step + 1)
    assert rc == 0 and f"finished at step {step + 1}/{step + 1}" in out, err


@pytest.mark.slow
def test_ddp_time_boxed_ranks_stop_together(corpus, tmp_path):
    """Under torchrun a time-boxed run ends for every rank at rank 0's planned step: ranks that
    disagreed would hang in the next collective (the timeout) or exit with an error."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "fastgpt"]
    cmd += ["train", "--tokenizer", corpus / "tok", "--train_data", corpus / "train.bin", "--eval_data"]
    cmd += [corpus / "eval.bin", "--out_dir", tmp_path, "--experiment_name", "tb", *TINY_FLAGS, "--batch_size", 4]
    cmd += ["--max_minutes", 0.15, "--eval_batches", 2, "--log_interval", 2]
    done = subprocess.run([str(c) for c in cmd], env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    final = read_metrics(tmp_path / "tb")[-1]
    assert final["final"] and final["elapsed_s"] <= 1.1 * 9 and final["step"] > 2
    assert f"finished at step {final['step']}/{final['step']}" in done.stdout


def test_stacked_muon_equals_torch_muon():
    """fastgpt's Muon batches the Newton-Schulz iterations of same-shape matrices; each update is
    torch.optim.Muon's (to bf16 rounding: torch's iterations are bf16, ours fp32 on a CPU without
    bf16 kernels), and the state dicts load into each other."""
    from fastgpt.gpt.optim import StackedMuon

    torch.manual_seed(0)
    shapes = [(96, 32), (96, 32), (32, 32), (128, 32), (32, 128), (32, 128)]
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    a = StackedMuon(ours, lr=0.02, weight_decay=0.1)
    b = torch.optim.Muon(ref, lr=0.02, weight_decay=0.1)
    for _ in range(3):
        grads = [torch.randn(s) for s in shapes]
        for p, q, g in zip(ours, ref, grads):
            p.grad, q.grad = g.clone(), g.clone()
        a.step()
        b.step()
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, atol=2e-3, rtol=0)  # bf16 rounding, batched or not
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.state[ref[0]]["momentum_buffer"], a.state[ours[0]]["momentum_buffer"])
