"""BPE training: fastgpt against Hugging Face tokenizers, rustbpe and bpeasy, each in its own
process, on the same corpus, split pattern (cl100k) and vocabulary size. Prints training
time, peak RSS and bytes per token on held-out text.

    python benches/train_bpe_peers.py --corpus train.txt --heldout heldout.txt --vocab_size 8192 32768
    python benches/train_bpe_peers.py --stdlib       # the CPython standard library: 90% train, 10% held out

Each trainer gets the corpus the way it reads fastest: fastgpt and Hugging Face read the
file themselves; rustbpe and bpeasy take a Python iterator over its lines. Peers that are not
installed are skipped (pip install tokenizers rustbpe bpeasy).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import peak_rss, stdlib_sources

PEERS = ("fastgpt", "hf_tokenizers", "rustbpe", "bpeasy")


def cl100k_regex() -> str:
    from fastgpt import Tokenizer

    return Tokenizer.from_ranks({bytes([b]): b for b in range(256)}, "cl100k").pattern


def lines(path: str):
    with open(path, encoding="utf-8", errors="replace") as f:
        yield from f


def train(which: str, corpus: str, vocab_size: int):
    """Trains; returns an encode function (text -> list of ids)."""
    if which == "fastgpt":
        from fastgpt import Tokenizer

        tok = Tokenizer.train(corpus, vocab_size, pattern="cl100k", progress=False)
        return tok.encode_ordinary
    if which == "hf_tokenizers":
        from tokenizers import Regex, models, pre_tokenizers, trainers
        from tokenizers import Tokenizer as HFTokenizer  # not fastgpt's, imported above

        from fastgpt.tokenizer import huggingface as hf_format

        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(hf_format.oniguruma_pattern(cl100k_regex())), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=["<|endoftext|>"],
            show_progress=False,
        )
        hf.train([corpus], trainer)
        return lambda text: hf.encode(text).ids
    if which == "rustbpe":
        import rustbpe

        tok = rustbpe.Tokenizer()
        tok.train_from_iterator(lines(corpus), vocab_size - 1, pattern=cl100k_regex())
        return tok.encode
    if which == "bpeasy":
        import bpeasy
        import tiktoken

        ranks = bpeasy.train_bpe(lines(corpus), cl100k_regex(), 128, vocab_size - 1)
        enc = tiktoken.Encoding("bpeasy", pat_str=cl100k_regex(), mergeable_ranks=ranks, special_tokens={})
        return enc.encode_ordinary
    raise ValueError(which)


def worker(which: str, corpus: str, heldout: str | None, vocab_size: int) -> dict:
    started = time.perf_counter()
    encode = train(which, corpus, vocab_size)
    seconds = time.perf_counter() - started
    rss = peak_rss()
    result = {
        "trainer": which,
        "vocab_size": vocab_size,
        "seconds": seconds,
        "peak_rss": rss,
        "corpus_bytes": Path(corpus).stat().st_size,
    }
    if heldout:
        text = Path(heldout).read_text(encoding="utf-8", errors="replace")
        result["bytes_per_token"] = len(text.encode()) / len(encode(text))
    return result


def run_one(which: str, corpus: str, heldout: str | None, vocab_size: int) -> dict | None:
    args = [sys.executable, __file__, "--worker", which, "--corpus", corpus, "--vocab_size", str(vocab_size)]
    if heldout:
        args += ["--heldout", heldout]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  {which}: skipped ({last})", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def stdlib_split(directory: Path) -> tuple[str, str]:
    train, heldout = directory / "train.txt", directory / "heldout.txt"
    with open(train, "w", encoding="utf-8") as f, open(heldout, "w", encoding="utf-8") as g:
        for i, path in enumerate(stdlib_sources()):
            text = path.read_text(encoding="utf-8", errors="replace")
            (g if i % 10 == 0 else f).write(text if text.endswith("\n") else text + "\n")
    return str(train), str(heldout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus")
    parser.add_argument("--heldout")
    parser.add_argument("--stdlib", action="store_true", help="train on the CPython standard library's sources")
    parser.add_argument("--vocab_size", type=int, nargs="+", default=[8192, 32768])
    parser.add_argument("--trainers", nargs="+", default=list(PEERS), choices=PEERS)
    parser.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.corpus, args.heldout, args.vocab_size[0])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        corpus, heldout = stdlib_split(Path(tmp)) if args.stdlib else (args.corpus, args.heldout)
        if corpus is None:
            parser.error("give --corpus FILE or --stdlib")
        size = Path(corpus).stat().st_size
        print(f"corpus: {size / 1e6:.1f} MB; pattern cl100k")
        print("| vocab | trainer | seconds | MB/s | peak RSS MB | bytes/token (held out) | fastgpt is x faster |")
        print("|---|---|---|---|---|---|---|")
        for vocab_size in args.vocab_size:
            results = [r for which in args.trainers if (r := run_one(which, corpus, heldout, vocab_size))]
            ours = next((r["seconds"] for r in results if r["trainer"] == "fastgpt"), None)
            for r in results:
                ratio = f"{r['seconds'] / ours:.1f}" if ours and r["trainer"] != "fastgpt" else ""
                bpt = f"{r['bytes_per_token']:.3f}" if "bytes_per_token" in r else ""
                print(
                    f"| {vocab_size} | {r['trainer']} | {r['seconds']:.2f} | {size / 1e6 / r['seconds']:.1f} | "
                    f"{r['peak_rss'] / 2**20:.0f} | {bpt} | {ratio} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
