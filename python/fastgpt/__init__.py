"""fastgpt: train your own GPT from scratch.

A Rust core (byte-level BPE encoding and training, .bin token files) behind a
thin Python layer. `import fastgpt` is cheap and never imports torch.
"""

from fastgpt.data.pretokenize import PretokenizeSummary, pretokenize
from fastgpt.tokenizer import Tokenizer

__all__ = ["Tokenizer", "pretokenize", "PretokenizeSummary"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # `fastgpt.generate(...)` without importing torch at `import fastgpt`: the module is
    # loaded on first use (and is itself callable as its `generate` function).
    if name == "generate":
        import fastgpt.gpt.generate

        return fastgpt.gpt.generate
    raise AttributeError(f"module 'fastgpt' has no attribute {name!r}")
