"""Generation: the KV cache gives the tokens of full recomputation, sampling rules, checkpoint-only CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastgpt import cli  # noqa: E402
from fastgpt.data.tokens import write_tokens  # noqa: E402
from fastgpt.gpt.generate import generate, generate_tokens, load_checkpoint, sample_next  # noqa: E402
from fastgpt.gpt.model import GPT, GPTConfig  # noqa: E402
from fastgpt.gpt.trainer import TrainConfig, train  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CAT = "the cat sat on the mat. "


def random_model(seed=0, **kw) -> GPT:
    """Untrained, with every weight non-zero, so greedy choices depend on the whole context."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{"vocab_size": 257, "seq_len": 64, "embed_dim": 32, "n_heads": 4, "num_layers": 2, **kw}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


@pytest.mark.parametrize("variant", [{}, {"norm": "layernorm", "activation": "swiglu", "tie_embeddings": True}])
def test_greedy_with_cache_equals_recomputing(variant):
    model = random_model(**variant)
    prompt = [5, 17, 200, 3, 99]
    cached = list(generate_tokens(model, prompt, 59, temperature=0))  # fills the 64-token context exactly
    full = list(generate_tokens(model, prompt, 59, temperature=0, use_cache=False))
    assert cached == full and len(cached) == 59
    assert len(set(cached)) > 3  # a non-degenerate sequence, so the comparison means something


def test_generation_runs_past_the_context():
    model = random_model()
    tokens = list(generate_tokens(model, [1, 2, 3], 200, temperature=1.0, generator=torch.Generator().manual_seed(0)))
    assert len(tokens) == 200 and all(0 <= t < 257 for t in tokens)


def test_stop_token_and_seeded_sampling():
    model = random_model()
    first = list(generate_tokens(model, [7], 30, temperature=0))
    stop = first[4]
    stopped = list(generate_tokens(model, [7], 30, temperature=0, stop_token=stop))
    assert stopped == first[: first.index(stop) + 1]

    def sample(seed):
        return list(
            generate_tokens(model, [7], 20, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(seed))
        )

    assert sample(1) == sample(1) and sample(1) != sample(2)
    assert model.training is False


def test_sample_next_filters():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.5]])
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, temperature=0).item() == 1
    assert {sample_next(logits, 1.0, top_k=1, generator=g).item() for _ in range(20)} == {1}
    assert {sample_next(logits, 1.0, top_p=0.01, generator=g).item() for _ in range(20)} == {1}
    assert {sample_next(logits, 1.0, top_k=2, generator=g).item() for _ in range(200)} == {1, 2}
    # top_p 0.8: p = [.08, .60, .22, .05] sorted .60 + .22 reaches it, the rest is cut
    assert {sample_next(logits, 1.0, top_p=0.8, generator=g).item() for _ in range(300)} == {1, 2}
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, temperature=-1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, byte_tokenizer) -> Path:
    """A tiny trained run whose tokenizer source and data are deleted afterwards: only the run remains."""
    d = tmp_path_factory.mktemp("gen")
    byte_tokenizer.save(d / "tok")
    text = CAT * 200
    ids = byte_tokenizer.encode_ordinary(text) + [256]
    write_tokens(d / "train.bin", np.array(ids), 257, 256)
    train(
        TrainConfig(
            device="cpu",
            tokenizer=str(d / "tok"),
            train_data=str(d / "train.bin"),
            eval_data=str(d / "train.bin"),
            out_dir=str(d / "runs"),
            experiment_name="cat",
            max_steps=40,
            batch_size=8,
            warmup_steps=5,
            eval_interval=40,
            learning_rate=1e-2,
        ),
        GPTConfig(embed_dim=32, n_heads=2, num_layers=2, seq_len=32),
    )
    shutil.rmtree(d / "tok")
    (d / "train.bin").unlink()
    return d / "runs" / "cat"


def fastgpt_cli(monkeypatch, capsys, *argv):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("train", "generate"))
    rc = cli.main([str(a) for a in argv] + ["--device", "cpu"])  # CPU even where CUDA exists: exact greedy output
    out, err = capsys.readouterr()
    return rc, out, err


def test_checkpoint_only_generation(run_dir, monkeypatch, capsys):
    rc, out, err = fastgpt_cli(
        monkeypatch,
        capsys,
        "generate",
        "--checkpoint",
        run_dir,
        "--prompt",
        "the cat",
        "--length",
        40,
        "--temperature",
        0,
    )
    assert rc == 0, err
    assert out.startswith("the cat") and len(out) > 40
    assert set(out.strip()) <= set(CAT)  # only the characters of its data: it learned them
    rc, out2, _ = fastgpt_cli(
        monkeypatch,
        capsys,
        "generate",
        "--model_path",
        run_dir / "last.pt",
        "--prompt",
        "the cat",
        "--length",
        40,
        "--temperature",
        0,
        "--no_cache",
    )
    assert rc == 0 and set(out2.strip()) <= set(CAT)
    rc, out, err = fastgpt_cli(
        monkeypatch, capsys, "generate", "--checkpoint", run_dir, "--num_samples", 2, "--seed", 0, "--length", 20
    )
    assert rc == 0 and out.count("-" * 40) == 1, err


