"""The yardstick: a plain nanoGPT-style GPT, and the equal-wall-time comparison against it.

`NanoGPT` is GPT-2 as nanoGPT writes it (learned positions, LayerNorm with biases, GELU MLP,
tied embedding and head, N(0, 0.02) init with residual projections scaled by 1/sqrt(2 layers),
the same scaled_dot_product_attention). `compare` trains it and fastgpt's default recipe through
the same `fastgpt.train` (data loader, evaluation windows, time budget, checkpointing), each
for the same wall time, the reference with nanoGPT's AdamW and cosine schedule at each of a few
learning rates, and reports validation loss, tokens/s and MFU. The benches drive it:
benches/test_bench_train.py (CPU, demo shape) and benches/gpu_train.py (CUDA, GPT-2 small).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastgpt.gpt.model import GPTConfig, decay_groups, flops_per_token

__all__ = ["NanoGPT", "compare", "REFERENCE_LRS", "SHAPES"]

REFERENCE_LRS = (6e-4, 1e-3, 2e-3)  # nanoGPT's default and two higher: the reference gets its best
# Named shapes: the demo's (CPU) and GPT-2 small (GPU), with the batch each is measured at.
SHAPES: dict[str, dict[str, Any]] = {
    "demo": dict(model=dict(embed_dim=128, n_heads=4, num_layers=4, seq_len=128), batch_size=16),
    "gpt2-small": dict(model=dict(embed_dim=768, n_heads=12, num_layers=12, seq_len=1024), batch_size=32),
}


class NanoGPT(nn.Module):
    """GPT-2 as nanoGPT writes it; trained by `fastgpt.train(..., build_model=NanoGPT)`."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        V, C, L = cfg.padded_vocab_size, cfg.embed_dim, cfg.num_layers
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(cfg.seq_len, C)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                dict(
                    ln_1=nn.LayerNorm(C),
                    attn=nn.Linear(C, 3 * C),
                    proj=nn.Linear(C, C),
                    ln_2=nn.LayerNorm(C),
                    fc=nn.Linear(C, 4 * C),
                    out=nn.Linear(4 * C, C),
                )
            )
            for _ in range(L)
        )
        self.ln_f = nn.LayerNorm(C)
        self.head = nn.Linear(C, V, bias=False)
        self.head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith(("proj.weight", "out.weight")) else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            b = cast(Any, b)  # a ModuleDict
            q, k, v = b["attn"](b["ln_1"](x)).view(B, T, 3, self.cfg.n_heads, -1).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, -1)
            x = x + b["proj"](y)
            x = x + b["out"](F.gelu(b["fc"](b["ln_2"](x))))
        logits = self.head(self.ln_f(x)).float()[..., : self.cfg.vocab_size]
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)
        return loss if reduction != "none" else loss.view(targets.shape)

    def optim_groups(self, weight_decay: float) -> list[dict]:
        return decay_groups(self, weight_decay)

    def flops_per_token(self) -> int:
        return flops_per_token(self, self.cfg)


def _final(run_dir: Path) -> dict:
    import json

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return next((r for r in map(json.loads, reversed(lines)) if r.get("final")), {})


