"""Equal training time on a GPU: fastgpt's default recipe against the plain nanoGPT-style
reference, at the GPT-2-small shape, on your pretokenized data; prints tokens/s, MFU and
validation loss for both, and the loss ratio (the bar: <= 0.8) as JSON.

    python benches/gpu_train.py --data ./data --seconds 60      # data/ holds train.bin, eval.bin

The training loop and both models are those of benches/test_bench_train.py (smoke-tested
there on CPU), so the script and the benchmark cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

from fastgpt.data.tokens import TokenDataset, read_header  # noqa: E402
from test_bench_train import equal_time_pair  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="directory with train.bin and eval.bin")
    parser.add_argument("--seconds", type=float, default=60, help="training time for each model (60)")
    parser.add_argument("--batch", type=int, default=32, help="sequences per step (32)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_train.py: needs a CUDA GPU")
    data = Path(args.data)
    vocab = read_header(data / "train.bin").vocab_size or 50257
    train_ds, eval_ds = TokenDataset(data / "train.bin", 1024), TokenDataset(data / "eval.bin", 1024)
    torch.backends.cuda.matmul.allow_tf32 = True
    out = equal_time_pair(
        vocab,
        1024,
        768,
        12,
        12,
        train_ds=train_ds,
        eval_ds=eval_ds,
        seconds=args.seconds,
        batch=args.batch,
        device="cuda",
        compile=not args.no_compile,
    )
    out["val_loss_ratio"] = out["fastgpt"]["val_loss"] / out["nanogpt_reference"]["val_loss"]
    out["device"] = torch.cuda.get_device_name()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
