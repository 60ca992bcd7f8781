"""`fastgpt train`: train a GPT on `.bin` token files (torch imported only when it runs)."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  fastgpt train --tokenizer artifacts/tokenizer --train_data data/train.bin --eval_data data/eval.bin \\
      --experiment_name my_gpt --max_steps 2000 --batch_size 32
  fastgpt train --tokenizer artifacts/tokenizer --train_data data/train.bin --experiment_name my_gpt --resume
  torchrun --nproc_per_node 8 -m fastgpt train --tokenizer artifacts/tokenizer --train_data 'data/train_*.bin' ...

The run directory (out_dir/experiment_name) holds config.json, tokenizer/, last.pt, best.pt,
metrics.jsonl and loss.png; `fastgpt generate --checkpoint` needs nothing else.
"""

# (flag, type, help). Defaults live in GPTConfig / TrainConfig; a test checks that every
# field of both has a flag here, so the command line and the Python API cannot drift.
MODEL_FLAGS = (
    ("embed_dim", int, "width of the residual stream (384)"),
    ("n_heads", int, "attention heads; embed_dim / n_heads must be even (6)"),
    ("num_layers", int, "transformer blocks (6)"),
    ("expansion_factor", int, "MLP width as a multiple of embed_dim (4)"),
    ("seq_len", int, "context length in tokens (256)"),
    ("dropout_rate", float, "dropout probability (0.0)"),
    ("rope_base", float, "rotary embedding base (10000)"),
    ("norm", str, "rmsnorm (parameter-free, default) or layernorm"),
    ("activation", str, "relu2 (default), gelu or swiglu"),
    ("qk_norm", bool, "RMS-normalise queries and keys (on)"),
    ("tie_embeddings", bool, "share the input embedding and output head (off)"),
    ("vocab_multiple", int, "pad the vocabulary to a multiple of this (64)"),
)
TRAIN_FLAGS = (
    ("tokenizer", str, "tokenizer directory (its vocabulary sizes the model)"),
    ("train_data", str, ".bin file, glob or directory of .bin shards"),
    ("eval_data", str, "validation .bin file or glob (loss, perplexity, bits per byte)"),
    ("experiment_name", str, "name of the run directory (gpt)"),
    ("out_dir", str, "parent of run directories (runs)"),
    ("epochs", float, "passes over the training data (1 when no budget is given)"),
    ("max_steps", int, "optimizer steps"),
    ("max_tokens", int, "training tokens"),
    (
        "max_minutes",
        float,
        "wall-clock budget: the run is sized (and re-planned) to end, evaluated and saved, within it",
    ),
    ("batch_size", int, "sequences per micro-batch per device (64)"),
    ("total_batch_tokens", int, "tokens per optimizer step, reached by gradient accumulation"),
    ("optimizer", str, "muon (Muon on hidden matrices, AdamW on the rest; default) or adamw"),
    ("learning_rate", float, "AdamW peak: all parameters with adamw, gains and biases with muon (3e-3)"),
    ("muon_lr", float, "Muon peak for the hidden weight matrices (0.02)"),
    ("muon_weight_decay", float, "Muon's decoupled weight decay (0)"),
    ("embedding_lr", float, "with muon: AdamW peak for the embedding at width 768, x sqrt(768/width) (0.2)"),
    ("head_lr", float, "with muon: AdamW peak for the output head at width 768, x sqrt(768/width) (0.004)"),
    ("schedule", str, "wsd (warmup, constant, linear cooldown; default) or cosine"),
    ("cooldown_frac", float, "wsd: fraction of the steps spent cooling down (0.4)"),
    ("min_lr_ratio", float, "final learning rate as a fraction of the peak (0.1)"),
    ("warmup_steps", int, "linear warmup steps (100)"),
    ("weight_decay", float, "AdamW weight decay on matrices and embeddings (0.1)"),
    ("beta1", float, "AdamW beta1 (0.9)"),
    ("beta2", float, "AdamW beta2 (0.95)"),
    ("grad_clip", float, "gradient norm clip, 0 to disable (1.0)"),
    ("eval_interval", int, "steps between evaluations and checkpoints (250)"),
    ("evals", int, "instead of --eval_interval: this many evaluations spread over the run, the last at the end"),
    ("eval_batches", int, "batches per evaluation (20)"),
    ("log_interval", int, "steps between loss reads and metrics lines (10)"),
    ("device", str, "auto, cpu, cuda, cuda:N or mps (auto)"),
    ("compile", bool, "torch.compile the model (off)"),
    ("seed", int, "random seed (1337)"),
    ("shuffle", bool, "random windows; --no-shuffle reads the data in order (on)"),
    ("headerless", bool, "data files are raw uint16 tokens without a header, as nanoGPT writes (off)"),
    ("resume", bool, "continue the run in out_dir/experiment_name exactly where it stopped"),
    ("tgt_vocab_size", int, "expected vocabulary size; an error if the tokenizer disagrees"),
)


