"""`fastgpt bench`: tokens/s, MB/s and peak RAM of encoding and of text → .bin."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  fastgpt bench --compare fastokens tiktoken          # the encode suite on cl100k and o200k
  fastgpt bench --compare fastokens --vocab o200k_base --corpus multilingual --size 4KB
  fastgpt bench --input ./data/sample.txt --tokenizer ./artifacts/tokenizer
  fastgpt bench --input ./data/sample.txt --tokenizer ./artifacts/tokenizer --compare tiktoken --threads 2
  fastgpt bench --input eval.jsonl --tokenizer cl100k_base.tiktoken --compare tiktoken --json bench.json

Cases: encode the whole input as one string on 1 thread; encode it cut into ~16 KB pieces on
--threads threads; write it to a .bin file (documents as `fastgpt pretokenize` reads them).
Each case runs in its own process, so each peak RAM is its own. Times are the best of --iterations.

Without --input: the encode suite. Real documents of about 1 KB, 4 KB and 64 KB (English
prose, multilingual text, Python code, markup/docs), each round a fresh instance warmed on
other text and timed on documents it has not seen ("first sight") and again ("repeated"),
pinned to one CPU; a 2-thread batch; chat-sized inputs (calls/s). Peers whose ids differ
from tiktoken's are left out with a line saying where. Needs the bench extra.
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
    p.add_argument("--input", help="a text file (.txt, .jsonl, also .gz/.zst); without it, the encode suite")
    p.add_argument("--tokenizer", help="tokenizer directory, tokenizer.json or .tiktoken file (with --input)")
    p.add_argument("--iterations", type=int, default=3, help="runs per case; the best is reported (3)")
    p.add_argument("--threads", type=int, help="threads for the batch and .bin cases (default: all cores)")
    p.add_argument(
        "--compare",
        nargs="*",
        default=[],
        metavar="LIBRARY",
        help="also run these libraries on the same vocabulary: tiktoken (with --input); for the encode "
        "suite any of fastokens, gigatok, gigatoken, snaptokens, quicktok, splintr, tiktoken, rs-bpe, bpe-openai, tokenizers",
    )
    p.add_argument("--vocab", nargs="*", default=["cl100k_base", "o200k_base"], help="encode suite: vocabularies")
    p.add_argument("--corpus", nargs="*", help="encode suite: prose, multilingual, code, docs (default: all)")
    p.add_argument("--size", nargs="*", help="encode suite: 1KB, 4KB, 64KB (default: all)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    if args.input is None:
        return run_suite(args)
    if args.tokenizer is None:
        raise SystemExit("fastgpt bench: --input needs --tokenizer")
    if set(args.compare) - {"tiktoken"}:
        raise SystemExit("fastgpt bench: with --input, --compare takes tiktoken only")

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


def run_suite(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from fastgpt.apps import bench

    for name, given, known in (
        ("--compare", args.compare, bench.ENCODE_PEERS),
        ("--vocab", args.vocab, bench.VOCABS),
        ("--corpus", args.corpus or [], bench.CORPORA),
        ("--size", args.size or [], tuple(bench.DOC_SIZES)),
    ):
        for value in given:
            if value not in known:
                raise SystemExit(f"fastgpt bench: {name} {value}: unknown; choose from {', '.join(known)}")
    try:
        rows = bench.run_encode_suite(
            args.compare,
            vocabs=args.vocab,
            corpora=args.corpus or bench.CORPORA,
            sizes=args.size or tuple(bench.DOC_SIZES),
            rounds=args.iterations,
        )
    except bench.Unavailable as exc:
        raise SystemExit(f"fastgpt bench: {exc}") from None
    print(bench.format_suite(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0
