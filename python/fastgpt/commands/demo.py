"""`fastgpt demo`: corpus → tokenizer → .bin → trained GPT → samples, in one command."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  fastgpt demo                                   (the standard library's sources, 10 minutes of training)
  fastgpt demo --minutes 3 --out ./artifacts/demo3
  fastgpt demo --corpus ./my_texts/ --prompt "Once upon a time"
  fastgpt demo --size tiny                       (every step in seconds: checks the plumbing)

Everything goes under --out: data/{train,eval}.jsonl and .bin, tokenizer/, runs/demo/
(checkpoint, metrics.jsonl, loss.png). A rerun replaces the previous demo run.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on the standard library's sources (or --corpus)",
        description="Prepares a corpus (every 20th document held out), trains a tokenizer, pretokenizes, "
        "trains a small GPT for --minutes and generates samples from it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--minutes", type=float, help="training time budget in minutes (default: 10)")
    p.add_argument(
        "--corpus",
        help="text to use instead of the standard library: a file, directory or glob of "
        ".txt/.md/.jsonl (also .gz/.zst); each file (or .jsonl record) is a document, a few big files "
        "are cut at blank lines",
    )
    p.add_argument("--out", help="output directory (default: artifacts/demo)")
    p.add_argument(
        "--prompt", help='prompt for the samples (default: "def " on the standard library, else a new document)'
    )
    p.add_argument(
        "--size", default="small", choices=["small", "tiny"], help="small (default) or tiny (seconds, for tests)"
    )
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, help="random seed (default: 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fastgpt.apps.demo import config_for, run_demo

    cfg = config_for(
        args.size,
        minutes=args.minutes,
        corpus=args.corpus,
        out=args.out,
        prompt=args.prompt,
        device=args.device,
        seed=args.seed,
    )
    run_demo(cfg)
    return 0