def compare(
    tokenizer: str | Path,
    train_data: str | Path,
    eval_data: str | Path,
    out_dir: str | Path,
    *,
    minutes: float,
    shape: str = "demo",
    device: str = "auto",
    compile: bool = False,
    reference_lrs: tuple[float, ...] = REFERENCE_LRS,
    eval_batches: int = 20,
    ours: dict | None = None,
    variants: dict[str, dict] | None = None,
    parallel: bool = False,
    threads: int | None = None,
    only_reference: bool = False,
    log: Any = print,
) -> dict:
    """Train fastgpt's defaults (plus `variants`: name -> TrainConfig changes) and the reference
    at each of `reference_lrs`, `minutes` of wall clock each, one after another on the same
    files; return each one's results and the ratios against the best reference.

    `only_reference` trains just the reference (to choose its rate). `parallel` runs them all at once, each in its own process with `threads` torch threads
    (1 by default): on a shared machine whose load swings, every run then sees the same
    load, which one-after-another runs cannot promise."""

    spec = SHAPES[shape]
    model_cfg = GPTConfig(**spec["model"])
    common = dict(
        tokenizer=str(tokenizer),
        train_data=str(train_data),
        eval_data=str(eval_data),
        out_dir=str(out_dir),
        max_minutes=minutes,
        batch_size=spec["batch_size"],
        evals=1,  # evaluate once, at the end: the same windows for every run
        eval_batches=eval_batches,
        device=device,
        compile=compile,
    )
    # nanoGPT's recipe: AdamW (0.9, 0.95), weight decay 0.1, warmup then cosine to a tenth, clip 1.
    reference = dict(optimizer="adamw", schedule="cosine", weight_decay=0.1, beta1=0.9, beta2=0.95, min_lr_ratio=0.1)
    runs: list[tuple[str, dict, Any]] = [] if only_reference else [("fastgpt", dict(ours or {}), None)]
    runs += [(f"fastgpt_{name}", changes, None) for name, changes in (variants or {}).items()]
    runs += [(f"nanogpt_lr{lr:g}", dict(reference, learning_rate=lr), NanoGPT) for lr in reference_lrs]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    jobs = [
        (name, {**common, **changes, "experiment_name": f"{stamp}-{name}"}, build is not None, changes)
        for name, changes, build in runs
    ]
    if parallel:
        results = _run_parallel(jobs, model_cfg, threads)
    else:
        results = {name: _run_one(cfg, asdict(model_cfg), reference) for name, cfg, reference, _ in jobs}
    for name, _, _, changes in jobs:
        results[name]["config"] = changes
        log(f"{name}: {results[name]}")
    refs = {k: v for k, v in results.items() if k.startswith("nanogpt") and v["val_loss"] is not None}
    out: dict[str, Any] = {"shape": shape, "minutes": minutes, "runs": results}
    if refs:
        best = min(refs, key=lambda k: refs[k]["val_loss"])
        out["best_reference"] = best
        for k, v in results.items():
            if not k.startswith("nanogpt") and v["val_loss"] is not None:
                v["val_loss_ratio"] = round(v["val_loss"] / refs[best]["val_loss"], 4)
                v["tokens_per_s_ratio"] = round(v["train_tokens_per_s"] / refs[best]["train_tokens_per_s"], 4)
    return out


def _run_one(cfg: dict, model: dict, reference: bool) -> dict:
    """Train one run (in this process) and return what `compare` reports of it."""
    from fastgpt.gpt.trainer import TrainConfig, train

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    model_cfg = GPTConfig(**model)
    build = NanoGPT if reference else None
    summary = train(TrainConfig(**cfg), model_cfg, build_model=build)
    final = _final(Path(summary["run_dir"]))
    return {
        "val_loss": final.get("val_loss"),
        "val_bpb": final.get("val_bpb"),
        "steps": summary["step"],
        "seconds": round(summary["seconds"], 2),
        "budget_s": cfg["max_minutes"] * 60 if cfg.get("max_minutes") else None,
        "train_tokens_per_s": round(summary["train_tokens_per_s"], 1),
        "mfu": _mfu(summary, model_cfg, build, cfg["device"]),
        "load_before": load,
        "load_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _run_parallel(jobs: list, model_cfg: GPTConfig, threads: int | None) -> dict[str, dict]:
    """Each job in its own `python -m fastgpt.gpt.baseline` process, all started together."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": str(threads or 1), "TQDM_DISABLE": "1"}
    procs = {}
    for name, cfg, reference, _ in jobs:
        arg = json.dumps({"cfg": cfg, "model": asdict(model_cfg), "reference": reference})
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "fastgpt.gpt.baseline", arg], env=env, stdout=subprocess.PIPE, text=True
        )
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: the training process failed with exit status {proc.returncode}")
        results[name] = json.loads(out.strip().splitlines()[-1])
    return results


def _mfu(summary: dict, model_cfg: GPTConfig, build: Any, device: str) -> float | None:
    """Model FLOPs utilisation over the training steps, on a CUDA device with a known peak."""
    from fastgpt._util.device import peak_flops, resolve_device

    dev = resolve_device(device)
    peak = peak_flops(dev)
    if peak is None:
        return None
    with torch.device("meta"):
        model = (build or _gpt)(replace(model_cfg, vocab_size=_vocab(summary)))
    return round(flops_per_token(model, model_cfg) * summary["train_tokens_per_s"] / peak, 4)


def _gpt(cfg: GPTConfig) -> nn.Module:
    from fastgpt.gpt.model import GPT

    return GPT(cfg)


def _vocab(summary: dict) -> int:
    import json

    return json.loads((Path(summary["run_dir"]) / "config.json").read_text())["model"]["vocab_size"]


if __name__ == "__main__":  # one run of `compare(parallel=True)`, reported as a JSON line
    import json
    import sys

    job = json.loads(sys.argv[1])
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(json.dumps(_run_one(job["cfg"], job["model"], job["reference"])))
