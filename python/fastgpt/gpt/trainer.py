"""The trainer: Muon or AdamW, a warmup/stable/cooldown or cosine schedule, gradient accumulation,
evaluation, checkpoints, exact resume, DDP, and a wall-clock budget (`max_minutes`).

A run lives in `out_dir/experiment_name/`:

    config.json     the model and training config
    tokenizer/      a copy of the tokenizer, so generation needs nothing else
    last.pt         weights, optimizer, step, data position and RNG states (what --resume reads)
    best.pt         weights with the lowest validation loss so far
    metrics.jsonl   one JSON object per logged step and per evaluation; the last evaluation has "final"
    loss.png        the loss curves (when matplotlib is installed)
    .lock           held while a run trains, so a second run with the same name fails at once

Under `torchrun --nproc_per_node N -m fastgpt train ...` each rank trains on its own
slice of every global batch (DDP); only rank 0 logs and writes files, and rank 0's time
plan and stop decisions are shared, so every rank stops at the same step.

The code reads top to bottom: the config, the schedule, the time budget, setup
(distributed, device, run directory, data, model), evaluation, checkpointing, the loop.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from fastgpt._util import device as devices
from fastgpt._util.atomic import atomic_path
from fastgpt._util.device import peak_flops
from fastgpt.data.tokens import Batches, TokenDataset
from fastgpt.gpt import checkpoint
from fastgpt.gpt.model import GPT, GPTConfig, flops_per_token
from fastgpt.gpt.optim import OPTIMIZERS, make_optimizer, set_schedule

__all__ = ["TrainConfig", "TimeBudget", "train", "evaluate", "lr_at", "lr_factor", "peak_flops", "SCHEDULES"]

SCHEDULES = ("wsd", "cosine")
BUDGET_FIELDS = ("epochs", "max_steps", "max_tokens", "max_minutes")
EXIT_INTERRUPTED = 130  # what a shell reports for a process stopped by Ctrl-C


@dataclass
class TrainConfig:
    tokenizer: str = ""  # tokenizer directory: the vocabulary size comes from here
    train_data: str = ""  # .bin file, glob or directory of shards
    eval_data: str | None = None
    experiment_name: str = "gpt"
    out_dir: str = "runs"
    # The budget: at most one of these; one epoch when none is given.
    epochs: float | None = None
    max_steps: int | None = None
    max_tokens: int | None = None
    max_minutes: float | None = None  # wall clock from the start of train() to the saved end, evaluation included
    batch_size: int = 64  # sequences per micro-batch on each device
    total_batch_tokens: int | None = None  # tokens per optimizer step; filled by gradient accumulation
    optimizer: str = "muon"  # "muon": Muon on hidden matrices + AdamW on the rest; "adamw": AdamW on all
    learning_rate: float = 3e-3  # AdamW peak: every parameter with adamw; norm gains and biases with muon
    muon_lr: float = 0.02  # Muon peak for the blocks' weight matrices
    muon_weight_decay: float = 0.0
    embedding_lr: float = 0.2  # with muon: AdamW peak for the input embedding at width 768, x sqrt(768 / width)
    head_lr: float = 0.004  # with muon: AdamW peak for the output head at width 768, x sqrt(768 / width)
    schedule: str = "wsd"  # "wsd": warmup, constant, linear cooldown; "cosine": warmup, cosine decay
    cooldown_frac: float = 0.4  # wsd: the last fraction of the steps that decays the rate
    min_lr_ratio: float = 0.1  # the rate decays to this fraction of the peak
    warmup_steps: int = 100  # at most a tenth of the run
    weight_decay: float = 0.1  # AdamW's, on matrices and embeddings (adamw only)
    beta1: float = 0.9
    beta2: float = 0.95  # shorter second-moment memory than 0.999: steadier at high learning rates
    grad_clip: float = 1.0  # 0 disables
    eval_interval: int = 250  # steps between evaluations and checkpoints
    evals: int | None = None  # instead: this many evaluations spread over the run, the last at the end
    eval_batches: int = 20
    log_interval: int = 10  # steps between loss reads (each read waits for the GPU)
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    compile: bool = False
    seed: int = 1337
    shuffle: bool = True  # random windows; False walks the data in order
    headerless: bool = False  # data files are raw uint16 (nanoGPT), no header
    resume: bool = False
    tgt_vocab_size: int | None = None  # the original CLI's flag: checked against the tokenizer

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.experiment_name

    def check(self) -> None:
        """Values no run can use: one clear error naming the flag."""
        if self.tokenizer == "":
            raise ValueError("a tokenizer directory is required (--tokenizer)")
        if not self.train_data:
            raise ValueError("training data is required (--train_data)")
        given = [f"--{name}" for name in BUDGET_FIELDS if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(
                f"give at most one of --epochs, --max_steps, --max_tokens, --max_minutes (got {', '.join(given)})"
            )
        if self.max_minutes is not None and not (math.isfinite(self.max_minutes) and self.max_minutes > 0):
            raise ValueError(f"--max_minutes must be a positive number of minutes, got {self.max_minutes}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"--optimizer {self.optimizer!r} is not one of: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"--schedule {self.schedule!r} is not one of: {', '.join(SCHEDULES)}")
        if not 0 <= self.cooldown_frac <= 1:
            raise ValueError(f"--cooldown_frac must be in [0, 1], got {self.cooldown_frac}")
        for name in ("batch_size", "eval_interval", "eval_batches", "log_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.evals is not None and self.evals < 1:
            raise ValueError(f"--evals must be at least 1, got {self.evals}")
        for name in ("learning_rate", "muon_lr", "embedding_lr", "head_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"--{name} must be a non-negative number, got {value}")


# ---- the learning-rate schedule -------------------------------------------------------------


def lr_factor(step: int, cfg: TrainConfig, max_steps: int) -> float:
    """The schedule as a fraction of each group's peak rate at `step` of `max_steps`.

    Linear warmup; then either constant with a linear cooldown over the last
    `cooldown_frac` of the steps (wsd: a re-planned step count moves only the cooldown,
    which suits a time budget) or a cosine decay; both end at min_lr_ratio. The warmup takes
    at most a tenth of the run, so a short (or short time-boxed) run does not spend itself
    warming up."""
    warmup = min(cfg.warmup_steps, max(1, max_steps // 10)) if cfg.warmup_steps > 0 else 0
    if step < warmup:
        return (step + 1) / warmup
    floor = cfg.min_lr_ratio
    if cfg.schedule == "wsd":
        start = max(warmup, max_steps * (1 - cfg.cooldown_frac))
        if step < start:
            return 1.0
        return 1.0 - (1.0 - floor) * min(1.0, (step - start) / max(1.0, max_steps - start))
    span = max(1, max_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_at(step: int, cfg: TrainConfig, max_steps: int) -> float:
    """The AdamW peak rate (`learning_rate`) times the schedule."""
    return cfg.learning_rate * lr_factor(step, cfg, max_steps)


# ---- the time budget ------------------------------------------------------------------------


class TimeBudget:
    """Sizes a run to end, evaluated and saved, by a wall-clock deadline, and re-plans it
    whenever the pace changes (a shared machine can change it severalfold).

    The trainer reports the pace at each loss read (`observe`, with the seconds spent
    evaluating and saving left out) and the cost of each evaluation and save; `plan`
    turns what is left of the budget into the last step. With the wsd schedule a new
    plan only moves the cooldown, so re-planning every step costs nothing in learning.
    """

    MARGIN = 0.01  # of the budget, kept free for noise in the final evaluation and save

    def __init__(
        self,
        seconds: float,
        *,
        start: float | None = None,
        eval_batches: int = 0,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.clock = clock
        self.seconds = seconds
        self.deadline = (clock() if start is None else start) + seconds
        self.eval_batches = eval_batches
        self.step_s: float | None = None  # seconds per training step, evaluation and saving excluded
        self.eval_s: float | None = None  # one evaluation, when measured
        self.save_s = 0.0  # one checkpoint save (and plot): estimated by the trainer, then measured
        self._save_measured = False
        self._mark: tuple[float, int, float] | None = None  # (time, step, overhead so far) at the last read
        self._overhead = 0.0
        self._observations = 0

    def add_overhead(self, seconds: float, kind: str) -> None:
        """Seconds the loop spent on an evaluation or a save: left out of the pace."""
        self._overhead += seconds
        if kind == "eval":
            self.eval_s = seconds
        else:
            self.save_s = max(self.save_s, seconds) if self._save_measured else seconds
            self._save_measured = True

    def observe(self, step: int) -> None:
        """A loss read at `step` (the device is in sync here): update the pace."""
        now = self.clock()
        if self._mark is not None and step > self._mark[1]:
            t, s, o = self._mark
            pace = max(1e-9, (now - t - (self._overhead - o)) / (step - s))
            # The first interval holds warm-up (allocation, compilation): replaced, not averaged.
            self.step_s = pace if self._observations < 2 else 0.5 * self.step_s + 0.5 * pace  # type: ignore[operator]
            self._observations += 1
        elif self._mark is None:
            self._observations = 1
        self._mark = (now, step, self._overhead)

    @property
    def planned(self) -> bool:
        """Whether the plan rests on a measured pace (not only the first step's warm-up)."""
        return self._observations >= 2

    def first_pace(self, step_seconds: float) -> None:
        """The duration of the first step, a pessimistic pace until a real one is measured."""
        if self.step_s is None:
            self.step_s = step_seconds

    def final_reserve(self) -> float:
        """Seconds to keep for the last evaluation and save."""
        step_s = self.step_s or 0.0
        eval_s = self.eval_s if self.eval_s is not None else 0.4 * self.eval_batches * step_s
        return eval_s + self.save_s + self.MARGIN * self.seconds

    def plan(self, step: int, *, evals_left: int = 0, eval_interval: int | None = None) -> int:
        """The last step that ends in time: `step` itself when the budget is spent.
        `evals_left` evaluations (and saves) before the final one, or one every
        `eval_interval` steps, are paid for out of the budget too."""
        if self.step_s is None:
            return step + 1
        left = self.deadline - self.clock() - self.final_reserve()
        each = (self.eval_s if self.eval_s is not None else 0.4 * self.eval_batches * self.step_s) + self.save_s
        left -= evals_left * each
        per_step = self.step_s + (each / eval_interval if eval_interval else 0.0)
        if not self.planned:  # only the first step, warm-up included: one more step to measure
            return step + 1 if self.deadline - self.clock() > self.MARGIN * self.seconds else step
        return step + max(0, int(left / per_step))


# ---- setup: distributed, device, run directory, data, model ----------------------------------


@dataclass
class Run:
    """Everything `setup` prepares for the loop."""

    cfg: TrainConfig
    model_cfg: GPTConfig
    device: torch.device
    rank: int
    world: int
    ddp: bool
    own_group: bool
    run_dir: Path
    lock: Any
    tokenizer: Any
    train_ds: TokenDataset
    eval_ds: TokenDataset | None
    model: nn.Module  # what the loop calls: compiled and/or DDP-wrapped
    raw_model: nn.Module  # what is saved and evaluated
    optimizer: Any
    loader: Batches
    accum: int
    step_tokens: int
    max_steps: int  # the plan; a time budget revises it
    start_step: int = 0
    best_val: float = float("inf")
    tokens_seen: int = 0
    elapsed_before: float = 0.0  # training seconds of earlier segments of a resumed run
    budget: TimeBudget | None = None
    records: list[dict] = field(default_factory=list)
    started: float = 0.0

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"


def distributed() -> tuple[bool, int, int, int]:
    """(ddp, rank, world size, local rank) from the variables torchrun sets."""
    if "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return True, int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    return False, 0, 1, 0


def lock_run_dir(run_dir: Path) -> Any:
    """Create `run_dir` and hold an exclusive lock on it until the returned file is closed
    (the system drops it when the process dies, so a killed run leaves no stale lock)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / ".lock", "a+")
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks through fcntl; runs are not guarded there
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise ValueError(
            f"{run_dir} is in use by another training run (pid {owner}); wait for it to finish "
            "or choose another --experiment_name"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _check_resume(
    saved: dict, cfg: TrainConfig, model_cfg: GPTConfig, explicit: set[str], given: set[str] | None, path: Path
) -> tuple[TrainConfig, GPTConfig]:
    """The checkpoint's configs win over defaults; what was given explicitly must agree with the
    model, and a different optimizer is an error naming both. Training settings not given
    (None: all were given) are taken from the checkpoint, the budget as one setting."""
    saved_model = GPTConfig(**saved["model_config"])
    for name in explicit:
        if getattr(model_cfg, name) != getattr(saved_model, name):
            raise ValueError(
                f"{path}: {name} is {getattr(saved_model, name)!r} in the checkpoint but {getattr(model_cfg, name)!r} was given"
            )
    saved_train = saved.get("train_config", {})
    known = {f.name for f in fields(TrainConfig)}
    if given is not None:
        keep = given | {"resume", "device", "compile", "out_dir", "experiment_name", "tokenizer", "train_data"}
        if given & set(BUDGET_FIELDS):
            keep |= set(BUDGET_FIELDS)
        inherited = {k: v for k, v in saved_train.items() if k in known and k not in keep}
        cfg = replace(cfg, **inherited)
    saved_optimizer = saved_train.get("optimizer", "adamw")  # checkpoints from before --optimizer: AdamW
    if cfg.optimizer != saved_optimizer:
        raise ValueError(
            f"{path}: the run was trained with --optimizer {saved_optimizer}, it cannot resume with "
            f"--optimizer {cfg.optimizer} (the optimizer state differs); drop --optimizer or start a new run"
        )
    return cfg, saved_model


def _plan_steps(cfg: TrainConfig, train_ds: TokenDataset, seq_len: int, step_tokens: int) -> int:
    if cfg.max_steps is not None:
        steps = cfg.max_steps
    elif cfg.max_tokens is not None:
        steps = math.ceil(cfg.max_tokens / step_tokens)
    elif cfg.max_minutes is not None:
        return 1 << 62  # re-planned by the time budget after the first step
    else:
        epochs = 1.0 if cfg.epochs is None else cfg.epochs
        steps = math.ceil(epochs * len(train_ds) * seq_len / step_tokens)
    if steps < 1:
        raise ValueError(f"the run has no steps (max_steps {steps})")
    return steps


def setup(
    cfg: TrainConfig,
    model_cfg: GPTConfig,
    *,
    model_overrides: set[str],
    train_overrides: set[str] | None,
    build_model: Callable[[GPTConfig], nn.Module] | None,
) -> Run:
    """Distributed, device, run directory (locked), data, model, optimizer and, on resume,
    the saved state; the run files are written once everything has been checked."""
    from fastgpt.tokenizer import Tokenizer

    started = time.perf_counter()
    cfg.check()
    tokenizer = Tokenizer.load(cfg.tokenizer)
    n_vocab = tokenizer.n_vocab
    if cfg.tgt_vocab_size is not None and cfg.tgt_vocab_size != n_vocab:
        raise ValueError(
            f"--tgt_vocab_size {cfg.tgt_vocab_size} disagrees with the tokenizer in {cfg.tokenizer}, which has {n_vocab} tokens"
        )
    model_cfg = replace(model_cfg, vocab_size=n_vocab)

    ddp, rank, world, local_rank = distributed()
    device = devices.resolve_device(cfg.device, local_rank)
    run_dir = cfg.run_dir
    existed = run_dir.exists()
    lock = lock_run_dir(run_dir) if rank == 0 else None
    try:
        return _setup_locked(
            cfg,
            model_cfg,
            tokenizer,
            ddp,
            rank,
            world,
            local_rank,
            device,
            lock,
            started,
            model_overrides=model_overrides,
            train_overrides=train_overrides,
            build_model=build_model,
        )
    except BaseException:
        if lock is not None:
            lock.close()
            if not existed:  # nothing of this run was written: leave no empty run directory behind
                shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _setup_locked(
    cfg: TrainConfig,
    model_cfg: GPTConfig,
    tokenizer: Any,
    ddp: bool,
    rank: int,
    world: int,
    local_rank: int,
    device: torch.device,
    lock: Any,
    started: float,
    *,
    model_overrides: set[str],
    train_overrides: set[str] | None,
    build_model: Callable[[GPTConfig], nn.Module] | None,
) -> Run:
    n_vocab = tokenizer.n_vocab
    run_dir, last_path = cfg.run_dir, cfg.run_dir / "last.pt"
    saved = None
    if cfg.resume:
        if not last_path.exists():
            raise FileNotFoundError(f"{last_path}: no checkpoint to resume from")
        saved = checkpoint.load(last_path)
        if saved["model_config"].get("vocab_size") != n_vocab:
            raise ValueError(
                f"{last_path}: the checkpoint's vocabulary is {saved['model_config'].get('vocab_size')} tokens, "
                f"the tokenizer in {cfg.tokenizer} has {n_vocab}"
            )
        cfg, model_cfg = _check_resume(saved, cfg, model_cfg, model_overrides, train_overrides, last_path)
        cfg.check()
    elif last_path.exists():
        raise ValueError(
            f"{run_dir} already holds a run: pass --resume to continue it, or choose another --experiment_name"
        )

    own_group = False
    if ddp:
        import torch.distributed as dist

        own_group = not dist.is_initialized()  # leave a caller's process group alone
        if own_group:
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def dataset(path: str) -> TokenDataset:
        return TokenDataset(path, model_cfg.seq_len, headerless=cfg.headerless, vocab_size=n_vocab, tokenizer=tokenizer)

    train_ds = dataset(cfg.train_data)
    eval_ds = dataset(cfg.eval_data) if cfg.eval_data else None

    micro_tokens = cfg.batch_size * model_cfg.seq_len * world
    accum = 1
    if cfg.total_batch_tokens is not None:
        if cfg.total_batch_tokens % micro_tokens:
            raise ValueError(
                f"--total_batch_tokens {cfg.total_batch_tokens} is not a multiple of "
                f"batch_size x seq_len x devices = {micro_tokens}"
            )
        accum = max(1, cfg.total_batch_tokens // micro_tokens)
    step_tokens = micro_tokens * accum
    max_steps = _plan_steps(cfg, train_ds, model_cfg.seq_len, step_tokens)

    torch.manual_seed(cfg.seed)
    devices.configure(device)
    raw_model = (build_model or GPT)(model_cfg).to(device)
    optimizer = make_optimizer(raw_model, cfg, model_cfg.embed_dim)
    loader = Batches(
        train_ds, cfg.batch_size, shuffle=cfg.shuffle, seed=cfg.seed, rank=rank, world_size=world, device=device
    )
    run = Run(
        cfg=cfg,
        model_cfg=model_cfg,
        device=device,
        rank=rank,
        world=world,
        ddp=ddp,
        own_group=own_group,
        run_dir=run_dir,
        lock=lock,
        tokenizer=tokenizer,
        train_ds=train_ds,
        eval_ds=eval_ds,
        model=raw_model,
        raw_model=raw_model,
        optimizer=optimizer,
        loader=loader,
        accum=accum,
        step_tokens=step_tokens,
        max_steps=max_steps,
        started=started,
    )
    if saved is not None:
        _restore(run, saved, last_path)
    if cfg.max_minutes is not None:
        seconds = cfg.max_minutes * 60 - run.elapsed_before
        finished = saved is not None and saved["step"] >= saved.get("max_steps", float("inf"))
        same_budget = saved is not None and cfg.max_minutes <= (saved.get("train_config", {}).get("max_minutes") or 0)
        if seconds <= 0.05 * cfg.max_minutes * 60 or (finished and same_budget):
            raise ValueError(
                f"{last_path}: the run has already trained {run.elapsed_before / 60:.2f} of its --max_minutes "
                f"{cfg.max_minutes:g}; give a larger --max_minutes to train on"
            )
        run.budget = TimeBudget(seconds, start=started, eval_batches=cfg.eval_batches if eval_ds else 0)
        # Until a save is timed: the checkpoint (weights and two optimizer moments) at a
        # conservative 0.5 GB/s, plus half a second for the loss plot.
        nbytes = 3 * sum(p.numel() * p.element_size() for p in raw_model.parameters())
        run.budget.save_s = nbytes / 5e8 + 0.5
    model: nn.Module = raw_model
    if cfg.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    if ddp:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    run.model = model
    if run.master:
        _write_run_files(run, resumed=saved is not None)
    return run


def _restore(run: Run, saved: dict, path: Path) -> None:
    """Continue exactly where `saved` stopped: weights, optimizer, data position, RNG, counters."""
    try:
        run.raw_model.load_state_dict(saved["model"])
        run.optimizer.load_state_dict(saved["optimizer"])
        run.loader.load_state_dict(saved["data"])
        run.start_step, run.best_val, run.tokens_seen = saved["step"], saved["best_val_loss"], saved["tokens_seen"]
        torch.set_rng_state(saved["rng"]["torch"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{path}: the checkpoint does not fit this run ({type(exc).__name__}: {exc})") from None
    run.elapsed_before = float(saved.get("elapsed_s", 0.0))
    if run.device.type == "cuda" and saved["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(saved["rng"]["cuda"], run.device)


def _write_run_files(run: Run, *, resumed: bool) -> None:
    cfg, run_dir = run.cfg, run.run_dir
    tok_dir = run_dir / "tokenizer"
    if Path(cfg.tokenizer).resolve() != tok_dir.resolve():
        if Path(cfg.tokenizer).is_dir():
            shutil.copytree(cfg.tokenizer, tok_dir, dirs_exist_ok=True)
        else:  # a bare rank file: save it as a full tokenizer directory
            run.tokenizer.save(tok_dir)
    config = {"model": run.model_cfg.to_dict(), "train": asdict(cfg), "version": checkpoint.CHECKPOINT_VERSION}
    with atomic_path(run_dir / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2))
    if resumed and run.metrics_path.exists():
        # Keep the history up to the resumed step; later lines belong to the abandoned tail.
        lines = run.metrics_path.read_text().splitlines()
        run.records = [r for r in map(json.loads, lines) if r["step"] <= run.start_step]
    with atomic_path(run.metrics_path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in run.records))


def teardown(run: Run) -> None:
    if run.ddp:
        import torch.distributed as dist

        dist.barrier()
        if run.own_group:
            dist.destroy_process_group()
    if run.lock is not None:
        run.lock.close()


# ---- evaluation ------------------------------------------------------------------------------


def _token_bytes(tokenizer: Any) -> torch.Tensor:
    """UTF-8 length of each token; 0 for special tokens, which bits per byte leaves out."""
    special = set(tokenizer.special_tokens.values())
    lengths = np.zeros(tokenizer.n_vocab, dtype=np.int64)
    for i in range(tokenizer.n_vocab):
        if i not in special:
            with contextlib.suppress(Exception):  # ids with no bytes (holes in a vocabulary)
                lengths[i] = len(tokenizer.decode_bytes([i]))
    return torch.from_numpy(lengths)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: TokenDataset,
    batch_size: int,
    max_batches: int,
    token_bytes: torch.Tensor,
    *,
    autocast: Any = None,
    rank: int = 0,
    world_size: int = 1,
) -> dict:
    """Validation loss (nats/token), perplexity and bits per byte over the first windows of `dataset`.

    The same windows every time (sequential from the start), split across ranks and
    summed with all_reduce. Bits per byte: the loss in bits of the tokens that stand for
    bytes, over their UTF-8 length, comparable across tokenizers.
    """
    device = token_bytes.device
    was_training = model.training
    model.eval()
    n_batches = min(max_batches, max(1, math.ceil(len(dataset) / (batch_size * world_size))))
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, tokens, nats of byte tokens, bytes
    for i in range(n_batches):
        xs, ys = dataset.batch(i, batch_size, shuffle=False, rank=rank, world_size=world_size)
        x, y = torch.from_numpy(xs).to(device), torch.from_numpy(ys).to(device)
        with autocast or contextlib.nullcontext():
            loss = model(x, y, reduction="none")  # (B, T) nats
        nbytes = token_bytes[y]
        counts = torch.tensor(float(loss.numel()), device=device)
        sums += torch.stack([loss.sum(), counts, (loss * (nbytes > 0)).sum(), nbytes.sum()]).double()
    if world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(sums)
    model.train(was_training)
    val_loss = (sums[0] / sums[1]).item()
    bpb = (sums[2] / (math.log(2) * sums[3])).item() if sums[3] > 0 else float("nan")
    return {"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 700)), "val_bpb": bpb}


# ---- checkpointing ---------------------------------------------------------------------------


def save_last(run: Run, step: int) -> None:
    """Everything --resume needs, in last.pt (rank 0 only)."""
    if not run.master:
        return
    rng = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None,
    }
    checkpoint.save(
        {
            "version": checkpoint.CHECKPOINT_VERSION,
            "model": run.raw_model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "model_config": run.model_cfg.to_dict(),
            "train_config": asdict(run.cfg),
            "step": step,
            "max_steps": run.max_steps,
            "data": run.loader.state_dict(),
            "rng": rng,
            "best_val_loss": run.best_val,
            "tokens_seen": run.tokens_seen,
            "elapsed_s": run.elapsed_before + time.perf_counter() - run.started,
        },
        run.last_path,
    )


def save_best(run: Run, step: int, val_loss: float) -> None:
    """The weights with the lowest validation loss so far, in best.pt (rank 0 only)."""
    if not run.master:
        return
    checkpoint.save(
        {
            "version": checkpoint.CHECKPOINT_VERSION,
            "model": run.raw_model.state_dict(),
            "model_config": run.model_cfg.to_dict(),
            "step": step,
            "val_loss": val_loss,
        },
        run.run_dir / "best.pt",
    )


def _plot(records: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


_PLOT_NOTE: set[str] = set()


def plot(run: Run) -> None:
    if run.master and not _plot(run.records, run.run_dir / "loss.png") and str(run.run_dir) not in _PLOT_NOTE:
        _PLOT_NOTE.add(str(run.run_dir))
        print("fastgpt: matplotlib is not installed; skipping loss.png (pip install matplotlib)")


def log(run: Run, record: dict) -> None:
    run.records.append(record)
    if run.master:
        with open(run.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")


# ---- the loop --------------------------------------------------------------------------------


class _StopFlag:
    """First Ctrl-C (or SIGTERM, what Slurm sends) asks the loop to stop after the current step
    and save; a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.set = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.set = True
        print("\nfastgpt: stopping after this step and saving a checkpoint (Ctrl-C again to abort)", flush=True)

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _sync_decisions(run: Run, stop: bool, max_steps: int) -> tuple[bool, int]:
    """Every rank leaves the loop at the same step: any rank's stop, rank 0's plan."""
    if not run.ddp:
        return stop, max_steps
    import torch.distributed as dist

    t = torch.tensor([float(stop), float(max_steps if run.master else 0)], dtype=torch.float64, device=run.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t[0].item() > 0), int(t[1].item())


def _all_mean(run: Run, value: float) -> float:
    if not run.ddp:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=run.device)
    dist.all_reduce(t)
    return float(t.item()) / run.world