# GPTConfig checks these too; listed here so `--help` shows them without importing torch.
CHOICES = {
    "norm": ("rmsnorm", "layernorm"),
    "activation": ("relu2", "gelu", "swiglu"),
    "optimizer": ("adamw", "muon"),
    "schedule": ("wsd", "cosine"),
}
REQUIRED = ("tokenizer", "train_data")


def add_flags(parser: argparse.ArgumentParser, flags: tuple) -> None:
    for name, kind, text in flags:
        if kind is bool:
            parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(f"--{name}", type=kind, help=text, choices=CHOICES.get(name), required=name in REQUIRED)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a GPT on pretokenized .bin files",
        description="Train a GPT with rotary embeddings on .bin token files; resumable, DDP under torchrun.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # Unset flags stay absent, so on --resume only what the user typed is checked against the checkpoint.
        argument_default=argparse.SUPPRESS,
    )
    add_flags(p.add_argument_group("model"), MODEL_FLAGS)
    add_flags(p.add_argument_group("training"), TRAIN_FLAGS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys
    from dataclasses import fields

    from fastgpt.gpt.model import GPTConfig
    from fastgpt.gpt.trainer import EXIT_INTERRUPTED, TrainConfig, train

    given = vars(args)
    model_kw = {f.name: given[f.name] for f in fields(GPTConfig) if f.name in given}
    train_kw = {f.name: given[f.name] for f in fields(TrainConfig) if f.name in given}
    summary = train(
        TrainConfig(**train_kw), GPTConfig(**model_kw), model_overrides=set(model_kw), train_overrides=set(train_kw)
    )
    if summary.get("val_loss") is not None:
        detail = f"val loss {summary['val_loss']:.4f}, {summary['val_bpb']:.4f} bits/byte"
    else:
        detail = f"train loss {summary['loss']:.4f}"
    master = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    if summary["stopped_by"] == "signal":
        if master:
            print(
                f"stopped at step {summary['step']}/{summary['max_steps']}: {detail}; run saved in {summary['run_dir']}"
            )
            print(f"fastgpt: interrupted; to continue: {resume_command(given)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if master:
        state = "stopped" if summary["interrupted"] else "finished"
        print(
            f"{state} at step {summary['step']}/{summary['max_steps']} in {summary['seconds']:.1f} s: {detail}; run saved in {summary['run_dir']}"
        )
    return 0


def resume_command(given: dict) -> str:
    """The `fastgpt train` command line that continues this run (the flags given, plus --resume)."""
    import shlex

    words = ["fastgpt", "train"]
    for name, _, _ in MODEL_FLAGS + TRAIN_FLAGS:
        if name not in given or name == "resume":
            continue
        value = given[name]
        if isinstance(value, bool):
            words.append(f"--{name}" if value else f"--no-{name}")
        else:
            words += [f"--{name}", str(value)]
    return shlex.join(words + ["--resume"])
