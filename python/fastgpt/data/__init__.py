"""Text in, token files out: reading corpora, the train/eval split, corpus -> .bin, token files and datasets."""
