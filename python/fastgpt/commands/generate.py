"""`fastgpt generate`: stream text from a trained checkpoint (torch imported only when it runs)."""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  fastgpt generate --checkpoint runs/my_gpt --prompt "Once upon a time" --length 200
  fastgpt generate --checkpoint runs/my_gpt --prompt "def main" --temperature 0 --length 64
  fastgpt generate --checkpoint runs/my_gpt/last.pt --num_samples 3 --seed 0 --top_p 0.95
"""

# The original command's model flags: accepted, and checked against the checkpoint.
CHECKED_MODEL_FLAGS = ("embed_dim", "n_heads", "num_layers", "expansion_factor", "seq_len")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate text from a trained checkpoint",
        description="Generate text from a training run; the checkpoint carries the model config and tokenizer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        "--model_path",
        dest="checkpoint",
        required=True,
        help="run directory (best.pt, else last.pt) or a .pt file inside one",
    )
    p.add_argument("--prompt", default="", help="text to continue (empty: start a new document)")
    p.add_argument("--length", type=int, default=200, help="new tokens per sample, at most (200)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy (0.8)")
    p.add_argument("--top_k", type=int, default=50, help="sample among the k likeliest tokens, 0 for all (50)")
    p.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass, 1 for all (1.0)")
    p.add_argument("--seed", type=int, default=None, help="random seed for reproducible samples")
    p.add_argument("--num_samples", type=int, default=1, help="samples to generate (1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (auto)")
    p.add_argument(
        "--no_cache", action="store_true", help="recompute the whole context each token (slow; for comparison)"
    )
    legacy = p.add_argument_group("checked against the checkpoint (from the original command)")
    legacy.add_argument("--tokenizer_path", help="tokenizer directory; must match the checkpoint's copy")
    legacy.add_argument("--tgt_vocab_size", type=int, help="vocabulary size")
    for name in CHECKED_MODEL_FLAGS:
        legacy.add_argument(f"--{name}", type=int)
    p.set_defaults(func=run)


def check_against_checkpoint(args: argparse.Namespace, model, tokenizer) -> None:
    """Flags from the original command must agree with the checkpoint; say which one does not."""
    cfg = model.cfg
    for name in CHECKED_MODEL_FLAGS:
        value = getattr(args, name)
        if value is not None and value != getattr(cfg, name):
            raise ValueError(f"--{name} {value} disagrees with the checkpoint, which has {name} = {getattr(cfg, name)}")
    if args.tgt_vocab_size is not None and args.tgt_vocab_size != cfg.vocab_size:
        raise ValueError(
            f"--tgt_vocab_size {args.tgt_vocab_size} disagrees with the checkpoint's vocabulary of {cfg.vocab_size}"
        )
    if args.tokenizer_path is not None:
        from fastgpt.tokenizer import Tokenizer

        other = Tokenizer.load(args.tokenizer_path)
        if (other.n_vocab, other.special_tokens) != (tokenizer.n_vocab, tokenizer.special_tokens):
            raise ValueError(
                f"--tokenizer_path {args.tokenizer_path} ({other.n_vocab} tokens) is not the checkpoint's tokenizer "
                f"({tokenizer.n_vocab} tokens)"
            )


def run(args: argparse.Namespace) -> int:
    from fastgpt.gpt.checkpoint import load_model
    from fastgpt.gpt.generate import check_sampling, generate_text

    if args.num_samples < 1:
        raise ValueError(f"--num_samples must be at least 1, got {args.num_samples}")
    check_sampling(args.temperature, args.top_k, args.top_p, args.length)  # before the prompt is printed
    model, tokenizer = load_model(args.checkpoint, args.device)
    check_against_checkpoint(args, model, tokenizer)
    out = sys.stdout
    for i in range(args.num_samples):
        if i:
            out.write("\n" + "-" * 40 + "\n")
        out.write(args.prompt)
        out.flush()
        # Sample i uses seed + i: different samples, each reproducible on its own.
        seed = None if args.seed is None else args.seed + i
        for piece in generate_text(
            model,
            tokenizer,
            args.prompt,
            args.length,
            temperature=args.temperature,
            top_k=args.top_k or None,
            top_p=args.top_p,
            seed=seed,
            use_cache=not args.no_cache,
        ):
            out.write(piece)
            out.flush()
        out.write("\n")
    out.flush()
    return 0
