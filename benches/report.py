"""Reports a pytest-benchmark JSON file: MB/s of every benchmark and fastgpt's ratios
against the peers run beside it, as markdown (and a PNG bar chart of the ratios).

    python benches/report.py .benchmarks/latest.json                          # markdown to stdout
    python benches/report.py .benchmarks/latest.json --markdown benches/results.md --chart benches/results.png

`make bench` runs the suites and then this. Ratios are taken from median times, per byte
where both sides recorded `extra_info["bytes"]`; each ratio row says which way is better
and the bar it is held to (DESIGN.md, section 6).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass
class Ratio:
    group: str
    ours: str
    other: str
    value: float
    meaning: str  # what the number is, e.g. "× faster"
    bar: str = ""
    peer: bool = True  # a comparison with another library or a reference (charted), not an internal one


def label(run: dict) -> str:
    """The benchmark's parameters (`cl100k_base-code-fastgpt`), or its test name without them."""
    name = run["name"]
    return name[name.index("[") + 1 : -1] if "[" in name else name.removeprefix("test_")


def short_label(run: dict, group: str) -> str:
    """The library and the parameters the group name does not already say: `fastgpt, threads=2`."""
    params = run.get("params") or {}
    library = next((str(params[k]) for k in LIBRARY_PARAMS if k in params), None)
    head = library or run["name"].split("[")[0].removeprefix("test_")
    rest = [
        f"{k}={v}"
        for k, v in params.items()
        if k not in LIBRARY_PARAMS and not re.search(rf"\b{re.escape(str(v))}\b", group)
    ]
    return ", ".join([head, *rest])


def per_byte(run: dict) -> float:
    """Median seconds per byte when the benchmark recorded its size, else median seconds."""
    seconds = run["stats"]["median"]
    size = (run.get("extra_info") or {}).get("bytes")
    return seconds / size if size else seconds


def is_ours(run: dict) -> bool:
    return "fastgpt" in run["name"]


LIBRARY_PARAMS = ("peer", "which")  # the parameter naming the library, in the suites that have one


def _other_params(run: dict) -> tuple:
    """The run's parameters but the library's, so 1-thread fastgpt meets 1-thread tiktoken."""
    return tuple(sorted((k, str(v)) for k, v in (run.get("params") or {}).items() if k not in LIBRARY_PARAMS))


def _find(members: list[dict], text: str) -> dict | None:
    return next((m for m in members if text in m["name"]), None)


# Groups where one run of ours is held against named runs beside it (ratios of the medians per
# byte): (group prefix, our run, what it is, [(the other run, what that is, what the ratio
# means, the bar, charted as a peer)]).
PAIRED = (
    (
        "pretokenize vs in-memory",
        "pretokenize_to_bin",
        "text → .bin",
        [
            ("in_memory", "in-memory batch encode", "of its throughput", "≥ 0.9", False),
            ("nanogpt", "nanoGPT-style tiktoken pipeline", "× faster", "", True),
        ],
    ),
    (
        "parquet → .bin (",
        "parquet_to_bin",
        "Parquet → .bin",
        [
            ("txt_to_bin", "the same documents from .txt", "of its throughput", "≥ 0.9", False),
            ("pyarrow_tiktoken_loop", "pyarrow + tiktoken loop", "× faster", "≥ 3", True),
        ],
    ),
    ("generate", "kv_cache", "KV cache", [("recompute", "recomputing the context", "× faster", "≥ 5", False)]),
)


