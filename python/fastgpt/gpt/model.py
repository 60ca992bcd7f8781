"""A GPT with rotary position embeddings, small and fast to train.

Notable choices (the defaults are the recipe that learned the most per second in
our runs; each can be switched back to the GPT-2 one through `GPTConfig`):
- rotary position embeddings instead of learned positions (relative, and free of parameters);
- parameter-free RMSNorm before each block, plus QK-norm, which lets a higher learning rate train stably;
- ReLU² MLP (cheaper than GELU and learns as well); GELU and SwiGLU are options;
- untied input embedding and output head;
- zero-initialised output projections and head, so every block starts as the identity;
- vocabulary padded up to a multiple of 64 for matmul speed, logits cut back to the real size;
- attention through `scaled_dot_product_attention` (flash/cuDNN kernels on GPU), or the
  `flash-attn` package when it is importable and the tensors are on CUDA;
- a preallocated KV cache for generation (`GPT.make_cache`);
- on CPU, hand-written backward passes for RMSNorm, ReLU², the attention input (QK-norm,
  rotation, qkv split) and the head + cross-entropy (no zero-filled logits gradient), each
  checked against autograd in tests/test_model.py.

Trained by default with Muon on the blocks' hidden matrices and AdamW on the embedding and
head (`fastgpt.gpt.optim`). Measured at equal wall time against a plain nanoGPT-style GPT at
its best learning rate (`fastgpt.gpt.baseline`; 2 shared CPU cores, one thread per run, the
demo's shape and data; README, "Learning per second"): validation loss 0.79-0.82x the
reference's with Muon, 0.97x with AdamW. Tokens/s with Muon: 0.97x (75 s, `compare(parallel=True)`,
load 2.0-3.5) and 0.98x (90 s, this code and the previous one side by side, load 2.1-3.2, where
the previous code ran at 0.88x), after the CPU head + loss op and the faster rotation below;
Muon's Newton-Schulz iterations still cost about 5% of a step, which the model's kernels win back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

try:  # optional: never required, used for CUDA training when installed
    from flash_attn import flash_attn_func as _flash_attn_func
except Exception:  # ImportError, or a build that does not match the installed CUDA/torch
    _flash_attn_func = None

__all__ = ["GPTConfig", "GPT", "KVCache", "flops_per_token", "decay_groups"]

NORMS = ("rmsnorm", "layernorm")
ACTIVATIONS = ("relu2", "gelu", "swiglu")


@dataclass
class GPTConfig:
    vocab_size: int = 32768  # set from the tokenizer (Tokenizer.n_vocab); padded internally
    seq_len: int = 256  # context length; rotary tables and the KV cache are this long
    embed_dim: int = 384
    n_heads: int = 6
    num_layers: int = 6
    expansion_factor: int = 4  # MLP hidden width = expansion_factor * embed_dim (2/3 of it for SwiGLU)
    dropout_rate: float = 0.0  # one pass over plenty of data does not overfit; dropout only slows learning
    rope_base: float = 10000.0  # rotary base; larger for contexts much longer than a few thousand
    norm: str = "rmsnorm"  # "rmsnorm" (parameter-free, cheaper) or "layernorm" (GPT-2's, with weight and bias)
    activation: str = "relu2"  # "relu2" (fastest to learn per second), "gelu" (GPT-2) or "swiglu" (LLaMA)
    qk_norm: bool = True  # normalise queries and keys: stable attention logits at high learning rates
    tie_embeddings: bool = False  # untied learns faster per step; tied saves vocab * embed_dim parameters
    vocab_multiple: int = 64  # pad the embedding rows to a multiple of this: tensor-core friendly shapes

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "seq_len",
            "embed_dim",
            "n_heads",
            "num_layers",
            "expansion_factor",
            "vocab_multiple",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.embed_dim % self.n_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by n_heads {self.n_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head size embed_dim / n_heads = {self.head_dim} must be even for rotary embeddings")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.n_heads

    @property
    def padded_vocab_size(self) -> int:
        return -(-self.vocab_size // self.vocab_multiple) * self.vocab_multiple

    @property
    def hidden_dim(self) -> int:
        h = self.expansion_factor * self.embed_dim
        # SwiGLU has three matrices instead of two: 2/3 the width keeps the parameter count.
        return -(-(2 * h // 3) // 8) * 8 if self.activation == "swiglu" else h

    def to_dict(self) -> dict:
        return asdict(self)


class _RMSNormCPU(torch.autograd.Function):
    """RMSNorm with a hand-written backward: on CPU, where torch has no fused kernel,
    autograd through the decomposed ops costs about twice as much (4% of a training step)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rstd = _rstd(x)
        y = x * rstd
        ctx.save_for_backward(y, rstd)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        y, rstd = ctx.saved_tensors
        return _rms_norm_backward(grad, y, rstd)


