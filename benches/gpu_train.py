"""Equal training time on a CUDA GPU: fastgpt's default recipe against the plain nanoGPT-style
reference at the GPT-2-small shape (768 wide, 12 layers, context 1024, batch 32), bf16 and
torch.compile, both trained by the real `fastgpt.train`; prints validation loss, tokens/s and
MFU for each and the ratios against the reference at its best learning rate, as JSON.

    python benches/gpu_train.py --data ./data --minutes 5     # data/ holds train.bin, eval.bin, tokenizer/

A thin front end to `fastgpt.gpt.baseline.compare` (the CPU benchmark in
benches/test_bench_train.py runs the same code at the demo's shape). The bars: validation
loss ratio <= 0.75 at equal time, MFU >= 50%.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="directory with train.bin, eval.bin and tokenizer/")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: DATA/tokenizer)")
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-clock budget of each run (5)")
    parser.add_argument("--lrs", default="6e-4,1e-3,2e-3", help="the reference's learning rates to try")
    parser.add_argument("--out", default="runs/gpu_bench", help="where the runs are written")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args()

    import torch

    from fastgpt._util.device import resolve_device
    from fastgpt.gpt.baseline import compare

    try:
        resolve_device("cuda")
    except ValueError as exc:
        sys.exit(f"gpu_train.py: needs a CUDA GPU: {exc}")
    data = Path(args.data)
    out = compare(
        args.tokenizer or data / "tokenizer",
        data / "train.bin",
        data / "eval.bin",
        args.out,
        minutes=args.minutes,
        shape="gpt2-small",
        device="cuda",
        compile=not args.no_compile,
        reference_lrs=tuple(float(x) for x in args.lrs.split(",")),
    )
    out["device"] = torch.cuda.get_device_name()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