def _eval_due(run: Run, step: int, next_eval: list[int]) -> bool:
    """At the end, and every eval_interval steps or at the next of `evals` even points."""
    if step >= run.max_steps:
        return True
    if run.budget is not None and not run.budget.planned:
        return False  # the plan is a guess until the pace is measured: no mid-run evaluation yet
    if run.cfg.evals is None:
        return step % run.cfg.eval_interval == 0
    if next_eval[0] < run.cfg.evals and step >= math.ceil(next_eval[0] * run.max_steps / run.cfg.evals):
        next_eval[0] += 1
        return True
    return False


def evaluate_and_save(
    run: Run, step: int, token_bytes: torch.Tensor, autocast: Any, say: Callable[[str], Any]
) -> tuple[dict, float]:
    """Evaluate at `step`, log it (the last one marked final), keep best.pt, and save last.pt
    unless this is the end (the loop saves that); the seconds spent are reported to the time
    budget and returned, to be left out of the pace."""
    assert run.eval_ds is not None
    t0 = time.perf_counter()
    val = evaluate(
        run.raw_model,
        run.eval_ds,
        run.cfg.batch_size,
        run.cfg.eval_batches,
        token_bytes,
        autocast=autocast,
        rank=run.rank,
        world_size=run.world,
    )
    final = step >= run.max_steps
    extra = {"final": True, "elapsed_s": round(run.elapsed_before + time.perf_counter() - run.started, 2)}
    log(run, {"step": step, **val, **(extra if final else {})})
    if val["val_loss"] < run.best_val:
        run.best_val = val["val_loss"]
        save_best(run, step, run.best_val)
    if run.master:
        say(
            f"step {step}: val loss {val['val_loss']:.4f}, perplexity {val['val_ppl']:.2f}, {val['val_bpb']:.4f} bits/byte"
        )
    spent = time.perf_counter() - t0
    if run.budget is not None:
        run.budget.add_overhead(spent, "eval")
    if not final:
        t0 = time.perf_counter()
        save_last(run, step)
        plot(run)
        if run.budget is not None:
            run.budget.add_overhead(time.perf_counter() - t0, "save")
        spent += time.perf_counter() - t0
    return val, spent


