"""The GPT: model, trainer and sampling (the only part of fastgpt that imports torch)."""
