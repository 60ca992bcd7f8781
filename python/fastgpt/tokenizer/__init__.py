"""The byte-level BPE tokenizer: the `Tokenizer` class, BPE training and file formats."""

from fastgpt.tokenizer.core import Tokenizer

__all__ = ["Tokenizer"]
