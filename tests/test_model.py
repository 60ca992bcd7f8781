"""fastgpt.gpt.model: shapes, initialisation, KV cache equivalence, accounting, config checks."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from fastgpt.gpt.model import GPT, GPTConfig  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = dict(vocab_size=257, seq_len=32, embed_dim=32, n_heads=4, num_layers=2)
VARIANTS = [
    {},
    dict(norm="layernorm", activation="gelu", tie_embeddings=True, qk_norm=False),
    dict(activation="swiglu"),
]


def perturbed(cfg: GPTConfig, seed: int = 0) -> GPT:
    """A model whose zero-initialised weights are made non-zero, so every path matters."""
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_and_initial_loss_is_uniform(variant):
    model = GPT(GPTConfig(**TINY, **variant))
    idx = torch.randint(0, 257, (3, 20))
    assert model(idx).shape == (3, 20, 257)  # padded to 320 rows inside, cut back to 257
    assert model.lm_head.weight.shape[0] == 320
    if not variant.get("tie_embeddings"):
        # zero head: uniform prediction, loss exactly ln(vocab)
        assert model(idx, idx).item() == pytest.approx(math.log(257), abs=1e-5)
    assert model(idx, idx, reduction="none").shape == (3, 20)


@pytest.mark.parametrize("variant", VARIANTS)
def test_kv_cache_matches_full_forward(variant):
    model = perturbed(GPTConfig(**TINY, **variant))
    idx = torch.randint(0, 257, (2, 32))
    with torch.no_grad():
        full = model(idx)
        cache = model.make_cache(batch_size=2)
        chunks = [(0, 9), (9, 14), *((i, i + 1) for i in range(14, 32))]  # prefill, a chunk, then one by one
        incremental = torch.cat([model.logits(model.hidden_states(idx[:, a:b], cache)) for a, b in chunks], dim=1)
    assert cache.pos == 32
    torch.testing.assert_close(incremental, full, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="exceed the context length 32"):
        model.hidden_states(idx[:, :1], cache)


def test_sequence_longer_than_context_is_an_error():
    model = GPT(GPTConfig(**TINY))
    with pytest.raises(ValueError, match="33 positions exceed the context length 32"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="exceeds the model's seq_len"):
        model.make_cache(1, max_len=64)


def test_accounting():
    untied, tied = GPT(GPTConfig(**TINY)), GPT(GPTConfig(**TINY, tie_embeddings=True))
    assert untied.num_params() - tied.num_params() == 320 * 32
    per_layer = 32 * 96 + 32 * 32 + 2 * 32 * 128  # qkv, proj, mlp in and out
    matmul = 2 * per_layer + 320 * 32  # + the head
    assert untied.flops_per_token() == 6 * matmul + 12 * 2 * 32 * 32
    groups = untied.optim_groups(0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(untied.parameters()))
    assert all(p.dim() >= 2 for p in groups[0]["params"]) and all(p.dim() < 2 for p in groups[1]["params"])


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(embed_dim=30), "not divisible by n_heads"),
        (dict(embed_dim=36, n_heads=4), "must be even"),
        (dict(norm="batchnorm"), "norm must be one of"),
        (dict(activation="tanh"), "activation must be one of"),
        (dict(num_layers=0), "num_layers must be positive"),
        (dict(dropout_rate=1.0), "dropout_rate"),
    ],
)
def test_config_errors(change, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{**TINY, **change})


def test_learns_a_fixed_batch():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY))
    opt = torch.optim.AdamW(model.optim_groups(0.0), lr=1e-2)
    idx = torch.randint(0, 257, (4, 33))
    for _ in range(40):
        loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < 1.0  # from ln(257) = 5.5


def test_cpu_kernels_match_autograd():
    """The hand-written CPU backward passes equal autograd through the plain formulas."""
    from fastgpt.gpt.model import relu_squared, rms_norm

    x = torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 5, 16, dtype=torch.float64)
    for fast, plain in [
        (rms_norm, lambda t: t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + torch.finfo(t.dtype).eps)),
        (relu_squared, lambda t: torch.relu(t) ** 2),
    ]:
        torch.testing.assert_close(fast(x), plain(x))
        torch.testing.assert_close(torch.autograd.grad(fast(x), x, g)[0], torch.autograd.grad(plain(x), x, g)[0])
    assert torch.autograd.gradcheck(rms_norm, (x,)) and torch.autograd.gradcheck(relu_squared, (x,))


@pytest.mark.parametrize("qk_norm", [True, False])
def test_fused_qkv_cpu_kernel_matches_autograd(qk_norm):
    """The CPU attention input op (QK-norm, rotation, values) equals autograd through the
    plain formulas, forward and backward, and passes gradcheck."""
    from fastgpt.gpt.model import _QKVCPU, apply_rotary, rms_norm, rotary_tables

    B, T, nh, hs = 2, 5, 2, 8
    qkv = torch.randn(B, T, 3 * nh * hs, dtype=torch.float64, requires_grad=True)
    cos, sin = (t.double() for t in rotary_tables(hs, T, 10000.0))

    def plain(x):
        x = x.view(B, T, 3, nh, hs)
        qk = rms_norm(x[:, :, :2]) if qk_norm else x[:, :, :2]
        q, k = apply_rotary(qk, cos, sin).unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), x[:, :, 2].transpose(1, 2)

    fast = _QKVCPU.apply(qkv, cos, sin, nh, qk_norm)
    grads = [torch.randn(B, nh, T, hs, dtype=torch.float64) for _ in range(3)]
    for a, b in zip(fast, plain(qkv)):
        torch.testing.assert_close(a, b)
    got = torch.autograd.grad(fast, qkv, grads)[0]
    want = torch.autograd.grad(plain(qkv), qkv, grads)[0]
    torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(lambda x: _QKVCPU.apply(x, cos, sin, nh, qk_norm), (qkv,))


@pytest.mark.parametrize("vocab", [50, 64])
def test_head_cross_entropy_cpu_kernel_matches_autograd(vocab):
    """The CPU head + loss op equals F.cross_entropy over the sliced logits, loss and both
    gradients (padding rows get none), and a model's loss takes it or the plain path alike."""
    import torch.nn.functional as F

    from fastgpt.gpt.model import head_cross_entropy

    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(64, 16, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, vocab, (37,))
    got = head_cross_entropy(h, w, t, vocab)
    want = F.cross_entropy((h @ w.t())[:, :vocab], t)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got * 3, (h, w)), torch.autograd.grad(want * 3, (h, w))):
        torch.testing.assert_close(a, b)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab, seq_len=8, embed_dim=16, n_heads=2, num_layers=1, vocab_multiple=64))
    with torch.no_grad():
        model.lm_head.weight.normal_()
    idx, tgt = torch.randint(0, vocab, (2, 8)), torch.randint(0, vocab, (2, 8))
    fused = model(idx, tgt)  # the fused op (float32 on CPU)
    plain = model(idx, tgt, reduction="none").mean()  # the plain path
    torch.testing.assert_close(fused, plain)
    g1 = torch.autograd.grad(fused, model.lm_head.weight)[0]
    g2 = torch.autograd.grad(plain, model.lm_head.weight)[0]
    torch.testing.assert_close(g1, g2)


def test_param_kinds_cover_every_parameter_once():
    for tied in (False, True):
        model = GPT(
            GPTConfig(
                vocab_size=100, embed_dim=32, n_heads=2, num_layers=2, seq_len=16, norm="layernorm", tie_embeddings=tied
            )
        )
        kinds = model.param_kinds()
        ids = [id(p) for group in kinds.values() for p in group]
        assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each once, a tied matrix too
        assert all(p.dim() == 2 for p in kinds["matrix"]) and len(kinds["matrix"]) == 8
        assert kinds["head"] == [model.lm_head.weight] and (kinds["embedding"] == []) == tied
