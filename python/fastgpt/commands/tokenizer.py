"""`fastgpt tokenizer`: encode, decode and inspect tokenizers."""

from __future__ import annotations

import argparse
import json

EPILOG = """examples:
  fastgpt tokenizer encode --tokenizer ./artifacts/tokenizer "some text"
  fastgpt tokenizer decode --tokenizer ./artifacts/tokenizer 464 2068 7586
  fastgpt tokenizer info ./artifacts/tokenizer
  fastgpt tokenizer info cl100k_base.tiktoken
"""

TOKENIZER_HELP = "a tokenizer directory, a tokenizer.json, or a .tiktoken file (with --pattern unless its name is known)"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tokenizer", help="encode, decode and inspect tokenizers", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    enc = sub.add_parser("encode", help="print the token ids of a text", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    enc.add_argument("--tokenizer", required=True, help=TOKENIZER_HELP)
    enc.add_argument("--pattern", help="split pattern for a bare .tiktoken file (gpt2, cl100k, o200k or a regex)")
    enc.add_argument("--allow_special", action="store_true", help="encode special tokens' text as the special tokens")
    enc.add_argument("text", help="the text to encode")
    enc.set_defaults(func=run_encode)

    dec = sub.add_parser("decode", help="print the text of token ids", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    dec.add_argument("--tokenizer", required=True, help=TOKENIZER_HELP)
    dec.add_argument("--pattern", help="split pattern for a bare .tiktoken file")
    dec.add_argument("ids", nargs="+", type=int, help="token ids")
    dec.set_defaults(func=run_decode)

    info = sub.add_parser("info", help="describe a tokenizer", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("tokenizer", help=TOKENIZER_HELP)
    info.add_argument("--pattern", help="split pattern for a bare .tiktoken file")
    info.set_defaults(func=run_info)


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
