"""`fastgpt bench`: tokens/s, MB/s and peak RAM of encoding and of text → .bin."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  fastgpt bench --input ./data/sample.txt --tokenizer ./artifacts/tokenizer
  fastgpt bench --input ./data/sample.txt --tokenizer ./artifacts/tokenizer --compare tiktoken --threads 2
  fastgpt bench --input eval.jsonl --tokenizer cl100k_base.tiktoken --compare tiktoken --json bench.json

Cases: encode the whole input as one string on 1 thread; encode it cut into ~16 KB pieces on
--threads threads; write it to a .bin file (documents as `fastgpt pretokenize` reads them).
Each case runs in its own process, so each peak RAM is its own. Times are the best of --iterations.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure encoding and pretokenizing speed and peak RAM (optionally against tiktoken)",
        description="Tokens/s, MB/s and peak RAM of encoding a file (1 thread and --threads threads) and of "
        "writing it to a .bin file, for fastgpt and, with --compare, for tiktoken on the same vocabulary.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--input", required=True, help="a text file (.txt, .jsonl, also .gz/.zst)")
    p.add_argument("--tokenizer", required=True, help="tokenizer directory, tokenizer.json or .tiktoken file")
    p.add_argument("--iterations", type=int, default=3, help="runs per case; the best is reported (3)")
    p.add_argument("--threads", type=int, help="threads for the batch and .bin cases (default: all cores)")
    p.add_argument(
        "--compare",
        nargs="*",
        default=[],
        choices=["tiktoken"],
        metavar="LIBRARY",
        help="also run these libraries on the same vocabulary: tiktoken",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from fastgpt.apps.bench import default_threads, format_table, results_json, run_bench

    results = run_bench(
        args.input, args.tokenizer, iterations=args.iterations, threads=args.threads, compare=args.compare
    )
    size = results[0].bytes
    print(
        f"\n{args.input}: {size / 1e6:.2f} MB, {results[0].tokens:,} tokens; best of {args.iterations}; "
        f"{default_threads()} cores available"
    )
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results_json(results), indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0
