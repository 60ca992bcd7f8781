"""Device, precision and hardware peaks: the one place that decides where and how torch runs.

The trainer, generation, the demo and the benches all come here, so `--device auto`,
bf16 autocast on CUDA (fp32 on CPU, where bf16 matmuls are slow on most chips) and the
MFU peak table cannot disagree between them.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

__all__ = ["resolve_device", "autocast", "configure", "peak_flops", "PEAK_BF16_FLOPS"]

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


def resolve_device(name: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """`auto` picks CUDA when present; a bare `cuda` means this process's GPU under torchrun.
    A device that is not available is a ValueError naming the flag."""
    name = str(name)
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
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device {name}: not a device name (auto, cpu, cuda, cuda:N or mps)") from exc


def autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA; nothing elsewhere (CPU trains and samples in fp32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure(device: torch.device) -> None:
    """Process-wide settings for fast matmuls: TF32 for the fp32 parts on CUDA."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def peak_flops(device: torch.device | str) -> float | None:
    """bf16 peak of a CUDA device, looked up by name (a device or its name); None when unknown."""
    if not isinstance(device, str):
        if device.type != "cuda":
            return None
        device = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS if key in device), None)
