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

from fastgpt.generate import generate_tokens  # noqa: E402
from fastgpt.model import GPT, GPTConfig  # noqa: E402

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
                    ln_1=nn.LayerNorm(width), attn=nn.Linear(width, 3 * width), proj=nn.Linear(width, width),
                    ln_2=nn.LayerNorm(width), fc=nn.Linear(width, 4 * width), out=nn.Linear(4 * width, width),
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
