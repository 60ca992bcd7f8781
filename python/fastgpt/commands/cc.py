"""`fastgpt cc download | extract`: Common Crawl WET files to a clean one-document-per-line corpus."""

from __future__ import annotations

import argparse
import json
import sys

from fastgpt.cc.filters import config_fields

EPILOG_DOWNLOAD = """examples:
  fastgpt cc download --paths wet.paths.gz --n 10 --out ./wet
  fastgpt cc download --paths wet.paths --base_url http://mirror.local/ --workers 8
"""
EPILOG_EXTRACT = """examples:
  fastgpt cc extract ./wet/*.warc.wet.gz --output corpus_en.jsonl
  fastgpt cc extract ./wet --output corpus_de.jsonl --lang de --workers 8 --rejects rejects.jsonl
  fastgpt cc extract ./wet --output corpus.parquet                            # FineWeb's columns, zstd
  fastgpt cc extract ./wet --output corpus.jsonl --rank 3 --world_size 16     # one shard of 16
  fastgpt cc extract ./wet --output corpus.jsonl --backend ray                # on a Ray cluster
"""


def register(subparsers) -> None:
    cc = subparsers.add_parser("cc", help="download and extract Common Crawl WET files")
    sub = cc.add_subparsers(dest="cc_command", metavar="STEP", required=True)

    p = sub.add_parser(
        "download",
        help="fetch WET files listed in a wet.paths file",
        epilog=EPILOG_DOWNLOAD,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--paths", required=True, help="wet.paths or wet.paths.gz from a Common Crawl release")
    p.add_argument("--n", type=int, default=None, help="only the first N files (default: all)")
    p.add_argument("--out", default="wet", help="directory for the files (default: ./wet)")
    p.add_argument("--base_url", default="https://data.commoncrawl.org/", help="prefix of each path")
    p.add_argument("--workers", type=int, default=4, help="parallel downloads (default: 4)")
    p.add_argument("--retries", type=int, default=5, help="retries per file, with exponential backoff")
    p.set_defaults(func=run_download)

    p = sub.add_parser(
        "extract",
        help="filter and deduplicate WET files into a .jsonl corpus",
        epilog=EPILOG_EXTRACT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="WET files (.warc.wet or .warc.wet.gz), directories or globs")
    p.add_argument(
        "--output",
        required=True,
        help=".jsonl file (one {text, url, source} record per page) or .parquet (FineWeb's columns, zstd)",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--rejects", default=None, help="also write rejected documents with their reason (.jsonl)")
    p.add_argument("--rank", type=int, default=None, help="shard index (default: $SLURM_ARRAY_TASK_ID or 0)")
    p.add_argument("--world_size", type=int, default=None, help="shard count (default: $SLURM_ARRAY_TASK_COUNT or 1)")
    p.add_argument(
        "--overwrite", action="store_true", help="redo a shard that is already complete (its .done manifest holds)"
    )
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="where the per-file work runs")
    p.add_argument("--ray_address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    filters = p.add_argument_group("filters (defaults from Gopher, C4 and FineWeb)")
    for name, typ, default, help_text in config_fields():
        filters.add_argument(f"--{name}", type=typ, default=default, help=f"{help_text} (default: {default})")
    p.set_defaults(func=run_extract)


def run_download(args) -> int:
    from fastgpt.cc.download import download

    results = download(
        args.paths, args.out, n=args.n, base_url=args.base_url, workers=args.workers, retries=args.retries
    )
    done = sum(s == "downloaded" for s in results.values())
    print(f"{done} downloaded, {len(results) - done} already present, in {args.out}", file=sys.stderr)
    return 0


def run_extract(args) -> int:
    from fastgpt.cc.extract import extract
    from fastgpt.cc.filters import FilterConfig

    cfg = FilterConfig(**{name: getattr(args, name) for name, *_ in config_fields()})
    stats = extract(
        args.inputs,
        args.output,
        cfg,
        workers=args.workers,
        rejects=args.rejects,
        rank=args.rank,
        world_size=args.world_size,
        backend=args.backend,
        ray_address=args.ray_address,
        overwrite=args.overwrite,
    )
    summary = {k: stats[k] for k in ("output", "records", "kept", "rejected", "errors", "seconds") if k in stats}
    print(json.dumps(summary), file=sys.stderr)
    return 0
