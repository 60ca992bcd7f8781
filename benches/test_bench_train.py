"""CPU training-step throughput of our GPT against a plain nanoGPT-style reference, and
generation speed with and without the KV cache.

    pytest benches/test_bench_train.py --benchmark-enable

The reference is written here (learned positions, LayerNorm with biases, GELU, tied
embeddings, the same scaled_dot_product_attention), at the same width, depth, sequence
length and batch, with the same AdamW. Tokens per second are in `extra_info`.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fastgpt.gpt.generate import generate_tokens  # noqa: E402
from fastgpt.gpt.model import GPT, GPTConfig  # noqa: E402

# The default GPTConfig shape (384 wide, 6 layers, 6 heads, 256 context) with a vocabulary a
# small corpus would give; batch 8 keeps one step near a second on two cores.
VOCAB, SEQ, WIDTH, LAYERS, HEADS, BATCH = 8192, 256, 384, 6, 6, 8


class ReferenceGPT(nn.Module):
    """GPT-2 as nanoGPT writes it: learned positions, LayerNorm, GELU MLP, tied head."""

    def __init__(self, vocab: int, seq: int, width: int, layers: int, heads: int):
        super().__init__()
        self.heads = heads
        self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(seq, width)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                dict(
                    ln_1=nn.LayerNorm(width),
                    attn=nn.Linear(width, 3 * width),
                    proj=nn.Linear(width, width),
                    ln_2=nn.LayerNorm(width),
                    fc=nn.Linear(width, 4 * width),
                    out=nn.Linear(4 * width, width),
                )
            )
            for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.wte.weight
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            q, k, v = b["attn"](b["ln_1"](x)).view(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, -1)
            x = x + b["proj"](y)
            x = x + b["out"](F.gelu(b["fc"](b["ln_2"](x))))
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def make_step(model: nn.Module):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=1e-3)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=g)
    x, y = idx[:, :-1], idx[:, 1:]

    def step():
        loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # allocate optimizer state outside the timing
    return step


@pytest.mark.parametrize("which", ["fastgpt", "nanogpt_reference"])
def test_train_step_cpu(benchmark, which):
    torch.manual_seed(0)
    if which == "fastgpt":
        model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=SEQ, embed_dim=WIDTH, num_layers=LAYERS, n_heads=HEADS))
    else:
        model = ReferenceGPT(VOCAB, SEQ, WIDTH, LAYERS, HEADS)
    benchmark.group = "train step (CPU, fp32)"
    step = make_step(model.train())
    benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)
    tokens = BATCH * SEQ
    benchmark.extra_info["tokens_per_step"] = tokens
    benchmark.extra_info["tokens_per_s"] = tokens / benchmark.stats.stats.median if benchmark.stats else None


@pytest.mark.parametrize("use_cache", [True, False], ids=["kv_cache", "recompute"])
def test_generate_512_tokens_cpu(benchmark, use_cache):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=1024, embed_dim=WIDTH, num_layers=LAYERS, n_heads=HEADS)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    prompt = list(range(16))

    def run():
        return list(generate_tokens(model, prompt, 512, temperature=0, use_cache=use_cache))

    benchmark.group = "generate 512 new tokens (CPU)"
    out = benchmark.pedantic(run, rounds=1 if not use_cache else 3, iterations=1)
    assert len(out) == 512
    benchmark.extra_info["tokens_per_s"] = 512 / benchmark.stats.stats.median if benchmark.stats else None


# ---------------------------------------------------------------------------------------------
# GPU: equal training time for our default recipe and the reference, on real pretokenized data.
#
#     FASTGPT_GPU_DATA=data/ pytest benches/test_bench_train.py -k equal_time -s --benchmark-enable
#
# data/ holds train.bin and eval.bin (any vocabulary); FASTGPT_GPU_SECONDS sets the budget (60).
# Shape of the reference measurement: GPT-2 small, sequence 1024, batch 32, bf16, compiled.
# ---------------------------------------------------------------------------------------------


def train_for_seconds(
    model: nn.Module,
    train_ds,
    eval_ds,
    *,
    seconds: float,
    lr: float,
    batch: int,
    device: str,
    flops_per_token: float,
    peak_flops: float | None,
    eval_batches: int = 20,
) -> dict:
    """Warmup then linear decay over the time budget (fair to both at equal time), AdamW,
    clipping 1.0, bf16 autocast on CUDA; returns tokens/s, MFU and validation loss."""
    import contextlib
    import math
    import time

    opt = torch.optim.AdamW(
        [
            {"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.1},
            {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.95),
        fused=device.startswith("cuda"),
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    warmup, step, tokens = 50, 0, 0
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * (1 - 0.9 * elapsed / seconds)
        x, y = (torch.from_numpy(a).to(device) for a in train_ds.batch(step, batch, shuffle=True, seed=0))
        with autocast:
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens += x.numel()
        if step == 10:  # leave compilation and warmup out of the speed
            sync()
            t10, tokens10 = time.perf_counter(), tokens
    sync()
    speed = (tokens - tokens10) / (time.perf_counter() - t10) if step > 10 else float("nan")
    model.eval()
    losses = []
    with torch.no_grad():
        for i in range(min(eval_batches, max(1, len(eval_ds) // batch))):
            x, y = (torch.from_numpy(a).to(device) for a in eval_ds.batch(i, batch, shuffle=False))
            with autocast:
                losses.append(model(x, y).item())
    model.train()
    return {
        "steps": step,
        "tokens_per_s": speed,
        "mfu": flops_per_token * speed / peak_flops if peak_flops else None,
        "val_loss": sum(losses) / len(losses) if losses else math.nan,
    }


def equal_time_pair(
    vocab: int,
    seq: int,
    width: int,
    layers: int,
    heads: int,
    *,
    train_ds,
    eval_ds,
    seconds: float,
    batch: int,
    device: str,
    compile: bool,
) -> dict:
    from fastgpt.gpt.trainer import peak_flops

    peak = peak_flops(torch.device(device)) if device.startswith("cuda") else None
    results = {}
    for name, build, lr in [
        (
            "fastgpt",
            lambda: GPT(GPTConfig(vocab_size=vocab, seq_len=seq, embed_dim=width, num_layers=layers, n_heads=heads)),
            3e-3,
        ),
        ("nanogpt_reference", lambda: ReferenceGPT(vocab, seq, width, layers, heads), 6e-4),
    ]:
        torch.manual_seed(0)
        model = build().to(device)
        matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
        flops = 6 * matmul + 12 * layers * width * seq
        runnable = torch.compile(model) if compile else model
        results[name] = train_for_seconds(
            runnable,
            train_ds,
            eval_ds,
            seconds=seconds,
            lr=lr,
            batch=batch,
            device=device,
            flops_per_token=flops,
            peak_flops=peak,
        )
        print(f"{name}: {results[name]}")
        del model, runnable
    return results


def test_equal_time_smoke_cpu(tmp_path):
    """The GPU comparison's code path, tiny and for two seconds each on CPU."""
    import numpy as np

    from fastgpt.data.tokens import TokenDataset, write_tokens

    rng = np.random.default_rng(0)
    write_tokens(tmp_path / "t.bin", rng.integers(0, 256, 20_000), vocab_size=256)
    ds = TokenDataset(tmp_path / "t.bin", 32)
    out = equal_time_pair(256, 32, 32, 2, 2, train_ds=ds, eval_ds=ds, seconds=2, batch=4, device="cpu", compile=False)
    assert set(out) == {"fastgpt", "nanogpt_reference"} and all(r["steps"] > 0 for r in out.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_equal_time_gpt2_small_gpu(benchmark):
    import os
    from pathlib import Path

    from fastgpt.data.tokens import TokenDataset, read_header

    data = os.environ.get("FASTGPT_GPU_DATA")
    if not data:
        pytest.skip("set FASTGPT_GPU_DATA to a directory with train.bin and eval.bin")
    vocab = read_header(Path(data) / "train.bin").vocab_size or 50257
    train_ds, eval_ds = TokenDataset(Path(data) / "train.bin", 1024), TokenDataset(Path(data) / "eval.bin", 1024)
    torch.backends.cuda.matmul.allow_tf32 = True
    seconds = float(os.environ.get("FASTGPT_GPU_SECONDS", "60"))
    out = benchmark.pedantic(
        equal_time_pair,
        args=(vocab, 1024, 768, 12, 12),
        kwargs=dict(train_ds=train_ds, eval_ds=eval_ds, seconds=seconds, batch=32, device="cuda", compile=True),
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update({f"{k}_{m}": v for k, r in out.items() for m, v in r.items()})
    ratio = out["fastgpt"]["val_loss"] / out["nanogpt_reference"]["val_loss"]
    print(f"validation loss ratio at equal time: {ratio:.3f} (bar: <= 0.8); MFU {out['fastgpt']['mfu']}")