def _rstd(x: torch.Tensor) -> torch.Tensor:
    """1 / sqrt(mean(x^2) + eps) over the last dimension, from one fused norm pass."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return norm.square_().div_(x.size(-1)).add_(torch.finfo(x.dtype).eps).rsqrt_()


def _rms_norm_backward(grad: torch.Tensor, y: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
    """(grad - y * mean(grad * y)) * rstd, in two fused passes over the tensor."""
    dot = torch.linalg.vecdot(grad, y).unsqueeze_(-1).div_(-y.size(-1))
    return torch.addcmul(grad, y, dot).mul_(rstd)


class _ReLUSquaredCPU(torch.autograd.Function):
    """relu(x)^2 in one saved tensor and two backward ops instead of autograd's four passes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        r = torch.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (r,) = ctx.saved_tensors
        return torch.mul(grad, r).mul_(2)  # one new tensor, not two


class _QKVCPU(torch.autograd.Function):
    """Queries and keys RMS-normed (optional) and rotated, plus values, from the fused qkv
    projection, in one op with a hand-written backward. On CPU autograd through the
    slices, cat and products costs a zero-filled buffer per slice; this writes the
    gradient of qkv once (about 10% of a step at the demo's shape)."""

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, nh: int, norm: bool):
        B, T, C3 = qkv.shape
        hs = C3 // (3 * nh)
        d = hs // 2
        x = qkv.view(B, T, 3, nh, hs)
        qk = x[:, :, :2]
        rstd = None
        if norm:
            rstd = _rstd(qk)
            n = qk * rstd
        else:
            n = qk.contiguous()
        # Tables laid out like n's (T, 2, nh, ...) rows: the cos product then runs over whole
        # rows; only the sin products go half a head (d floats) at a time. 35% faster than four
        # half-head products.
        cos2 = torch.cat((cos, cos), -1).to(n.dtype).view(T, 1, 1, hs).expand(T, 2, nh, hs).contiguous()
        sin1 = sin.to(n.dtype).view(T, 1, 1, d).expand(T, 2, nh, d).contiguous()
        out = n * cos2
        n1, n2 = n[..., :d], n[..., d:]
        out[..., :d].addcmul_(n2, sin1)
        out[..., d:].addcmul_(n1, sin1, value=-1)
        ctx.save_for_backward(n, rstd, cos2, sin1)
        ctx.norm = norm
        v = x[:, :, 2].transpose(1, 2).contiguous()
        return out[:, :, 0].transpose(1, 2), out[:, :, 1].transpose(1, 2), v  # each (B, nh, T, hs)

    @staticmethod
    def backward(ctx, gq: torch.Tensor, gk: torch.Tensor, gv: torch.Tensor):
        n, rstd, cos2, sin1 = ctx.saved_tensors
        B, T, _, nh, hs = n.shape
        d = hs // 2
        g = torch.empty_like(n)
        g[:, :, 0] = gq.transpose(1, 2)
        g[:, :, 1] = gk.transpose(1, 2)
        dn = g * cos2  # the rotation's transpose: rotate the gradient back
        g1, g2 = g[..., :d], g[..., d:]
        dn[..., :d].addcmul_(g2, sin1, value=-1)
        dn[..., d:].addcmul_(g1, sin1)
        dx = torch.empty(B, T, 3, nh, hs, dtype=n.dtype, device=n.device)
        if ctx.norm:
            dx[:, :, :2] = _rms_norm_backward(dn, n, rstd)
        else:
            dx[:, :, :2] = dn
        dx[:, :, 2] = gv.transpose(1, 2)
        return dx.view(B, T, 3 * nh * hs), None, None, None, None


class _HeadCrossEntropyCPU(torch.autograd.Function):
    """Mean cross-entropy of the head's logits h @ weight[:vocab].T, with a hand-written backward.
    On CPU, F.cross_entropy's backward zero-fills a (tokens x vocab) gradient, scatters into it and
    runs log_softmax's backward over three such tensors; here the saved log-probabilities turn
    into the gradient in place (exp, minus one at the targets), and the 1/N scale goes onto the
    small products. About 5% of a step at the demo's shape."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int) -> torch.Tensor:
        logp = torch.mm(h, weight[:vocab].t())
        torch._log_softmax(logp, 1, False, out=logp)  # row by row: safe in place
        ctx.save_for_backward(h, weight, logp, targets)
        return logp.gather(1, targets.unsqueeze(1)).mean().neg()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, weight, logp, targets = ctx.saved_tensors
        n, vocab = logp.shape
        dlogits = logp.exp_()  # softmax; the saved tensor is used once (a second backward fails loudly)
        dlogits.view(-1)[targets + torch.arange(0, n * vocab, vocab, device=targets.device)] -= 1.0
        scale = grad / n
        dh = torch.mm(dlogits, weight[:vocab]).mul_(scale) if ctx.needs_input_grad[0] else None
        dw = None
        if ctx.needs_input_grad[1]:
            dw = torch.zeros_like(weight) if vocab < weight.size(0) else torch.empty_like(weight)
            torch.mm(dlogits.t(), h, out=dw[:vocab]).mul_(scale)
        return dh, dw, None, None


def head_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int) -> torch.Tensor:
    """Mean cross-entropy of logits h @ weight[:vocab].T (h: (N, C), targets: (N,) in [0, vocab))."""
    return _HeadCrossEntropyCPU.apply(h, weight, targets, vocab)


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free RMSNorm over the last dimension (eps: the dtype's machine epsilon, as F.rms_norm)."""
    if x.is_cuda and hasattr(F, "rms_norm"):  # fused on GPU, and what torch.compile optimises best
        return F.rms_norm(x, (x.size(-1),))
    return _RMSNormCPU.apply(x)