def ratios(runs: list[dict]) -> list[Ratio]:
    """fastgpt against each peer in its group, and the in-house bars that compare two of our own runs."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[run["group"] or run["name"]].append(run)
    out: list[Ratio] = []
    for group, members in groups.items():
        if group.startswith("worst case vs prose"):
            prose = _find(members, "prose")
            for m in members:
                if prose is not None and m is not prose:
                    out.append(
                        Ratio(
                            group,
                            str((m.get("params") or {}).get("case", label(m))),
                            "prose",
                            per_byte(m) / per_byte(prose),
                            "× prose's time per byte",
                            "≤ 2" if group.endswith("fastgpt") else "",
                            peer=False,
                        )
                    )
        elif paired := next((p for p in PAIRED if group.startswith(p[0])), None):
            _, ours_name, ours_label, others = paired
            ours = _find(members, ours_name)
            for name, other_label, meaning, bar, peer in others:
                other = _find(members, name)
                if ours and other:
                    out.append(
                        Ratio(group, ours_label, other_label, per_byte(other) / per_byte(ours), meaning, bar, peer)
                    )
        elif group.endswith("peak RSS"):  # pretokenize's (text) and Parquet's: the largest input against the smallest
            info = [m.get("extra_info") or {} for m in members]
            rss = sorted((i.get("bytes") or i.get("parquet_bytes") or 0, i.get("peak_rss_mb")) for i in info)
            unit = "MB of Parquet" if group.startswith("parquet") else "MB input"
            if len(rss) >= 2 and rss[0][1] and rss[-1][1]:
                out.append(
                    Ratio(
                        group,
                        f"{rss[-1][0] / 1e6:.0f} {unit}",
                        f"{rss[0][0] / 1e6:.0f} {unit}",
                        rss[-1][1] / rss[0][1],
                        "× the peak RSS",
                        "≤ 1.2" if group.startswith("parquet") else "≈ 1 (flat)",
                        peer=False,
                    )
                )
        else:
            our_runs = [m for m in members if is_ours(m)]
            for m in members:
                if is_ours(m):
                    continue
                # A parametrized peer meets our run with the same other parameters; an unparametrized
                # baseline (cc-extract's) meets each of our variants.
                matches = [o for o in our_runs if _other_params(o) == _other_params(m)] if m.get("params") else our_runs
                for o in matches:
                    ours_label, peer_label = short_label(o, group), short_label(m, group)
                    out.append(
                        Ratio(
                            group,
                            ours_label,
                            peer_label,
                            per_byte(m) / per_byte(o),
                            "× faster",
                            _bar(group, peer_label),
                        )
                    )
    return out + _internal_bars(runs)


def _internal_bars(runs: list[dict]) -> list[Ratio]:
    """The bars timed within one benchmark of ours, or comparing two of them: o200k against
    cl100k on the same documents (≥ 0.7), the 2-thread batch against 1 thread (≥ 1.8), first
    sight and short inputs against fastokens (≥ 1) and the CPU train step against the
    nanoGPT-style reference (≥ 0.9); all but the first in alternating rounds."""
    ours = {(r["group"], str((r.get("params") or {}).get("threads", ""))): r for r in runs if is_ours(r)}
    out = []
    for (group, threads), run in ours.items():
        if group.startswith("encode 1 thread first sight: o200k_base"):
            cl = ours.get((group.replace("o200k_base", "cl100k_base"), threads))
            if cl:
                what = group.split(": ", 1)[1].replace("o200k_base ", "")
                out.append(
                    Ratio(
                        group,
                        "o200k",
                        "our cl100k",
                        per_byte(cl) / per_byte(run),
                        f"of the MB/s ({what})",
                        "≥ 0.7",
                        peer=False,
                    )
                )
        one_thread = (run.get("extra_info") or {}).get("one_thread_seconds")
        if group.startswith("encode batch") and one_thread:
            out.append(
                Ratio(
                    group, "2 threads", "1 thread", one_thread / run["stats"]["median"], "× faster", "≥ 1.8", peer=False
                )
            )
        info = run.get("extra_info") or {}
        for peer, bar in ALTERNATING_BARS.items():
            if info.get(f"{peer}_seconds") and info.get("alternating_seconds"):
                seconds = info[f"{peer}_seconds"] / info["alternating_seconds"]
                out.append(Ratio(group, "fastgpt", f"{peer}, alternating rounds", seconds, "× faster", bar))
    return out


# The peers that a benchmark of ours times in rounds alternating with its own (their
# `<peer>_seconds` beside our `alternating_seconds`), and the bar on that ratio.
ALTERNATING_BARS = {"fastokens": "≥ 1", "nanogpt_reference": "≥ 0.9"}


def _bar(group: str, peer: str) -> str:
    """The bar of DESIGN.md section 6 that a ratio is held to, if any."""
    if group.startswith("encode 1 thread first sight"):  # against fastokens: `_internal_bars`
        return "≥ 3" if peer.startswith("tiktoken") else ""
    if group.startswith("encode batch"):
        return "≥ 1" if peer.startswith("fastokens") else ""
    if group.startswith("train-bpe"):
        return "> 1"
    if group.startswith("train step"):  # against the reference: in alternating rounds
        return ""
    if group.startswith("cc-extract"):
        return "≥ 3"
    if group.startswith("load:"):
        return "≥ 1" if peer.startswith("tiktoken") else ""
    return ""


def throughput(run: dict) -> str:
    info = run.get("extra_info") or {}
    parts = []
    if info.get("bytes"):
        parts.append(f"{info['bytes'] / run['stats']['median'] / 1e6:.1f} MB/s")
    if info.get("mb_per_s"):
        parts.append(f"{info['mb_per_s']:.1f} MB/s")
    if info.get("tokens_per_s"):
        parts.append(f"{info['tokens_per_s']:,.0f} tokens/s")
    if info.get("peak_rss_mb"):
        parts.append(f"peak RSS {info['peak_rss_mb']:.0f} MB")
    return ", ".join(parts)


def machine(data: dict) -> str:
    info = data.get("machine_info") or {}
    cpu = info.get("cpu") or {}
    brand = cpu.get("brand_raw") or info.get("processor") or info.get("machine") or "unknown CPU"
    cores = cpu.get("count")
    python = f"{info.get('python_implementation', 'Python')} {info.get('python_version', '')}".strip()
    return f"{brand}{f', {cores} cores' if cores else ''}, {info.get('system', '')} {info.get('release', '')}, {python}".strip()


def _when(data: dict) -> str:
    stamp = data.get("datetime")
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(stamp)


def markdown(data: dict) -> str:
    runs = data["benchmarks"]
    commit = data.get("commit_info") or {}
    lines = [
        "# fastgpt benchmarks",
        "",
        f"Measured {_when(data)} on {machine(data)}, commit {str(commit.get('id', '?'))[:10]}"
        f"{' (with uncommitted changes)' if commit.get('dirty') else ''}, by `make bench`. "
        "The machine may have been shared with other work: compare ratios, which come from one run, "
        "rather than absolute speeds.",
        "",
        "## fastgpt against the peers and its own bars",
        "",
        "![ratios](results.png)",
        "",
        "| benchmark | fastgpt | compared with | ratio | bar |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in ratios(runs):
        lines.append(f"| {r.group} | {r.ours} | {r.other} | **{r.value:.2f}** {r.meaning} | {r.bar} |")
    lines += [
        "",
        "## Every benchmark (median of the rounds)",
        "",
        "| group | benchmark | median | rounds | throughput |",
        "| --- | --- | --- | --- | --- |",
    ]
    for run in sorted(runs, key=lambda r: (r["group"] or "", r["name"])):
        s = run["stats"]
        lines.append(f"| {run['group']} | {label(run)} | {_seconds(s['median'])} | {s['rounds']} | {throughput(run)} |")
    return "\n".join(lines) + "\n"


def _seconds(s: float) -> str:
    return f"{s:.3f} s" if s >= 0.1 else f"{s * 1000:.2f} ms"


def _chart_label(r: Ratio) -> str:
    """`group [our variant]: vs peer`, short enough for an axis."""
    group = r.group if len(r.group) <= 48 else r.group[:47] + "…"
    variant = r.ours.split(", ", 1)[1] if ", " in r.ours else ""
    return f"{group}{f' [{variant}]' if variant else ''}: vs {r.other.split(', ')[0]}"


def chart(data: dict, path: Path) -> None:
    """Horizontal bars of fastgpt's speed against each peer (log scale; 1 = as fast)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    rows = [r for r in ratios(data["benchmarks"]) if r.peer]
    if not rows:
        raise ValueError("no benchmark compares fastgpt with a peer: nothing to chart")
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(rows) + 1.4))
    names = [_chart_label(r) for r in rows]
    values = [r.value for r in rows]
    colors = ["#2a7ab9" if v >= 1 else "#d9534f" for v in values]
    ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
    ax.axvline(1.0, color="black", lw=0.8)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
    ax.set_xlabel("how many times faster fastgpt is (log scale; 1 = as fast)")
    ax.set_title(f"fastgpt vs peers, {_when(data)}\n{machine(data)}", fontsize=8)
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="markdown table and chart of a pytest-benchmark JSON file")
    p.add_argument("json", help="pytest-benchmark JSON (--benchmark-json or an autosaved file)")
    p.add_argument("--markdown", type=Path, help="write the markdown here instead of printing it")
    p.add_argument("--chart", type=Path, help="write a PNG bar chart of the ratios against the peers here")
    args = p.parse_args(argv)
    data = json.loads(Path(args.json).read_text())
    if not data.get("benchmarks"):
        print(f"{args.json}: no benchmarks in this file (did the run use --benchmark-enable?)", file=sys.stderr)
        return 1
    text = markdown(data)
    if args.markdown:
        args.markdown.write_text(text)
        print(f"wrote {args.markdown}")
    else:
        print(text)
    if args.chart:
        chart(data, args.chart)
        print(f"wrote {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