def run_loop(run: Run, on_step: Callable[[int, dict], bool | None] | None = None) -> dict:
    """Train from run.start_step to run.max_steps (revised by the time budget); evaluate and
    save along the way and at the end. Returns the summary that `train` returns."""
    from tqdm.auto import tqdm

    cfg, model, optimizer, loader, budget = run.cfg, run.model, run.optimizer, run.loader, run.budget
    autocast = devices.autocast(run.device)
    token_bytes = _token_bytes(run.tokenizer).to(run.device) if run.eval_ds is not None else None
    peak = peak_flops(run.device)
    flops = flops_per_token(run.raw_model, run.model_cfg)
    step, loss_value, tok_per_s, mfu = run.start_step, float("nan"), 0.0, None
    stopped_by: str | None = None
    next_eval = [0 if cfg.evals is None else math.floor(step * cfg.evals / max(run.max_steps, 1)) + 1]
    t_loop = time.perf_counter()
    t_last, steps_since, overhead = t_loop, 0, 0.0
    val: dict = {}
    model.train()
    bar = tqdm(
        total=run.max_steps if budget is None else None,
        initial=step,
        disable=not run.master,
        unit="step",
        dynamic_ncols=True,
    )
    try:
        with _StopFlag() as stop:
            while step < run.max_steps:
                t_step = time.perf_counter()
                factor = set_schedule(optimizer, lr_factor(step, cfg, run.max_steps), step)
                loss_sum = torch.zeros((), device=run.device)
                for micro in range(run.accum):
                    x, y = next(loader)
                    # DDP all-reduces gradients only on the last micro-step of an accumulation.
                    sync = model.no_sync() if run.ddp and micro < run.accum - 1 else contextlib.nullcontext()  # type: ignore[operator]
                    with sync, autocast:
                        loss = model(x, y) / run.accum
                    loss.backward()
                    loss_sum += loss.detach()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                steps_since += 1
                run.tokens_seen += run.step_tokens
                record: dict = {"step": step}
                # The first two steps are read too: the first holds the warm-up, the second is the pace.
                if step % cfg.log_interval == 0 or step == run.max_steps or step - run.start_step <= 2:
                    loss_value = _all_mean(run, loss_sum.item())
                    now = time.perf_counter()
                    tok_per_s = steps_since * run.step_tokens / max(1e-9, now - t_last - overhead)
                    t_last, steps_since, overhead = now, 0, 0.0
                    mfu = flops * tok_per_s / (peak * run.world) if peak else None
                    record.update(loss=loss_value, lr=cfg.learning_rate * factor)
                    if cfg.optimizer == "muon":
                        record["muon_lr"] = cfg.muon_lr * factor
                    record.update(tokens=run.tokens_seen, tok_per_s=round(tok_per_s, 1))
                    if mfu is not None:
                        record["mfu"] = round(mfu, 4)
                    log(run, record)
                    if budget is not None:
                        if step == run.start_step + 1:
                            budget.first_pace(now - t_step)
                        budget.observe(step)
                wants_stop = stop.set or bool(on_step and on_step(step, record))
                max_steps = run.max_steps
                if budget is not None and run.master:
                    evals_left = 0 if cfg.evals is None else max(0, cfg.evals - next_eval[0])
                    max_steps = budget.plan(
                        step, evals_left=evals_left, eval_interval=cfg.eval_interval if cfg.evals is None else None
                    )
                wants_stop, max_steps = _sync_decisions(run, wants_stop, max_steps)
                if max_steps != run.max_steps:
                    run.max_steps = max(step, max_steps)
                if _eval_due(run, step, next_eval) and run.eval_ds is not None and token_bytes is not None:
                    val, spent = evaluate_and_save(run, step, token_bytes, autocast, bar.write)
                    overhead += spent
                elif run.eval_ds is None and step < run.max_steps and step % cfg.eval_interval == 0:
                    save_last(run, step)
                postfix = {"loss": f"{loss_value:.4f}", "tok/s": f"{tok_per_s:,.0f}"}
                if mfu is not None:
                    postfix["mfu"] = f"{100 * mfu:.1f}%"
                if budget is not None:
                    postfix["plan"] = f"{run.max_steps:,}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
                if wants_stop and step < run.max_steps:
                    stopped_by = "signal" if stop.set else "callback"
                    break
    except torch.cuda.OutOfMemoryError as exc:
        raise ValueError(
            f"out of GPU memory at batch_size {cfg.batch_size} x seq_len {run.model_cfg.seq_len}: try --batch_size "
            f"{max(1, cfg.batch_size // 2)} with --total_batch_tokens {run.step_tokens} to keep the tokens per step"
        ) from exc
    finally:
        bar.close()
    t0 = time.perf_counter()
    save_last(run, step)
    plot(run)
    if budget is not None:
        budget.add_overhead(time.perf_counter() - t0, "save")
    seconds = time.perf_counter() - run.started
    loop_seconds = time.perf_counter() - t_loop
    trained = (step - run.start_step) * run.step_tokens
    return {
        "run_dir": str(run.run_dir),
        "step": step,
        "max_steps": run.max_steps,
        "loss": loss_value,
        "best_val_loss": run.best_val if run.best_val < float("inf") else None,
        **val,
        "tokens_per_s": tok_per_s,
        "train_tokens_per_s": trained / max(1e-9, loop_seconds - (budget._overhead if budget else 0.0)),
        "seconds": seconds,
        "interrupted": stopped_by is not None,
        "stopped_by": stopped_by,
    }


def train(
    cfg: TrainConfig,
    model_cfg: GPTConfig | None = None,
    *,
    model_overrides: set[str] | None = None,
    train_overrides: set[str] | None = None,
    on_step: Callable[[int, dict], bool | None] | None = None,
    build_model: Callable[[GPTConfig], nn.Module] | None = None,
) -> dict:
    """Train a GPT; returns a summary (run_dir, step, losses, tokens/s, seconds, interrupted).

    `model_cfg.vocab_size` is replaced by the tokenizer's. On resume the checkpoint's
    model config is used; fields named in `model_overrides` (what the user set
    explicitly) must agree with it, and training settings not in `train_overrides`
    (None: take `cfg` as it is) come from the checkpoint. `on_step(step, record)` is
    called after each optimizer step; returning True stops the run and saves it, like
    Ctrl-C. `build_model` replaces `GPT` (the benches train a reference model with it).
    """
    run = setup(
        cfg,
        model_cfg or GPTConfig(),
        model_overrides=model_overrides or set(),
        train_overrides=train_overrides,
        build_model=build_model,
    )
    try:
        return run_loop(run, on_step)
    finally:
        teardown(run)