def relu_squared(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x).square() if x.is_cuda else _ReLUSquaredCPU.apply(x)


class RMSNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x)


def make_norm(cfg: GPTConfig) -> nn.Module:
    return RMSNorm() if cfg.norm == "rmsnorm" else nn.LayerNorm(cfg.embed_dim)


def rotary_tables(head_dim: int, length: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (length, head_dim / 2), angles computed in float64 for accuracy."""
    inv_freq = base ** -(torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float64), inv_freq)  # (T, hs/2)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[i], x[i + hs/2]) of x (B, T, ..., hs) by the angles of positions T."""
    d = x.size(-1) // 2
    shape = (x.size(1),) + (1,) * (x.dim() - 3) + (d,)  # broadcast over batch and heads
    cos, sin = cos.view(shape).to(x.dtype), sin.view(shape).to(x.dtype)
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


def _autocast_dtype() -> torch.dtype | None:
    """The CUDA autocast dtype when autocast is on, else None."""
    try:
        return torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
    except TypeError:  # torch < 2.4 has only the GPU-specific functions
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


class KVCache:
    """Keys and values of every layer for the positions seen so far, preallocated to `max_len`."""

    def __init__(self, cfg: GPTConfig, batch_size: int, max_len: int, device: torch.device, dtype: torch.dtype):
        shape = (cfg.num_layers, batch_size, cfg.n_heads, max_len, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0  # positions filled; advanced by GPT after all layers have written

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) at the current position; return all keys and values so far."""
        end = self.pos + k.size(2)
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def reset(self) -> None:
        self.pos = 0


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim, bias=False)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        B, T, C = x.shape
        nh, hs = self.cfg.n_heads, self.cfg.head_dim
        dropout = self.cfg.dropout_rate if self.training else 0.0
        if not x.is_cuda and cache is None:
            q, k, v = _QKVCPU.apply(self.qkv(x), cos, sin, nh, self.cfg.qk_norm)  # each (B, nh, T, hs)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=T > 1)
            return self.proj(y.transpose(1, 2).reshape(B, T, C))
        qkv = self.qkv(x).view(B, T, 3, nh, hs)
        qk, v = qkv[:, :, :2], qkv[:, :, 2]  # (B, T, 2, nh, hs): queries and keys share one norm and one rotation
        if self.cfg.qk_norm:
            qk = rms_norm(qk)
        q, k = apply_rotary(qk, cos, sin).unbind(2)  # each (B, T, nh, hs)
        if cache is None and _flash_attn_func is not None and x.is_cuda:
            dtype = _autocast_dtype() or q.dtype  # the residual stream stays fp32 under autocast
            if dtype in (torch.float16, torch.bfloat16):  # flash-attn has only half-precision kernels
                q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
                y = _flash_attn_func(q, k, v, dropout_p=dropout, causal=True)  # takes (B, T, nh, hs) as is
                return self.proj(y.reshape(B, T, C))
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        mask, causal = None, T > 1
        if cache is not None:
            start = cache.pos
            k, v = cache.update(layer, k, v)  # (B, nh, start + T, hs)
            if start > 0 and T > 1:  # a chunk after a prefix: query i sees keys up to start + i
                mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
                causal = False
            elif start > 0:  # one new token sees everything cached
                causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.activation = cfg.activation
        width = cfg.hidden_dim * (2 if cfg.activation == "swiglu" else 1)  # gate and value in one matmul
        self.fc = nn.Linear(cfg.embed_dim, width, bias=False)
        self.proj = nn.Linear(cfg.hidden_dim, cfg.embed_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if self.activation == "relu2":
            h = relu_squared(h)
        elif self.activation == "gelu":
            h = F.gelu(h)
        else:
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        return self.proj(h)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm1, self.norm2 = make_norm(cfg), make_norm(cfg)
        self.attn, self.mlp = Attention(cfg), MLP(cfg)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def forward(self, x, cos, sin, cache, layer):
        x = x + self.dropout(self.attn(self.norm1(x), cos, sin, cache, layer))
        return x + self.dropout(self.mlp(self.norm2(x)))


class GPT(nn.Module):
    cos: torch.Tensor  # buffers, declared for the type checker
    sin: torch.Tensor

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.padded_vocab_size, cfg.embed_dim)
        self.dropout = nn.Dropout(cfg.dropout_rate)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm_f = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.embed_dim, cfg.padded_vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        cos, sin = rotary_tables(cfg.head_dim, cfg.seq_len, cfg.rope_base)
        # Not persistent: derived from the config, so checkpoints stay small and exact.
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2's N(0, 0.02) for inputs; zeros for every residual output projection and
        the untied head, so each block starts as the identity and the first loss is ln(vocab)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            assert isinstance(block, Block)
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.proj.weight)
        if not self.cfg.tie_embeddings:
            nn.init.zeros_(self.lm_head.weight)

    def num_params(self) -> int:
        """Distinct parameters (a tied head is counted once)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> int:
        return flops_per_token(self, self.cfg)

    def make_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        max_len = max_len or self.cfg.seq_len
        if max_len > self.cfg.seq_len:
            raise ValueError(f"cache length {max_len} exceeds the model's seq_len {self.cfg.seq_len}")
        dtype = self.wte.weight.dtype
        return KVCache(self.cfg, batch_size, max_len, self.wte.weight.device, dtype)

    def hidden_states(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Final normalised hidden states (B, T, C) for token ids idx (B, T)."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        limit = cache.max_len if cache is not None else self.cfg.seq_len
        if start + T > limit:
            raise ValueError(f"{start + T} positions exceed the context length {limit}")
        cos, sin = self.get_buffer("cos")[start : start + T], self.get_buffer("sin")[start : start + T]
        x = self.dropout(self.wte(idx))  # (B, T, C)
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, layer)
        if cache is not None:
            cache.pos += T
        return self.norm_f(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Float32 logits over the real vocabulary (padding rows cut off)."""
        logits = self.lm_head(h).float()
        return logits[..., : self.cfg.vocab_size] if self.cfg.padded_vocab_size != self.cfg.vocab_size else logits

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, reduction: str = "mean"
    ) -> torch.Tensor:
        """Logits (B, T, vocab) when `targets` is None, else the cross-entropy loss."""
        h = self.hidden_states(idx)
        if targets is None:
            return self.logits(h)
        weight = self.lm_head.weight
        # Eager CPU fp32 only: torch.compile fuses the plain loss itself (and the target check would
        # break its graph); negative targets (ignore_index) take the plain path.
        eager_cpu = h.device.type == "cpu" and h.dtype == weight.dtype == torch.float32
        eager_cpu = eager_cpu and not torch.compiler.is_compiling()
        if reduction == "mean" and eager_cpu and int(targets.min()) >= 0:
            return head_cross_entropy(h.reshape(-1, h.size(-1)), weight, targets.reshape(-1), self.cfg.vocab_size)
        logits = self.logits(h)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)
        return loss if reduction != "none" else loss.view(targets.shape)

    def optim_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay matrices and embeddings; never norms or biases (decaying a gain only hurts)."""
        return decay_groups(self, weight_decay)

    def param_kinds(self) -> dict[str, list[torch.Tensor]]:
        """Parameters by the optimizer they want: `matrix` (the blocks' hidden weight matrices, for
        Muon), `embedding` (empty when tied), `head` and `scalar` (norm gains and biases)."""
        kinds: dict[str, list[torch.Tensor]] = {
            "matrix": [],
            "embedding": [],
            "head": [self.lm_head.weight],
            "scalar": [],
        }
        if not self.cfg.tie_embeddings:  # a tied matrix is the head too: it gets the head's (lower) rate
            kinds["embedding"].append(self.wte.weight)
        for p in self.blocks.parameters():
            kinds["matrix" if p.dim() == 2 else "scalar"].append(p)
        kinds["scalar"] += list(self.norm_f.parameters())
        return kinds


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """nanoGPT's AdamW groups for any model: weight decay on tensors of 2+ dimensions only."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def flops_per_token(model: nn.Module, cfg: GPTConfig) -> int:
    """Training FLOPs per token of any GPT-shaped model: 6 per matmul weight (forward + backward)
    plus attention scores and values, 12 * layers * width * seq_len (PaLM's accounting, as
    nanoGPT's MFU). A tied head counts once per use: it is a matmul weight."""
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return 6 * matmul + 12 * cfg.num_layers * cfg.embed_dim * cfg.seq_len
