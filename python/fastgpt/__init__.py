"""fastgpt: train your own GPT from scratch.

A Rust core (byte-level BPE encoding and training, .bin token files) behind a
thin Python layer. `import fastgpt` is cheap and never imports torch.
"""

from fastgpt.data.pretokenize import PretokenizeSummary, pretokenize
from fastgpt.tokenizer import Tokenizer
from fastgpt.tokenizer.registry import encoding_for_model, encoding_name_for_model, get_encoding, list_encoding_names
from fastgpt.tokenizer.tiktoken_compat import patch_tiktoken, unpatch_tiktoken

__all__ = [
    "Tokenizer",
    "pretokenize",
    "PretokenizeSummary",
    "get_encoding",
    "encoding_for_model",
    "encoding_name_for_model",
    "list_encoding_names",
    "patch_tiktoken",
    "unpatch_tiktoken",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # `fastgpt.generate(...)` without importing torch at `import fastgpt`: the module is
    # loaded on first use (and is itself callable as its `generate` function).
    if name == "generate":
        import fastgpt.gpt.generate

        return fastgpt.gpt.generate
    raise AttributeError(f"module 'fastgpt' has no attribute {name!r}")
