"""The byte-level BPE tokenizer: the `Tokenizer` class, BPE training and file formats."""

from fastgpt.tokenizer.core import Tokenizer, UnknownTokenError
from fastgpt.tokenizer.registry import EncodingNotFoundError

__all__ = ["Tokenizer", "UnknownTokenError", "EncodingNotFoundError"]
