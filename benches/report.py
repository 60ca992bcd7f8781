"""Prints MB/s and ratios against fastgpt from a pytest-benchmark JSON file.

    python benches/report.py .benchmarks/*/0001_*.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    runs = json.load(open(path))["benchmarks"]
    groups = defaultdict(list)
    for run in runs:
        groups[run["group"]].append(run)
    print(f"| group | benchmark | MB/s | fastgpt is ×faster |\n|---|---|---|---|")
    for group, members in groups.items():
        ours = [m for m in members if "fastgpt" in m["name"]]
        for m in members:
            mbs = m["extra_info"]["bytes"] / m["stats"]["mean"] / 1e6
            ratio = ""
            if ours and "fastgpt" not in m["name"]:
                ratio = f"{m['stats']['mean'] / min(o['stats']['mean'] for o in ours):.2f}"
            print(f"| {group} | {m['name'].split('[')[-1].rstrip(']')} | {mbs:.1f} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv[1])
