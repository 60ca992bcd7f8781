"""`fastgpt split`: shuffled train/eval split of a corpus, read as pretokenize reads it."""

from __future__ import annotations

import argparse
import json
import sys

EPILOG = """examples:
  fastgpt split corpus_en.jsonl --eval_fraction 0.01 --train train.jsonl --eval eval.jsonl
  fastgpt split 'corpus-*.jsonl.zst' lines.txt.gz --seed 1 --memory_mb 2048 --train train.jsonl --eval eval.jsonl
  fastgpt split fineweb/ --train train.parquet --eval eval.parquet          (a directory of .parquet shards)
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "split",
        help="shuffle a corpus into train and eval files",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        help="files, globs or directories: .jsonl or .txt (a document per line), optionally .gz/.zst; "
        ".parquet or .arrow (a document per row)",
    )
    p.add_argument("--eval_fraction", type=float, default=0.01, help="share of documents for eval (default: 0.01)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same split and order (default: 0)")
    p.add_argument(
        "--train", required=True, help="train output: .jsonl, .parquet, or .txt when no document spans lines"
    )
    p.add_argument("--eval", required=True, help="eval output: .jsonl, .parquet, or .txt when no document spans lines")
    p.add_argument(
        "--text_field", default="text", help="JSON lines field or Parquet/Arrow column holding the text (default: text)"
    )
    p.add_argument("--memory_mb", type=int, default=512, help="RAM for shuffling; larger corpora use disk buckets")
    p.set_defaults(func=run)


def run(args) -> int:
    from fastgpt.data.split import split

    counts = split(args.inputs, args.train, args.eval, args.eval_fraction, args.seed, args.memory_mb, args.text_field)
    if counts["invalid_utf8"]:
        print(
            f"fastgpt: warning: replaced {counts['invalid_utf8']} invalid UTF-8 sequences with U+FFFD", file=sys.stderr
        )
    print(json.dumps(counts), file=sys.stderr)
    return 0
