"""The README's Quick Start, run line by line as written, on a tiny corpus and model."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fastgpt import Tokenizer
from fastgpt.data.tokens import TokenFile

README = Path(__file__).resolve().parents[1] / "README.md"
# Appended to the training line: argparse keeps the last value, so the README's flags stay as
# written and only the size shrinks to seconds on a CPU.
TINY_TRAINING = [
    "--max_steps",
    "4",
    "--embed_dim",
    "32",
    "--n_heads",
    "2",
    "--num_layers",
    "1",
    "--seq_len",
    "32",
    "--batch_size",
    "4",
    "--eval_interval",
    "4",
    "--device",
    "cpu",
]


def quick_start_commands() -> list[list[str]]:
    text = README.read_text()
    section = text[text.index("## Quick Start") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.startswith("fastgpt ")]


@pytest.mark.slow
def test_quick_start_runs_as_written(tmp_path, stdlib_texts):
    pytest.importorskip("torch")
    docs = [t for t in stdlib_texts[:400] if t.strip()]
    with open(tmp_path / "corpus.jsonl", "w") as f:
        for doc in docs:
            f.write(json.dumps({"text": doc}) + "\n")
    commands = quick_start_commands()
    assert [c[1] for c in commands] == ["split", "tokenizer", "pretokenize", "pretokenize", "train", "generate"]
    for command in commands:
        args = command[1:] + (TINY_TRAINING if command[1] == "train" else [])
        run = subprocess.run(
            [sys.executable, "-m", "fastgpt", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, f"{shlex.join(command)}\n{run.stderr[-2000:]}"
    assert (tmp_path / "runs" / "my_gpt").is_dir() and len(run.stdout) > 0
    # What was trained on is the corpus, document for document (issue 11, defect 8: a .txt
    # step once turned each line break into a literal backslash-n).
    tok = Tokenizer.load(tmp_path / "artifacts" / "tokenizer")
    trained_on = []
    for name in ("train", "eval"):
        ids = TokenFile(tmp_path / "data" / f"{name}.bin")[:].tolist()
        ends = [i for i, t in enumerate(ids) if t == tok.eot_token]
        trained_on += [tok.decode(ids[a + 1 : b]) for a, b in zip([-1, *ends[:-1]], ends)]
    assert sorted(trained_on) == sorted(docs)
