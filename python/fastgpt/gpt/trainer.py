"""The trainer: AdamW with warmup + cosine decay, gradient accumulation, eval, checkpoints, exact resume, DDP.

A run lives in `out_dir/experiment_name/`:

    config.json     the model and training config
    tokenizer/      a copy of the tokenizer, so generation needs nothing else
    last.pt         weights, optimizer, step, data position and RNG states (what --resume reads)
    best.pt         weights with the lowest validation loss so far
    metrics.jsonl   one JSON object per logged step and per evaluation
    loss.png        the loss curves (when matplotlib is installed)

Under `torchrun --nproc_per_node N -m fastgpt train ...` each rank trains on its own
slice of every global batch (DDP); only rank 0 logs and writes files.
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
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastgpt.data.tokens import Batches, TokenDataset
from fastgpt.gpt.model import GPT, GPTConfig

__all__ = ["TrainConfig", "train", "evaluate", "lr_at", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1

# Dense bf16 tensor-core peaks (FLOP/s) for MFU; matched in order against the device name.
PEAK_BF16_FLOPS = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H800", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),
    ("T4", 65e12),
)


@dataclass
class TrainConfig:
    tokenizer: str = ""  # tokenizer directory: the vocabulary size comes from here
    train_data: str = ""  # .bin file, glob or directory of shards
    eval_data: str | None = None
    experiment_name: str = "gpt"
    out_dir: str = "runs"
    epochs: float | None = None  # give at most one of epochs / max_steps / max_tokens; 1 epoch when none
    max_steps: int | None = None
    max_tokens: int | None = None
    batch_size: int = 64  # sequences per micro-batch on each device
    total_batch_tokens: int | None = None  # tokens per optimizer step; filled by gradient accumulation
    learning_rate: float = 3e-3  # QK-norm and zero-init projections make a high peak rate stable
    min_lr_ratio: float = 0.1  # cosine decays to this fraction of the peak
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95  # shorter second-moment memory than 0.999: steadier at high learning rates
    grad_clip: float = 1.0  # 0 disables
    eval_interval: int = 250  # steps between evaluations and checkpoints
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


def lr_at(step: int, cfg: TrainConfig, max_steps: int) -> float:
    """Linear warmup to the peak, then cosine decay to min_lr_ratio * peak at max_steps."""
    peak = cfg.learning_rate
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    span = max(1, max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return peak * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def peak_flops(device: torch.device | str) -> float | None:
    """bf16 peak of a CUDA device, looked up by name (a device or its name); None when unknown."""
    if not isinstance(device, str):
        if device.type != "cuda":
            return None
        device = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS if key in device), None)


def _resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {name} requested but CUDA is not available (torch {torch.__version__}); use --device cpu"
            )
        if name == "cuda":
            name = f"cuda:{local_rank}"
    elif name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps requested but MPS is not available; use --device cpu")
    return torch.device(name)


def _token_bytes(tokenizer: Any) -> torch.Tensor:
    """UTF-8 length of each token; 0 for special tokens, which bits per byte leaves out."""
    special = set(tokenizer.special_tokens.values())
    lengths = np.zeros(tokenizer.n_vocab, dtype=np.int64)
    for i in range(tokenizer.n_vocab):
        if i not in special:
            with contextlib.suppress(Exception):  # ids with no bytes (holes in a vocabulary)
                lengths[i] = len(tokenizer.decode_bytes([i]))
    return torch.from_numpy(lengths)


def make_optimizer(model: GPT, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight-decay groups, fused (one kernel for all parameters; 4x faster
    than the default on CPU too) wherever this torch and device support it."""
    kwargs: dict[str, Any] = dict(lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2))
    try:
        return torch.optim.AdamW(model.optim_groups(cfg.weight_decay), fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):  # e.g. torch < 2.4 on CPU, or MPS
        return torch.optim.AdamW(model.optim_groups(cfg.weight_decay), **kwargs)


