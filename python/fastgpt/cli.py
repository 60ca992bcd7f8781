"""The `fastgpt` command line: one subcommand per pipeline step.

Each subcommand lives in its own module under `fastgpt.commands` and exposes
`register(subparsers)`; handlers import their heavy dependencies (torch, ...)
only when they run, so `fastgpt tokenizer ...` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

# Modules under fastgpt.commands, in the order they appear in `fastgpt --help`.
COMMAND_MODULES = ("tokenizer", "pretokenize", "train", "generate", "cc", "split", "demo", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastgpt",
        description="Train your own GPT from scratch: tokenizer, pretokenize, train, generate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"fastgpt.commands.{name}").register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm and `kill` send), raised as the KeyboardInterrupt that Ctrl-C
    raises, so every cleanup path (temporary files, the trainer's final checkpoint) runs
    for both."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return args.func(args) or 0
    except Terminated:
        print("fastgpt: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("fastgpt: interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError) as exc:
        # Expected failures (bad input, missing files) get one clear line, not a traceback.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"fastgpt: error: {message}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