def test_python_api_streams_pieces(run_dir):
    pieces = list(generate(run_dir, "the", length=30, temperature=0, device="cpu"))
    assert len(pieces) > 1 and set("".join(pieces)) <= set(CAT)
    model, tokenizer = load_checkpoint(run_dir, device="cpu")
    assert model.cfg.vocab_size == tokenizer.n_vocab == 257 and not model.training
    import fastgpt
    import fastgpt.gpt.generate

    # `fastgpt.generate(...)`: the module is callable, so the package attribute works as the function
    assert "".join(fastgpt.generate(run_dir, "the", length=30, temperature=0, device="cpu")) == "".join(pieces)


def test_flags_disagreeing_with_the_checkpoint(run_dir, tmp_path, monkeypatch, capsys, byte_tokenizer):
    rc, _, err = fastgpt_cli(monkeypatch, capsys, "generate", "--checkpoint", run_dir, "--embed_dim", 64)
    assert rc == 1 and "--embed_dim 64 disagrees with the checkpoint, which has embed_dim = 32" in err
    rc, _, err = fastgpt_cli(monkeypatch, capsys, "generate", "--checkpoint", run_dir, "--tgt_vocab_size", 50257)
    assert rc == 1 and "--tgt_vocab_size 50257" in err
    from fastgpt import Tokenizer

    Tokenizer.from_ranks({bytes([i]): i for i in range(256)}, pattern="gpt2").save(tmp_path / "other")
    rc, _, err = fastgpt_cli(
        monkeypatch, capsys, "generate", "--checkpoint", run_dir, "--tokenizer_path", tmp_path / "other"
    )
    assert rc == 1 and "is not the checkpoint's tokenizer" in err
    rc, _, err = fastgpt_cli(monkeypatch, capsys, "generate", "--checkpoint", tmp_path / "nothing")
    assert rc == 1 and "nothing: no such checkpoint" in err
    rc, _, err = fastgpt_cli(monkeypatch, capsys, "generate", "--checkpoint", tmp_path)
    assert rc == 1 and "no best.pt or last.pt" in err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--temperature", "nan"], "--temperature must be a finite number >= 0 (0 is greedy), got nan"),  # defect 4
        (["--temperature", "inf"], "--temperature must be a finite number >= 0 (0 is greedy), got inf"),  # defect 9
        (["--temperature", "-1"], "--temperature must be a finite number >= 0 (0 is greedy), got -1.0"),
        (["--top_k", "-3"], "--top_k must be >= 0 (0 keeps every token), got -3"),  # defect 9
        (["--top_p", "0"], "--top_p must be in (0, 1] (1 keeps every token), got 0.0"),  # defect 9
        (["--top_p", "2"], "--top_p must be in (0, 1] (1 keeps every token), got 2.0"),  # defect 9
        (["--length", "-5"], "--length must be >= 0 new tokens, got -5"),  # defect 21
    ],
)
def test_bad_sampling_flags_are_one_clear_line_before_any_output(run_dir, monkeypatch, capsys, flags, message):
    """Defects 4, 9 and 21: nan crashed in torch.multinomial; inf, top_k -3, top_p 0 and 2 were
    accepted; --length -5 printed the prompt first and named max_new_tokens."""
    rc, out, err = fastgpt_cli(monkeypatch, capsys, "generate", "--checkpoint", run_dir, "--prompt", "the cat", *flags)
    assert rc == 1 and out == "" and "Traceback" not in err
    assert err.strip() == f"fastgpt: error: {message}"
    with pytest.raises(ValueError, match="must be"):
        next(generate(run_dir, "the", **{f[0].lstrip("-"): type_of(f[0])(f[1]) for f in [flags]}, device="cpu"))


def type_of(flag: str):
    return {"--top_k": int, "--length": int}.get(flag, float)


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, bytes(range(256)) * 40], ids=["empty", "zeros", "random"])
def test_damaged_checkpoint_is_one_clear_error_naming_it(run_dir, tmp_path, monkeypatch, capsys, content):
    """Defect 3: an empty or random last.pt raised EOFError / UnpicklingError tracebacks."""
    shutil.copytree(run_dir, tmp_path / "run")
    (tmp_path / "run" / "best.pt").unlink()
    (tmp_path / "run" / "last.pt").write_bytes(content)
    rc, out, err = fastgpt_cli(monkeypatch, capsys, "generate", "--checkpoint", tmp_path / "run", "--length", 5)
    assert rc == 1 and out == "" and "Traceback" not in err
    line = err.strip()
    assert line.startswith(f"fastgpt: error: {tmp_path / 'run' / 'last.pt'}: not a readable checkpoint"), line
    assert len(err.strip().splitlines()) == 1
