"""`fastgpt demo`: the whole pipeline end to end on text every Python install has.

    >>> from fastgpt.apps.demo import DemoConfig, run_demo
    >>> result = run_demo(DemoConfig(minutes=10))            # doctest: +SKIP
    >>> result.run_dir, result.val_loss, result.samples[0]  # doctest: +SKIP

The default corpus is the Python standard library's own `.py` sources (found through
`sysconfig`), one document per file; every 20th file is held out for evaluation, so the
validation loss measures code the model never saw. The steps are the ones a user runs
by hand (see README): prepare corpus → train a tokenizer → pretokenize → train → generate.

Training runs for a wall-clock budget through `fastgpt train --max_minutes`: the trainer
sizes the run to end inside it (so the learning rate decays fully, and the end is
evaluated and saved) and re-plans it as the pace changes on a shared machine.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fastgpt._util.atomic import atomic_path
from fastgpt.data.inputs import expand_inputs, has_records, iter_documents

__all__ = [
    "DemoConfig",
    "DemoResult",
    "PreparedData",
    "SIZES",
    "prepare_data",
    "run_demo",
    "stdlib_sources",
    "split_documents",
]

EVAL_EVERY = 20  # every 20th document is held out: 5% for evaluation, spread over the corpus
MIN_DOCUMENTS = 2  # one to train on and one to hold out


@dataclass
class DemoConfig:
    minutes: float = 10.0  # training budget (wall clock); the other steps take well under a minute on 2 cores
    corpus: str | None = None  # file, directory or glob; None: the standard library's .py sources
    out: str = "artifacts/demo"  # everything the demo writes goes under here
    prompt: str | None = None  # None: "def " on the default corpus, a new document on others
    device: str = "auto"
    seed: int = 0
    max_corpus_bytes: int = 64_000_000  # read at most this much text: keeps the corpus steps to seconds
    vocab_size: int = 2048  # a few thousand tokens: a cheap output layer, ~3 bytes/token on code
    # A model this small (1.3M parameters) learns the most in minutes of CPU: a few
    # thousand steps, instead of a few hundred of a wider one that would need hours.
    embed_dim: int = 128
    n_heads: int = 4
    num_layers: int = 4
    seq_len: int = 128
    batch_size: int = 16  # 2,048 tokens a step: ~0.15 s on 2 idle cores, ~1 s on busy ones
    max_steps: int | None = None  # fixed step count instead of sizing the run from `minutes`
    evals: int = 5  # evaluations (and checkpoints) during the run
    eval_batches: int = 8
    samples: int = 2
    sample_tokens: int = 120
    progress: bool = True  # progress bars (tokenizer, pretokenize and the trainer show them on a terminal)


# Named sizes for `--size`: "small" is the default CPU demo; "tiny" runs every step in
# seconds (what the tests use) and shows the plumbing, not learning.
SIZES: dict[str, dict] = {
    "small": {},
    "tiny": dict(
        max_corpus_bytes=300_000,
        vocab_size=320,
        embed_dim=32,
        n_heads=2,
        num_layers=1,
        seq_len=32,
        batch_size=4,
        max_steps=6,
        evals=2,
        eval_batches=2,
        samples=1,
        sample_tokens=16,
    ),
}


@dataclass
class DemoResult:
    out: Path
    train_corpus: Path
    eval_corpus: Path
    documents: tuple[int, int]  # (train, eval)
    corpus_bytes: int
    tokenizer: Path
    n_vocab: int
    train_bin: Path
    eval_bin: Path
    tokens: tuple[int, int]  # (train, eval)
    run_dir: Path
    steps: int
    val_loss: float | None
    val_bpb: float | None
    loss_plot: Path | None
    samples: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per step, and "total"


def stdlib_sources() -> list[Path]:
    """The standard library's .py files (without site-packages), in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and p.is_file())


