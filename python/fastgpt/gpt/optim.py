"""Optimizers for the trainer: AdamW alone, or Muon on the hidden weight matrices with AdamW
on the rest (embeddings, head, gains), as modded-nanogpt and nanochat train.

Muon is `torch.optim.Muon` (torch >= 2.9): its constructor, checks, state and update rule,
with one change, `StackedMuon.step`: torch orthogonalises one matrix at a time, and at small
widths the per-matrix calls dominate (the demo's 16 matrices: 1.5x faster stacked, about 5%
of a CPU training step), so matrices of one shape go through the Newton-Schulz iterations
together as one batched matmul, in fp32 on a CPU without bf16 kernels (`newton_schulz_dtype`).
The state dict is torch's, so either loads the other's.
Under DDP it runs as it is: DDP averages the gradients before `step`, so every rank
orthogonalises the same matrices and the replicas stay identical. That repeats the
Newton-Schulz work on each rank, a few percent of a GPT-2-small step; a sharded variant (each
rank orthogonalises a share of the matrices and all-gathers them, as modded-nanogpt does)
would remove it and is not written here.

Every parameter group carries `base_lr`; the trainer multiplies it by the schedule's factor.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn as nn

__all__ = ["OPTIMIZERS", "make_optimizer", "set_schedule"]

OPTIMIZERS = ("adamw", "muon")
REFERENCE_WIDTH = 768  # the embedding and head rates are given for this width, scaled by sqrt(768 / width)
MUON_MOMENTUM = (0.85, 0.95, 300)  # warm the momentum from 0.85 to 0.95 over 300 steps (nanochat's)


class CombinedOptimizer:
    """Several optimizers stepped as one: one `param_groups` list, one `state_dict`."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        # Read through every time: load_state_dict replaces the inner optimizers' group dicts.
        return [g for o in self.optimizers for g in o.param_groups]

    @torch.no_grad()
    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)


def newton_schulz_dtype(device: torch.device) -> torch.dtype:
    """bf16, as torch.optim.Muon runs it, on CUDA and on a CPU whose oneDNN has bf16 kernels
    (AVX-512 or newer; on an AVX512-BF16 CPU bf16 products took half fp32's time); fp32
    elsewhere. Without them torch takes a slow path for bf16 products: on an AVX2 EPYC with
    torch 2.15 a stack of four 256 x 1024 Newton-Schulz steps took 579 ms in bf16 against 13 ms
    in fp32."""
    if device.type == "cuda" or (device.type == "cpu" and _cpu_has_bf16_kernels()):
        return torch.bfloat16
    return torch.float32


@functools.cache
def _cpu_has_bf16_kernels() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without oneDNN: its bf16 path is the slow one
        return False


def _newton_schulz(G: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float) -> torch.Tensor:
    """torch.optim.Muon's quintic Newton-Schulz orthogonalisation (in `newton_schulz_dtype`), for a
    stack (n, A, B) of matrices with A <= B at once: baddbmm fuses each step's products and sums."""
    a, b, c = coefficients
    X = G.to(newton_schulz_dtype(G.device))  # no copy when the caller stacked them so
    X = X / X.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        A = torch.bmm(X, X.mT)
        X = torch.baddbmm(X, torch.baddbmm(A, A, A, beta=b, alpha=c), X, beta=a)
    return X


_MUON_BASE: Any = getattr(torch.optim, "Muon", torch.optim.Optimizer)  # torch < 2.9 has no Muon: adamw only


