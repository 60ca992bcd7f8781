"""fastgpt: train your own GPT from scratch.

A Rust core (byte-level BPE encoding and training, .bin token files) behind a
thin Python layer. `import fastgpt` is cheap and never imports torch.
"""

from fastgpt.pretokenize import PretokenizeSummary, pretokenize
from fastgpt.tokenizer import Tokenizer

__all__ = ["Tokenizer", "pretokenize", "PretokenizeSummary"]
__version__ = "0.1.0"