def _read_documents(corpus: str | None, max_bytes: int) -> tuple[list[str], str]:
    """(documents, description of where they came from), at most about `max_bytes` of text."""
    if corpus is None:
        files = stdlib_sources()
        if not files:
            root = sysconfig.get_paths()["stdlib"]
            raise FileNotFoundError(f"{root}: no .py files in the standard library here; pass --corpus PATH")
        texts = iter_documents(files, "none")
        where = f"{len(files)} .py files of the standard library in {sysconfig.get_paths()['stdlib']}"
        return _take(texts, max_bytes), where
    paths = expand_inputs([corpus])
    docs = _take(iter_documents(paths, "none"), max_bytes)
    if len(docs) < EVAL_EVERY and not all(has_records(p) for p in paths):
        # A few large text files (a book, a dump): their blank-line blocks make the documents,
        # so the held-out set is spread over the text instead of being one whole file.
        docs = _take(iter_documents(paths, "blank"), max_bytes)
    return docs, f"{len(paths)} file{'s' if len(paths) != 1 else ''} from {corpus}"


def _take(texts: Iterator[str], max_bytes: int) -> list[str]:
    docs, size = [], 0
    for text in texts:
        if not text.strip():
            continue
        docs.append(text)
        size += len(text)
        if size >= max_bytes:
            break
    return docs


def split_documents(docs: list[str], every: int = EVAL_EVERY) -> tuple[list[str], list[str]]:
    """(train, eval): every `every`-th document goes to eval; with fewer documents than
    that, the last one does."""
    if len(docs) < MIN_DOCUMENTS:
        raise ValueError(f"the corpus has {len(docs)} non-empty document(s); the demo needs at least {MIN_DOCUMENTS}")
    every = min(every, len(docs))
    train = [d for i, d in enumerate(docs) if i % every != every - 1]
    held = [d for i, d in enumerate(docs) if i % every == every - 1]
    return train, held


def _write_jsonl(path: Path, docs: list[str]) -> int:
    """One {"text": ...} record per document: JSON lines keep each document's newlines intact."""
    size = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
            size += len(doc.encode("utf-8"))
    return size


@dataclass
class PreparedData:
    train_corpus: Path
    eval_corpus: Path
    documents: tuple[int, int]
    corpus_bytes: int
    tok: Any  # the trained Tokenizer
    train_bin: Path
    eval_bin: Path
    tokens: tuple[int, int]


def prepare_data(
    cfg: DemoConfig,
    data_dir: Path,
    tok_dir: Path,
    say: Callable[[str], None] = lambda line: None,
    seconds: dict[str, float] | None = None,
) -> PreparedData:
    """The demo's steps 1-3: corpus split by document, tokenizer, train.bin and eval.bin (the
    equal-time benchmark trains on these too)."""
    seconds = {} if seconds is None else seconds
    # 1. Corpus: documents, split into train and eval by document.
    say("[1/5] corpus")
    t = time.perf_counter()
    docs, where = _read_documents(cfg.corpus, cfg.max_corpus_bytes)
    if len(docs) < MIN_DOCUMENTS:
        raise ValueError(
            f"--corpus {cfg.corpus or where}: {len(docs)} non-empty document(s); the demo needs at least "
            f"{MIN_DOCUMENTS}, one to train on and one to hold out"
        )
    train_docs, eval_docs = split_documents(docs)
    train_path, eval_path = data_dir / "train.jsonl", data_dir / "eval.jsonl"
    train_bytes = _write_jsonl(train_path, train_docs)
    eval_bytes = _write_jsonl(eval_path, eval_docs)
    seconds["corpus"] = time.perf_counter() - t
    say(
        f"      {where}: {len(train_docs):,} documents ({train_bytes / 1e6:.1f} MB) to train, "
        f"{len(eval_docs):,} ({eval_bytes / 1e6:.1f} MB) held out for evaluation ({seconds['corpus']:.1f} s)"
    )

    # 2. Tokenizer.
    from fastgpt.tokenizer import Tokenizer

    say(f"[2/5] tokenizer: byte-level BPE, {cfg.vocab_size:,} tokens")
    t = time.perf_counter()
    tok = Tokenizer.train(str(train_path), cfg.vocab_size, progress=cfg.progress)
    tok.save(tok_dir)
    seconds["tokenizer"] = time.perf_counter() - t
    say(f"      {tok_dir}: {tok.n_vocab:,} tokens ({seconds['tokenizer']:.1f} s)")

    # 3. Pretokenize both halves into .bin files.
    from fastgpt.data.pretokenize import pretokenize

    say("[3/5] pretokenize")
    t = time.perf_counter()
    train_bin, eval_bin = data_dir / "train.bin", data_dir / "eval.bin"
    s_train = pretokenize(train_path, tok, train_bin, progress=cfg.progress)
    s_eval = pretokenize(eval_path, tok, eval_bin, progress=cfg.progress)
    assert not isinstance(s_train, list) and not isinstance(s_eval, list)  # one output file each, not shards
    seconds["pretokenize"] = time.perf_counter() - t
    say(
        f"      {train_bin}: {s_train.tokens:,} tokens ({train_bytes / max(s_train.tokens, 1):.2f} bytes/token); "
        f"{eval_bin}: {s_eval.tokens:,} tokens ({seconds['pretokenize']:.1f} s)"
    )
    if s_eval.tokens <= cfg.seq_len:
        raise ValueError(
            f"{eval_path}: the held-out documents make {s_eval.tokens} tokens, fewer than one sequence of "
            f"{cfg.seq_len + 1}; give a larger --corpus"
        )

    return PreparedData(
        train_corpus=train_path,
        eval_corpus=eval_path,
        documents=(len(train_docs), len(eval_docs)),
        corpus_bytes=train_bytes + eval_bytes,
        tok=tok,
        train_bin=train_bin,
        eval_bin=eval_bin,
        tokens=(s_train.tokens, s_eval.tokens),
    )