class StackedMuon(_MUON_BASE):
    """torch.optim.Muon with the Newton-Schulz iterations batched over matrices of one shape."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, momentum = group["lr"], group["weight_decay"], group["momentum"]
            stacks: dict[tuple, list[tuple[torch.Tensor, torch.Tensor, bool]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                tall = p.size(0) > p.size(1)  # orthogonalise the wide orientation: the smaller Gram matrix
                update = update.mT if tall else update
                stacks.setdefault((tuple(update.shape), update.device), []).append((p, update, tall))
            for items in stacks.values():
                # One stack in the Newton-Schulz dtype, written straight from the fp32 updates:
                # one pass instead of torch.stack's copy and then a cast.
                device = items[0][1].device
                shape = (len(items), *items[0][1].shape)
                stack = torch.empty(shape, dtype=newton_schulz_dtype(device), device=device)
                for i, (_, u, _) in enumerate(items):
                    stack[i].copy_(u)
                ortho = _newton_schulz(stack, group["ns_coefficients"], group["ns_steps"], group["eps"])
                for (p, _, tall), o in zip(items, ortho):
                    rows, cols = p.shape
                    scale = math.sqrt(max(1.0, rows / cols))  # torch's default ("original") rate adjustment
                    if wd:
                        p.mul_(1 - lr * wd)
                    p.add_(o.mT if tall else o, alpha=-lr * scale)
        return loss


def _adamw(groups: list[dict], betas: tuple[float, float], eps: float = 1e-8) -> torch.optim.AdamW:
    """Fused AdamW (one kernel for all parameters; 4x faster than the default on CPU too)
    wherever this torch and device support it."""
    groups = [g for g in groups if g["params"]]
    try:
        return torch.optim.AdamW(groups, betas=betas, eps=eps, fused=True)
    except (RuntimeError, ValueError, TypeError):  # e.g. MPS, or an old torch on CPU
        return torch.optim.AdamW(groups, betas=betas, eps=eps)


def make_optimizer(model: nn.Module, cfg: Any, width: int) -> torch.optim.Optimizer | CombinedOptimizer:
    """The optimizer `cfg.optimizer` names, with each group's `base_lr` set from `cfg`."""
    if cfg.optimizer == "adamw":
        groups = model.optim_groups(cfg.weight_decay)  # type: ignore[operator]
        for g in groups:
            g["lr"] = g["base_lr"] = cfg.learning_rate
        return _adamw(groups, (cfg.beta1, cfg.beta2))
    if cfg.optimizer != "muon":
        raise ValueError(f"--optimizer {cfg.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    if not hasattr(torch.optim, "Muon"):
        raise ValueError(f"--optimizer muon needs torch >= 2.9 (this is {torch.__version__}); use --optimizer adamw")
    if not hasattr(model, "param_kinds"):
        raise ValueError(f"--optimizer muon needs a model with param_kinds(); {type(model).__name__} has none")
    kinds = model.param_kinds()  # type: ignore[operator]
    scale = math.sqrt(REFERENCE_WIDTH / width)  # AdamW rates shrink with width (nanochat's rule)
    embedding_lr = cfg.embedding_lr * scale
    head_lr = cfg.head_lr * scale
    adam = [
        {"params": kinds["embedding"], "lr": embedding_lr, "base_lr": embedding_lr, "weight_decay": 0.0},
        {"params": kinds["head"], "lr": head_lr, "base_lr": head_lr, "weight_decay": 0.0},
        {"params": kinds["scalar"], "lr": cfg.learning_rate, "base_lr": cfg.learning_rate, "weight_decay": 0.0},
    ]
    # Adam for the embedding and head with a shorter first-moment memory and a tiny eps: the
    # embedding rows of rare tokens see few, small gradients (modded-nanogpt's settings).
    optimizers: list[torch.optim.Optimizer] = [_adamw(adam, (0.8, cfg.beta2), eps=1e-10)]
    if kinds["matrix"]:
        muon = StackedMuon(
            kinds["matrix"], lr=cfg.muon_lr, weight_decay=cfg.muon_weight_decay, momentum=MUON_MOMENTUM[1]
        )
        for g in muon.param_groups:
            g["base_lr"] = cfg.muon_lr
        optimizers.append(muon)
    return CombinedOptimizer(optimizers)


def set_schedule(optimizer: Any, factor: float, step: int) -> float:
    """Set every group's rate to base_lr * factor and Muon's momentum for `step`; returns the factor."""
    lo, hi, steps = MUON_MOMENTUM
    momentum = lo + (hi - lo) * min(1.0, step / steps)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
        if "ns_steps" in group:  # a Muon group
            group["momentum"] = momentum
    return factor