@torch.no_grad()
def evaluate(
    model: GPT,
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


def _save(obj: Any, path: Path) -> None:
    """torch.save to a temporary name, then rename: a crash never leaves a half-written checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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


class _StopFlag:
    """First Ctrl-C asks the loop to stop after the current step and save; a second one aborts."""

    def __init__(self) -> None:
        self.set = False
        self._previous: Any = None  # whatever signal.signal returned: a handler, an int or None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        if self.set:
            raise KeyboardInterrupt
        self.set = True
        print("\nfastgpt: stopping after this step and saving a checkpoint (Ctrl-C again to abort)", flush=True)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _check_resume_config(saved: dict, model_cfg: GPTConfig, explicit: set[str], path: Path) -> GPTConfig:
    """The saved model config wins; an explicitly given value that disagrees is an error."""
    saved_cfg = GPTConfig(**saved)
    for name in explicit:
        if getattr(model_cfg, name) != getattr(saved_cfg, name):
            raise ValueError(
                f"{path}: {name} is {getattr(saved_cfg, name)!r} in the checkpoint but {getattr(model_cfg, name)!r} was given"
            )
    return saved_cfg


def train(
    cfg: TrainConfig,
    model_cfg: GPTConfig | None = None,
    *,
    model_overrides: set[str] | None = None,
    on_step: Callable[[int, dict], bool | None] | None = None,
) -> dict:
    """Train a GPT; returns a summary (run_dir, step, losses, tokens/s).

    `model_cfg.vocab_size` is replaced by the tokenizer's. On resume the checkpoint's
    model config is used; fields named in `model_overrides` (what the user set
    explicitly) must agree with it. `on_step(step, record)` is called after each
    optimizer step; returning True stops the run and saves it, like Ctrl-C.
    """
    from fastgpt.tokenizer import Tokenizer

    model_cfg = model_cfg or GPTConfig()
    if cfg.tokenizer == "":
        raise ValueError("a tokenizer directory is required (--tokenizer)")
    if not cfg.train_data:
        raise ValueError("training data is required (--train_data)")
    if sum(x is not None for x in (cfg.epochs, cfg.max_steps, cfg.max_tokens)) > 1:
        raise ValueError("give at most one of --epochs, --max_steps, --max_tokens")
    tokenizer = Tokenizer.load(cfg.tokenizer)
    n_vocab = tokenizer.n_vocab
    if cfg.tgt_vocab_size is not None and cfg.tgt_vocab_size != n_vocab:
        raise ValueError(
            f"--tgt_vocab_size {cfg.tgt_vocab_size} disagrees with the tokenizer in {cfg.tokenizer}, which has {n_vocab} tokens"
        )
    model_cfg = replace(model_cfg, vocab_size=n_vocab)

    run_dir = cfg.run_dir
    last_path = run_dir / "last.pt"
    checkpoint = None
    if cfg.resume:
        if not last_path.exists():
            raise FileNotFoundError(f"{last_path}: no checkpoint to resume from")
        checkpoint = torch.load(last_path, map_location="cpu", weights_only=True)
        if checkpoint.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{last_path}: unsupported checkpoint version {checkpoint.get('version')}")
        if checkpoint["model_config"]["vocab_size"] != n_vocab:
            raise ValueError(
                f"{last_path}: the checkpoint's vocabulary is {checkpoint['model_config']['vocab_size']} tokens, "
                f"the tokenizer in {cfg.tokenizer} has {n_vocab}"
            )
        model_cfg = _check_resume_config(checkpoint["model_config"], model_cfg, model_overrides or set(), last_path)
    elif last_path.exists():
        raise ValueError(
            f"{run_dir} already holds a run: pass --resume to continue it, or choose another --experiment_name"
        )

    # Distributed: torchrun sets RANK / WORLD_SIZE / LOCAL_RANK.
    ddp = "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world, local_rank = 0, 1, 0
    if ddp:
        import torch.distributed as dist

        rank, world, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    device = _resolve_device(cfg.device, local_rank)
    own_group = ddp and not dist.is_initialized()  # leave a caller's process group alone
    if own_group:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    master = rank == 0

    train_ds = TokenDataset(
        cfg.train_data, model_cfg.seq_len, headerless=cfg.headerless, vocab_size=n_vocab, tokenizer=tokenizer
    )
    eval_ds = (
        TokenDataset(
            cfg.eval_data, model_cfg.seq_len, headerless=cfg.headerless, vocab_size=n_vocab, tokenizer=tokenizer
        )
        if cfg.eval_data
        else None
    )

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
    if cfg.max_steps is not None:
        max_steps = cfg.max_steps
    elif cfg.max_tokens is not None:
        max_steps = math.ceil(cfg.max_tokens / step_tokens)
    else:
        epochs = 1.0 if cfg.epochs is None else cfg.epochs
        max_steps = math.ceil(epochs * len(train_ds) * model_cfg.seq_len / step_tokens)
    if max_steps < 1:
        raise ValueError(f"the run has no steps (max_steps {max_steps})")

    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    raw_model = GPT(model_cfg).to(device)
    # What the loop calls: the model, or its torch.compile / DDP wrapper (no common static type).
    model: Any = raw_model
    optimizer = make_optimizer(model, cfg)
    loader = Batches(
        train_ds, cfg.batch_size, shuffle=cfg.shuffle, seed=cfg.seed, rank=rank, world_size=world, device=device
    )
    start_step, best_val, tokens_seen = 0, float("inf"), 0
    if checkpoint is not None:
        raw_model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        loader.load_state_dict(checkpoint["data"])
        start_step, best_val, tokens_seen = checkpoint["step"], checkpoint["best_val_loss"], checkpoint["tokens_seen"]
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if device.type == "cuda" and checkpoint["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(checkpoint["rng"]["cuda"], device)
    if cfg.compile:
        model = torch.compile(model)
    if ddp:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    )  # bf16 on GPU; CPU trains in fp32, where bf16 matmuls are slow on most chips

    records: list[dict] = []
    metrics_path = run_dir / "metrics.jsonl"
    if master:
        run_dir.mkdir(parents=True, exist_ok=True)
        tok_dir = run_dir / "tokenizer"
        if Path(cfg.tokenizer).resolve() != tok_dir.resolve():
            if Path(cfg.tokenizer).is_dir():
                shutil.copytree(cfg.tokenizer, tok_dir, dirs_exist_ok=True)
            else:  # a bare rank file: save it as a full tokenizer directory
                tokenizer.save(tok_dir)
        (run_dir / "config.json").write_text(
            json.dumps({"model": model_cfg.to_dict(), "train": asdict(cfg), "version": CHECKPOINT_VERSION}, indent=2)
        )
        if checkpoint is not None and metrics_path.exists():
            # Keep the history up to the resumed step; later lines belong to the abandoned tail.
            records = [r for r in map(json.loads, metrics_path.read_text().splitlines()) if r["step"] <= start_step]
        metrics_path.write_text("".join(json.dumps(r) + "\n" for r in records))

    token_bytes = _token_bytes(tokenizer).to(device) if eval_ds is not None else None
    peak = peak_flops(device)
    flops_per_token = raw_model.flops_per_token()

    def all_mean(values: list[float]) -> list[float]:
        if not ddp:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return (t / world).tolist()

    def save_last(step: int) -> None:
        if not master:
            return
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }
        _save(
            {
                "version": CHECKPOINT_VERSION,
                "model": raw_model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "model_config": model_cfg.to_dict(),
                "train_config": asdict(cfg),
                "step": step,
                "max_steps": max_steps,
                "data": loader.state_dict(),
                "rng": rng,
                "best_val_loss": best_val,
                "tokens_seen": tokens_seen,
            },
            last_path,
        )

    def log(record: dict) -> None:
        records.append(record)
        if master:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    plot_note = [False]

    def plot() -> None:
        if master and not _plot(records, run_dir / "loss.png") and not plot_note[0]:
            plot_note[0] = True
            print("fastgpt: matplotlib is not installed; skipping loss.png (pip install matplotlib)")

    from tqdm.auto import tqdm

    model.train()
    bar = tqdm(total=max_steps, initial=start_step, disable=not master, unit="step", dynamic_ncols=True)
    step, loss_value, tok_per_s, mfu, interrupted = start_step, float("nan"), 0.0, None, False
    t_last, steps_since = time.perf_counter(), 0
    val: dict = {}
    try:
        with _StopFlag() as stop:
            while step < max_steps:
                lr = lr_at(step, cfg, max_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss_sum = torch.zeros((), device=device)
                for micro in range(accum):
                    x, y = next(loader)
                    # DDP all-reduces gradients only on the last micro-step of an accumulation.
                    sync = contextlib.nullcontext() if not ddp or micro == accum - 1 else model.no_sync()
                    with sync:
                        with autocast:
                            loss = model(x, y) / accum
                        loss.backward()
                    loss_sum += loss.detach()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                steps_since += 1
                tokens_seen += step_tokens
                record: dict = {"step": step}
                if step % cfg.log_interval == 0 or step == max_steps or step == start_step + 1:
                    (loss_value,) = all_mean([loss_sum.item()])
                    now = time.perf_counter()
                    tok_per_s = steps_since * step_tokens / (now - t_last)
                    t_last, steps_since = now, 0
                    mfu = flops_per_token * tok_per_s / (peak * world) if peak else None
                    record.update(loss=loss_value, lr=lr, tokens=tokens_seen, tok_per_s=round(tok_per_s, 1))
                    if mfu is not None:
                        record["mfu"] = round(mfu, 4)
                    log(record)
                if (
                    eval_ds is not None
                    and token_bytes is not None
                    and (step % cfg.eval_interval == 0 or step == max_steps)
                ):
                    val = evaluate(
                        raw_model,
                        eval_ds,
                        cfg.batch_size,
                        cfg.eval_batches,
                        token_bytes,
                        autocast=autocast,
                        rank=rank,
                        world_size=world,
                    )
                    log({"step": step, **val})
                    if val["val_loss"] < best_val:
                        best_val = val["val_loss"]
                        if master:
                            _save(
                                {
                                    "version": CHECKPOINT_VERSION,
                                    "model": raw_model.state_dict(),
                                    "model_config": model_cfg.to_dict(),
                                    "step": step,
                                    "val_loss": best_val,
                                },
                                run_dir / "best.pt",
                            )
                    if master:
                        bar.write(
                            f"step {step}: val loss {val['val_loss']:.4f}, perplexity {val['val_ppl']:.2f}, "
                            f"{val['val_bpb']:.4f} bits/byte"
                        )
                if step % cfg.eval_interval == 0 and step < max_steps:
                    save_last(step)
                    plot()
                postfix = {"loss": f"{loss_value:.4f}", "tok/s": f"{tok_per_s:,.0f}"}
                if mfu is not None:
                    postfix["mfu"] = f"{100 * mfu:.1f}%"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
                wants_stop = stop.set or bool(on_step and on_step(step, record))
                if ddp:  # every rank must leave the loop at the same step
                    wants_stop = bool(all_mean([float(wants_stop)])[0] > 0)
                if wants_stop and step < max_steps:
                    interrupted = True
                    break
    except torch.cuda.OutOfMemoryError as exc:
        raise ValueError(
            f"out of GPU memory at batch_size {cfg.batch_size} x seq_len {model_cfg.seq_len}: try --batch_size "
            f"{max(1, cfg.batch_size // 2)} with --total_batch_tokens {step_tokens} to keep the tokens per step"
        ) from exc
    finally:
        bar.close()
    save_last(step)
    plot()
    if ddp:
        dist.barrier()
        if own_group:
            dist.destroy_process_group()
    return {
        "run_dir": str(run_dir),
        "step": step,
        "max_steps": max_steps,
        "loss": loss_value,
        "best_val_loss": best_val if best_val < float("inf") else None,
        **val,
        "tokens_per_s": tok_per_s,
        "interrupted": interrupted,
    }


def config_fields() -> dict[str, list[str]]:
    """Names of the model and training settings (what the command line exposes)."""
    return {"model": [f.name for f in fields(GPTConfig)], "train": [f.name for f in fields(TrainConfig)]}