def run_demo(cfg: DemoConfig | None = None, log: Callable[[str], None] | None = None) -> DemoResult:
    """Runs the demo and returns where everything is; `log` gets each progress line (print by default)."""
    cfg = cfg or DemoConfig()
    say = log or (lambda line: print(line, flush=True))
    if not (math.isfinite(cfg.minutes) and cfg.minutes > 0):
        raise ValueError(f"--minutes must be positive, got {cfg.minutes}")
    if cfg.corpus is not None and not any(c in cfg.corpus for c in "*?[") and not Path(cfg.corpus).exists():
        raise FileNotFoundError(f"--corpus {cfg.corpus}: no such file or directory")
    out = Path(cfg.out)
    data_dir, tok_dir, runs_dir = out / "data", out / "tokenizer", out / "runs"
    run_dir = runs_dir / "demo"
    if run_dir.exists():
        if not (run_dir / "config.json").exists():
            raise ValueError(f"{run_dir} exists and is not a training run; choose another --out")
        shutil.rmtree(run_dir)  # the previous demo's run: the trainer refuses to overwrite a run
    seconds: dict[str, float] = {}
    t_start = time.perf_counter()

    data = prepare_data(cfg, data_dir, tok_dir, say, seconds)
    train_path, eval_path, tok, train_bin, eval_bin = (
        data.train_corpus,
        data.eval_corpus,
        data.tok,
        data.train_bin,
        data.eval_bin,
    )

    # 4. Train for the time budget: the trainer sizes the run to it and re-plans as the pace changes.
    from fastgpt.gpt.model import GPTConfig
    from fastgpt.gpt.trainer import TrainConfig, train

    t = time.perf_counter()
    if cfg.max_steps is not None:
        budget: dict[str, Any] = dict(max_steps=cfg.max_steps, eval_interval=max(1, cfg.max_steps // cfg.evals))
        plan = f"{cfg.max_steps} steps"
    else:
        budget = dict(max_minutes=cfg.minutes, evals=cfg.evals)
        plan = f"as many steps as fit {cfg.minutes:g} min, evaluation and saving included"
    model_cfg = GPTConfig(seq_len=cfg.seq_len, embed_dim=cfg.embed_dim, n_heads=cfg.n_heads, num_layers=cfg.num_layers)
    step_tokens = cfg.batch_size * cfg.seq_len
    say(
        f"[4/5] train: {cfg.num_layers} layers x {cfg.embed_dim} wide, context {cfg.seq_len}, "
        f"batch {cfg.batch_size} x {cfg.seq_len} = {step_tokens:,} tokens; {plan}"
    )
    train_cfg = TrainConfig(
        tokenizer=str(tok_dir),
        train_data=str(train_bin),
        eval_data=str(eval_bin),
        experiment_name=run_dir.name,
        out_dir=str(runs_dir),
        batch_size=cfg.batch_size,
        eval_batches=cfg.eval_batches,
        log_interval=10 if cfg.max_steps is None else max(1, min(10, cfg.max_steps // 20)),
        device=cfg.device,
        seed=cfg.seed,
        **budget,
    )
    summary = train(train_cfg, model_cfg)
    seconds["train"] = time.perf_counter() - t
    stopped = " (stopped)" if summary["interrupted"] else ""
    val = (
        f"val loss {summary['val_loss']:.3f}, {summary['val_bpb']:.3f} bits/byte"
        if summary.get("val_loss") is not None
        else "no evaluation"
    )
    say(
        f"      {summary['step']:,} steps{stopped} in {_duration(seconds['train'])}: train loss {summary['loss']:.3f}, {val}"
    )

    # 5. Generate from the checkpoint, as `fastgpt generate` does.
    from fastgpt.gpt.checkpoint import load_model
    from fastgpt.gpt.generate import generate_text

    prompt = cfg.prompt if cfg.prompt is not None else ("def " if cfg.corpus is None else "")
    say(f"[5/5] generate: {cfg.samples} sample(s) of up to {cfg.sample_tokens} tokens from {prompt!r}")
    t = time.perf_counter()
    model, tokenizer = load_model(run_dir, cfg.device)
    samples = []
    for i in range(cfg.samples):
        say(f"----- sample {i + 1}")
        pieces = [prompt]
        if log is None:
            print(prompt, end="", flush=True)
        for piece in generate_text(
            model, tokenizer, prompt, cfg.sample_tokens, temperature=0.8, top_k=50, seed=cfg.seed + i
        ):
            pieces.append(piece)
            if log is None:  # stream to the terminal as tokens come
                print(piece, end="", flush=True)
        samples.append("".join(pieces))
        if log is None:
            print(flush=True)
        else:
            say(samples[-1])
    seconds["generate"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t_start

    loss_plot = run_dir / "loss.png"
    result = DemoResult(
        out=out,
        train_corpus=train_path,
        eval_corpus=eval_path,
        documents=data.documents,
        corpus_bytes=data.corpus_bytes,
        tokenizer=tok_dir,
        n_vocab=tok.n_vocab,
        train_bin=train_bin,
        eval_bin=eval_bin,
        tokens=data.tokens,
        run_dir=run_dir,
        steps=summary["step"],
        val_loss=summary.get("val_loss"),
        val_bpb=summary.get("val_bpb"),
        loss_plot=loss_plot if loss_plot.exists() else None,
        samples=samples,
        seconds=seconds,
    )
    say("-----")
    say(f"done in {_duration(seconds['total'])}; everything is under {out}/")
    say(f"  corpus      {train_path}, {eval_path}")
    say(f"  tokenizer   {tok_dir}")
    say(f"  tokens      {train_bin}, {eval_bin}")
    say(f"  checkpoint  {run_dir} (best.pt, last.pt, config.json, metrics.jsonl)")
    say(f"  loss plot   {loss_plot if result.loss_plot else 'not written: pip install matplotlib'}")
    say(
        f"next: fastgpt generate --checkpoint {shlex.quote(str(run_dir))}"
        + (f" --prompt {shlex.quote(prompt)}" if prompt else "")
        + " --length 200"
    )
    return result


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def config_for(size: str, **overrides) -> DemoConfig:
    """A DemoConfig of the named size (`SIZES`) with `overrides` (None values ignored)."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}: choose one of {', '.join(SIZES)}")
    return replace(DemoConfig(**SIZES[size]), **{k: v for k, v in overrides.items() if v is not None})
