"""`fastgpt pretokenize`: corpus → .bin token files, and inspecting them."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  fastgpt pretokenize file ./data/train.txt --tokenizer ./artifacts/tokenizer            (→ ./data/train.bin)
  fastgpt pretokenize file a.txt b.jsonl.gz 'shards/*.txt' --tokenizer DIR --output out.bin --shard_tokens 100000000
  fastgpt pretokenize file 'fineweb/*.parquet' --tokenizer DIR --output fineweb.bin          (column text)
  fastgpt pretokenize file ~/.cache/my_dataset/train/ --tokenizer DIR --output t.bin        (datasets Arrow files)
  fastgpt pretokenize file corpus/ --tokenizer DIR --output out.bin --rank 0 --world_size 8   (one shard of 8)
  fastgpt pretokenize file corpus/ --tokenizer DIR --output out.bin --backend ray             (all shards on Ray)
  fastgpt pretokenize info ./data/train.bin --tokenizer ./artifacts/tokenizer
"""


def register(subparsers) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "pretokenize", help="encode a corpus into .bin token files", epilog=EPILOG, formatter_class=fmt
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    f = sub.add_parser("file", help="encode text files into a .bin file", epilog=EPILOG, formatter_class=fmt)
    f.add_argument(
        "inputs",
        nargs="+",
        help="files, globs or directories: .txt, .jsonl (optionally .gz/.zst), .parquet, .arrow (a document per row)",
    )
    f.add_argument("--tokenizer", required=True, help="tokenizer directory (or tokenizer.json / .tiktoken file)")
    f.add_argument("--output", help="output file (default: the first input with a .bin or .pt suffix)")
    f.add_argument(
        "--format",
        choices=["bin", "pt"],
        default="bin",
        help="bin (llm.c-compatible, default) or pt (torch tensor, small data)",
    )
    f.add_argument(
        "--doc_sep",
        choices=["line", "blank", "none"],
        default="line",
        help="text files: a document per line (default), per blank-line block, or per file (Parquet: per row)",
    )
    f.add_argument(
        "--text_field", default="text", help="JSON lines field or Parquet/Arrow column holding the text (default: text)"
    )
    f.add_argument("--threads", type=int, help="encoding threads (default: all cores)")
    f.add_argument("--shard_tokens", type=int, help="split the output into numbered files of this many tokens")
    f.add_argument(
        "--rank",
        type=int,
        help="process only input shard RANK of WORLD_SIZE: units RANK, RANK+WORLD_SIZE, ... of the files "
        "and Parquet row groups (default: Slurm array task, else all)",
    )
    f.add_argument("--world_size", type=int, help="number of input shards")
    f.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="ray: run every shard as a Ray task (RAY_ADDRESS or a local cluster)",
    )
    f.add_argument("--overwrite", action="store_true", help="redo a shard that is already complete")
    f.set_defaults(func=run_file)

    i = sub.add_parser("info", help="describe a .bin file", epilog=EPILOG, formatter_class=fmt)
    i.add_argument("path", help=".bin file")
    i.add_argument("--tokenizer", help="decode the first tokens with this tokenizer")
    i.add_argument("--first", type=int, default=32, help="how many tokens to show (default: 32)")
    i.set_defaults(func=run_info)


def run_file(args) -> int:
    from fastgpt.data.pretokenize import pretokenize

    s = pretokenize(
        args.inputs,
        args.tokenizer,
        args.output,
        format=args.format,
        doc_sep=args.doc_sep,
        text_field=args.text_field,
        threads=args.threads,
        shard_tokens=args.shard_tokens,
        rank=args.rank,
        world_size=args.world_size,
        backend=args.backend,
        overwrite=args.overwrite,
    )
    if s.skipped:
        print(f"{s.outputs[0]}: already complete, skipped")
    else:
        outputs = s.outputs[0] if len(s.outputs) == 1 else f"{len(s.outputs)} files {s.outputs[0]} ... {s.outputs[-1]}"
        print(
            f"{outputs}: {s.tokens:,} tokens from {s.documents:,} documents in {s.files} files "
            f"({s.bytes / 1e6:.1f} MB, {s.seconds:.1f} s, {s.mb_per_s:.1f} MB/s, {s.tokens_per_s / 1e6:.2f}M tokens/s)"
        )
    return 0


def run_info(args) -> int:
    import numpy as np

    from fastgpt.data.tokens import TokenFile

    tf = TokenFile(args.path)
    h = tf.header
    documents = None
    if h.eot_token is not None:
        step = 1 << 24  # count in slices, so RAM stays flat on huge files
        documents = sum(int(np.count_nonzero(tf[i : i + step] == h.eot_token)) for i in range(0, len(tf), step))
    print(f"file: {args.path}")
    print(f"header: magic {h.magic}, version {h.version}, fastgpt header version {h.fastgpt_version}")
    print(f"dtype: {h.dtype.name}")
    print(f"tokens: {len(tf)}")
    print(f"documents: {documents if documents is not None else 'unknown (no end-of-text id)'}")
    print(f"vocab_size: {h.vocab_size}")
    print(f"eot_token: {h.eot_token}")
    print(f"file_size: {tf.path.stat().st_size}")
    first = tf[: args.first].tolist()
    print(f"first tokens: {first}")
    if args.tokenizer:
        from fastgpt import Tokenizer

        tok = Tokenizer.load(args.tokenizer)
        if h.vocab_size is not None and tok.n_vocab != h.vocab_size:
            raise ValueError(
                f"{args.path} was written for a vocabulary of {h.vocab_size} tokens, "
                f"but the tokenizer {args.tokenizer} has {tok.n_vocab}"
            )
        print(f"decoded: {tok.decode(first)!r}")
    return 0
