"""Apps built from the pipeline steps: the end-to-end demo and the benchmark command."""
