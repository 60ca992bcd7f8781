"""`fastgpt tokenizer`: encode, decode and inspect tokenizers."""

from __future__ import annotations

import argparse
import json
import sys

EPILOG = """examples:
  fastgpt tokenizer train --train ./data/train.txt --vocab_size 8000 --output_dir ./artifacts/tokenizer
  fastgpt tokenizer train --train "data/*.jsonl.zst" --text_field text --vocab_size 32000 --max_bytes 500M --output_dir tok32k
  fastgpt tokenizer train --train fineweb/ --vocab_size 32000 --max_bytes 1G --output_dir tok32k   (.parquet shards)
  fastgpt tokenizer encode --tokenizer ./artifacts/tokenizer "some text"
  fastgpt tokenizer decode --tokenizer ./artifacts/tokenizer 464 2068 7586
  fastgpt tokenizer info ./artifacts/tokenizer
  fastgpt tokenizer info cl100k_base.tiktoken
  fastgpt tokenizer encode --tokenizer o200k_base "some text"
"""

TOKENIZER_HELP = (
    "a tokenizer directory, a tokenizer.json, a .tiktoken file (with --pattern unless its name is known), "
    "or an encoding name (cl100k_base, o200k_base, gpt2, ...: rank file from tiktoken's cache or bpe-openai)"
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tokenizer",
        help="encode, decode and inspect tokenizers",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    tr = sub.add_parser(
        "train",
        help="train a byte-level BPE tokenizer on text files",
        description="Trains a byte-level BPE tokenizer and writes a tokenizer directory (fastgpt.json, "
        "vocab.tiktoken, tokenizer.json). Ties between pairs of equal count go to the lowest pair of token ids.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tr.add_argument(
        "--train",
        nargs="+",
        required=True,
        metavar="PATH",
        help="text files, globs or directories (.txt, .jsonl, also .gz/.zst; .parquet, .arrow)",
    )
    tr.add_argument("--vocab_size", type=int, required=True, help="tokens in the vocabulary, special tokens included")
    tr.add_argument("--output_dir", required=True, help="the tokenizer directory to write")
    tr.add_argument("--max_bytes", type=_size, help="read at most this many bytes (suffixes K, M, G: 500M)")
    tr.add_argument(
        "--max_lines", type=_size, help="read at most this many lines (records for .jsonl, rows for .parquet)"
    )
    tr.add_argument(
        "--pattern", default="cl100k", help="split pattern: gpt2, cl100k, o200k or a regex (default: cl100k)"
    )
    tr.add_argument(
        "--special_tokens",
        nargs="*",
        default=["<|endoftext|>"],
        metavar="TOKEN",
        help="special tokens, given the last ids (default: <|endoftext|>)",
    )
    tr.add_argument(
        "--text_field",
        default="text",
        help="the field (.jsonl) or column (.parquet, .arrow) holding the text (default: text)",
    )
    tr.add_argument("--threads", type=int, help="threads for counting (default: all cores)")
    tr.add_argument(
        "--max_words",
        type=_size,
        help="distinct pre-tokens kept at most; the rarest are dropped past it (default: 10M)",
    )
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.set_defaults(func=run_train)

    enc = sub.add_parser(
        "encode",
        help="print the token ids of a text",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    enc.add_argument("--tokenizer", required=True, help=TOKENIZER_HELP)
    enc.add_argument("--pattern", help="split pattern for a bare .tiktoken file (gpt2, cl100k, o200k or a regex)")
    enc.add_argument("--allow_special", action="store_true", help="encode special tokens' text as the special tokens")
    enc.add_argument("text", help="the text to encode")
    enc.set_defaults(func=run_encode)

    dec = sub.add_parser(
        "decode",
        help="print the text of token ids",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dec.add_argument("--tokenizer", required=True, help=TOKENIZER_HELP)
    dec.add_argument("--pattern", help="split pattern for a bare .tiktoken file")
    dec.add_argument("ids", nargs="+", type=int, help="token ids")
    dec.set_defaults(func=run_decode)

    info = sub.add_parser(
        "info", help="describe a tokenizer", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    info.add_argument("tokenizer", help=TOKENIZER_HELP)
    info.add_argument("--pattern", help="split pattern for a bare .tiktoken file")
    info.set_defaults(func=run_info)


def _size(text: str) -> int:
    """An integer with an optional K/M/G suffix (powers of 1000): 50M = 50000000."""
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1:].lower(), 1)
    try:
        value = int(float(text[:-1] if scale > 1 else text) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (examples: 1000, 50M, 2G)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def run_train(args) -> int:
    import warnings

    from fastgpt import Tokenizer
    from fastgpt._util.atomic import check_writable

    check_writable(args.output_dir, directory=True)  # before reading any input, not after training
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok = Tokenizer.train(
            args.train,
            args.vocab_size,
            pattern=args.pattern,
            special_tokens=args.special_tokens,
            max_bytes=args.max_bytes,
            max_lines=args.max_lines,
            text_field=args.text_field,
            threads=args.threads,
            max_words=args.max_words,
            progress=not args.quiet,
        )
    for warning in caught:
        print(f"fastgpt: warning: {warning.message}", file=sys.stderr)
    directory = tok.save(args.output_dir)
    s = tok.train_stats
    assert s is not None  # Tokenizer.train always sets it
    mb = s.bytes_read / 1e6
    print(
        f"trained {tok.n_vocab} tokens ({s.merges} merges, {len(tok.special_tokens)} special) on {mb:.1f} MB, "
        f"{s.distinct_words} distinct words: reading {s.read_seconds:.1f} s ({mb / max(s.read_seconds, 1e-9):.1f} MB/s), "
        f"merging {s.merge_seconds:.1f} s; wrote {directory}"
    )
    return 0


def _load(args):
    from fastgpt import Tokenizer

    return Tokenizer.load(args.tokenizer, pattern=args.pattern)


def run_encode(args) -> int:
    tok = _load(args)
    ids = tok.encode(args.text, allowed_special="all") if args.allow_special else tok.encode(args.text)
    print(" ".join(map(str, ids)))
    return 0


def run_decode(args) -> int:
    print(_load(args).decode(args.ids))
    return 0


def run_info(args) -> int:
    tok = _load(args)
    longest = max(range(256, tok.n_vocab), key=lambda i: len(_bytes_or_empty(tok, i)), default=None)
    info = {
        "n_vocab": tok.n_vocab,
        "pattern": tok.pattern_name or "custom",
        "regex": tok.pattern,
        "special_tokens": tok.special_tokens,
        "eot_token": tok.eot_token,
        "longest_token": None if longest is None else _bytes_or_empty(tok, longest).decode("utf-8", "replace"),
    }
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0


def _bytes_or_empty(tok, i: int) -> bytes:
    try:
        return tok.token_bytes(i)
    except KeyError:
        return b""
