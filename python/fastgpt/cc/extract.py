"""Common Crawl WET files to a clean, deduplicated corpus: JSON lines, or Parquet with FineWeb's columns.

`extract` maps over input files in parallel (local processes or Ray tasks): read the
`conversion` records, clean lines, language-ID and quality-filter each document
(`cc_filters`), and hand back the survivors with 64-bit hashes of the document and of
each line. A sequential reduce, always in input-file order so any backend and worker
count give the same bytes, drops exact duplicate documents and the lines that recur in
`line_dedup_min_docs` distinct documents (navigation, footers), then writes the output.
Shard choice, names, completion and the local/Ray executors are `fastgpt._util.shards`'.
Download lives in `cc.download`, the train/eval split in `data.split`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import TextIO

import numpy as np

from fastgpt._util import shards
from fastgpt._util.atomic import atomic_path, check_writable, remove_stale, temp_name
from fastgpt.cc.filters import ISO639_3, FilterConfig, clean_lines, doc_hashes, quality_reason
from fastgpt.data import inputs as inputs_
from fastgpt.data import parquet

WET_SUFFIXES = (".wet", ".wet.gz")
# `--output corpus.parquet`: FineWeb's columns, so datatrove and `datasets` read it as they read FineWeb.
PARQUET_COLUMNS = ("text", "id", "url", "date", "dump", "file_path", "language", "language_score")


def _parquet_schema():
    pa = parquet.require_pyarrow()
    return pa.schema([(name, pa.float64() if name == "language_score" else pa.string()) for name in PARQUET_COLUMNS])


def _wet_payload(rec, errors: list[str]):
    """(url, text bytes, language header, record id, date) of a record, or None if the record is damaged."""
    declared = rec.headers.get("Content-Length")
    body = rec.reader.read()
    if declared is None or not declared.strip().isdigit() or len(body) != int(declared):
        errors.append(f"truncated record at offset {rec.stream_pos}: file or gzip stream ends mid-record")
        return None
    if b"\r\nWARC/1." in body:
        # A Content-Length too large swallows the records after it; their headers show up in the text.
        errors.append(f"malformed record at offset {rec.stream_pos}: Content-Length runs into the next record")
        return None
    url = rec.headers.get("WARC-Target-URI", "").strip().strip("<>")
    h = rec.headers
    return url, body, h.get("WARC-Identified-Content-Language"), h.get("WARC-Record-ID"), h.get("WARC-Date")


def _crawl_name(payload: bytes) -> str | None:
    """The crawl (`CC-MAIN-2024-22`) from a warcinfo record's `isPartOf` field."""
    for line in payload.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "isPartOf" and value.strip():
            return value.strip()
    return None


def iter_wet(path: str | os.PathLike, errors: list[str], info: dict | None = None):
    """Yield (url, text bytes, language header, record id, date) for each conversion record of
    a WET file (plain or gzip). Problems are appended to `errors`; reading goes on past them
    when it can. With `info`, the crawl named by the warcinfo record goes into `info["dump"]`."""
    path = os.fspath(path)
    if os.path.getsize(path) == 0:
        errors.append("empty file")
        return
    try:
        from fastwarc.warc import ArchiveIterator, WarcRecordType
    except ImportError:
        raise ValueError("reading WET files needs fastwarc: pip install 'fastgpt[cc]'") from None
    # fastwarc reports a record whose Content-Length is too short only when the next header
    # fails to parse, so each record is held back until the one after it parsed. On failure
    # the held record is dropped and reading restarts in quirks mode (which resynchronises
    # on the next "WARC/" line), skipping what was already read.
    pending, last_pos, quirks, seen_any = None, -1, False, False
    kinds = WarcRecordType.conversion if info is None else WarcRecordType.conversion | WarcRecordType.warcinfo
    while True:
        try:
            for rec in ArchiveIterator(path, record_types=kinds, fsspec_args=False, quirks_mode=quirks):
                if rec.record_type == WarcRecordType.warcinfo:
                    if info is not None and "dump" not in info:
                        info["dump"] = _crawl_name(rec.reader.read())
                    continue
                seen_any = True
                if rec.stream_pos <= last_pos:
                    continue
                item = _wet_payload(rec, errors)
                if pending is not None:
                    yield pending
                pending, last_pos = item, rec.stream_pos
            break
        except OSError as exc:
            if not seen_any:
                errors.append(f"not a WET file: {exc}")
                return
            if quirks:
                errors.append(f"unreadable after offset {last_pos}: {exc}")
                break
            errors.append(f"malformed record at offset {last_pos}: {exc} (Content-Length too short?)")
            pending, quirks = None, True
    if pending is not None:
        yield pending
    if not seen_any:
        errors.append("no conversion records: not a WET file?")


def process_file(path: str, cfg: FilterConfig, with_rejects: bool = False, with_meta: bool = False) -> dict:
    """The map step on one WET file: filtered documents as JSON lines plus hashes and counts.
    `with_meta` adds FineWeb's columns (id, date, dump, file_path, language, language_score)."""
    from fastgpt.cc.langid import classify

    scored: list = [None]

    def score(text: str):
        scored[0] = classify(text)  # kept for the language columns
        return scored[0]

    info: dict | None = {} if with_meta else None
    source = os.path.basename(path)
    errors: list[str] = []
    rejected: dict[str, int] = {}
    out, rejects, hashes, offsets, lhashes, lfirst = [], [], [], [0], [], []
    records = payload_bytes = boiler_lines = 0
    header_code = ISO639_3.get(cfg.lang)
    for url, body, lang_header, record_id, date in iter_wet(path, errors, info):
        records += 1
        payload_bytes += len(body)
        text = body.decode("utf-8", errors="replace")
        reason = None
        # CC's header lists up to three detected languages; a page without ours is skipped unread.
        if header_code and lang_header and header_code not in lang_header:
            reason = "lang_header"
        else:
            lines, dropped = clean_lines(text)
            boiler_lines += dropped
            reason = quality_reason(lines, cfg, score)
        if reason is not None:
            rejected[reason] = rejected.get(reason, 0) + 1
            if with_rejects:
                rejects.append(
                    json.dumps({"reason": reason, "url": url, "source": source, "text": text}, ensure_ascii=False)
                )
            continue
        text = "\n".join(lines)
        doc = {"text": text, "url": url, "source": source}
        if info is not None:
            language, language_score = scored[0] or (None, None)
            doc.update(
                id=record_id,
                date=date,
                dump=info.get("dump") or _crawl_from_path(path),
                file_path=path,
                language=language,
                language_score=None if language_score is None else round(float(language_score), 4),
            )
        out.append(json.dumps(doc, ensure_ascii=False))
        dh, lh = doc_hashes(lines)
        hashes.append(dh)
        seen: set[int] = set()
        for h in lh.tolist():
            lfirst.append(h not in seen)
            seen.add(h)
        lhashes.append(lh)
        offsets.append(offsets[-1] + len(lines))
    return {
        "index": None,
        "path": path,
        "records": records,
        "payload_bytes": payload_bytes,
        "file_bytes": os.path.getsize(path),
        "errors": errors,
        "rejected": rejected,
        "boilerplate_pattern_lines": boiler_lines,
        "docs": ("\n".join(out) + "\n").encode() if out else b"",
        "rejects": ("\n".join(rejects) + "\n").encode() if rejects else b"",
        "doc_hashes": np.array(hashes, dtype=np.uint64),
        "line_offsets": np.array(offsets, dtype=np.int64),
        "line_hashes": np.concatenate(lhashes) if lhashes else np.zeros(0, dtype=np.uint64),
        "line_first": np.array(lfirst, dtype=bool),
    }


def _crawl_from_path(path: str) -> str | None:
    """`CC-MAIN-2024-22` when the path names the crawl (as Common Crawl's own paths do)."""
    match = re.search(r"CC-MAIN-\d{4}-\d{2}(?!\d)", path)
    return match.group(0) if match else None


def expand_inputs(inputs) -> list[str]:
    """Files, directories (their *.wet and *.wet.gz files) and globs, as `fastgpt.data.inputs` finds them."""
    found = inputs_.expand_inputs(
        inputs, accept=lambda p: p.name.endswith(WET_SUFFIXES), kind="WET files (.wet, .wet.gz)", recursive=False
    )
    return [str(p) for p in found]


@contextlib.contextmanager
def _atomic_text(path: str) -> Iterator[TextIO]:
    """A text file written under `atomic_path`: in place only if the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        yield f


def _warm_langid() -> None:
    """Loads the language-ID model before forking, so every worker shares one copy."""
    from fastgpt.cc.langid import classify

    classify("warm up")


def extract(
    inputs,
    output: str,
    cfg: FilterConfig | None = None,
    *,
    workers: int | None = None,
    rejects: str | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    progress: bool | None = None,
    overwrite: bool = False,
) -> dict:
    """Filter WET files into `output` (.jsonl or .parquet); returns the stats also saved as `<output>.stats.json`.

    With `rank`/`world_size` (or a Slurm job array) only every world_size-th input file
    (from `rank`) is processed, into `NAME.RRRRR-of-WWWWW.EXT`; a shard whose completion
    manifest (`<shard>.done`) holds is skipped unless `overwrite`, so a rerun array job only
    redoes the shards that failed.
    """
    from tqdm import tqdm

    cfg = cfg or FilterConfig()
    if not output.endswith((".jsonl", ".parquet")):
        # Web pages span lines: a .txt (one document per line) could not hold them unchanged.
        raise ValueError(
            f"{output}: the output must be .jsonl (JSON lines keep each page's line breaks) "
            "or .parquet (FineWeb's columns)"
        )
    as_parquet = output.endswith(".parquet")
    if as_parquet:
        parquet.require_pyarrow(output)
    if backend not in shards.BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use local or ray")
    shard = shards.resolve_shard(rank, world_size)
    paths = shard.select(expand_inputs(inputs))
    output = str(shard.path(output))
    if rejects:
        rejects = str(shard.path(rejects))
    if shard.sharded and not overwrite and shards.completed(output) is not None:
        print(f"fastgpt cc extract: {output} is complete ({shards.manifest_path(output)}); skipping", file=sys.stderr)
        with open(output + ".stats.json", encoding="utf-8") as f:
            return json.load(f)
    if not paths:
        raise ValueError(f"no input files for shard {shard.rank} of {shard.world_size}")
    for target in [output, *([rejects] if rejects else [])]:
        check_writable(target)  # now, not after hours of filtering
    shards.begin(output)
    for side_output in [output + ".stats.json", *([rejects] if rejects else [])]:
        remove_stale(side_output)
    t0 = time.perf_counter()
    results = shards.map_unordered(
        process_file,
        [(p, cfg, bool(rejects), as_parquet) for p in paths],
        backend=backend,
        workers=workers or os.cpu_count() or 1,
        ray_address=ray_address,
        before_fork=_warm_langid,
    )
    # Scratch space named as atomic.py names temporaries, so a killed run's is cleaned on rerun.
    workdir = temp_name(output)
    workdir.mkdir()
    try:
        meta: list[dict] = []
        bar = tqdm(total=len(paths), unit="file", desc="extract", disable=None if progress is None else not progress)
        kept = 0
        by_index: dict[int, dict] = {}
        for i, res in results:
            # Spill each file's survivors to disk at once so RAM holds only hashes.
            (workdir / f"{i:06d}.jsonl").write_bytes(res.pop("docs"))
            (workdir / f"{i:06d}.rejects.jsonl").write_bytes(res.pop("rejects"))
            by_index[i] = res
            kept += len(res["doc_hashes"])
            bar.update(1)
            bar.set_postfix(docs=kept)
        bar.close()
        meta = [by_index[i] for i in range(len(paths))]
        for path, m in zip(paths, meta):
            for err in m["errors"]:
                print(f"fastgpt cc extract: {path}: {err}", file=sys.stderr)
        if sum(m["records"] for m in meta) == 0:  # nothing written: an empty output would look like a result
            names = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
            raise ValueError(f"no WET records could be read from {len(paths)} input file(s): {names}")
        stats = _reduce(paths, meta, str(workdir), output, rejects, cfg)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    stats.update(
        seconds=round(time.perf_counter() - t0, 3),
        rank=shard.rank,
        world_size=shard.world_size,
        backend=backend,
        config=asdict(cfg),
    )
    with atomic_path(output + ".stats.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=1), encoding="utf-8")
    shards.finish(output, [output, output + ".stats.json", *([rejects] if rejects else [])], {"kept": stats["kept"]})
    return stats


def _reduce(paths, meta, workdir, output, rejects_path, cfg) -> dict:
    """Cross-document dedup in input order, then write the output (and rejects) atomically."""
    doc_hashes = np.concatenate([m["doc_hashes"] for m in meta])
    n_docs = len(doc_hashes)
    unique = np.zeros(n_docs, dtype=bool)
    unique[np.unique(doc_hashes, return_index=True)[1]] = True  # first occurrence wins
    # Line boilerplate: count each line once per distinct document, ignoring exact duplicates
    # (a page copied five times must not turn its own lines into boilerplate).
    line_hash = np.concatenate([m["line_hashes"] for m in meta])
    counts_per_doc = np.concatenate([np.diff(m["line_offsets"]) for m in meta])
    line_doc = np.repeat(np.arange(n_docs), counts_per_doc)
    countable = unique[line_doc] & np.concatenate([m["line_first"] for m in meta]) & (line_hash != 0)
    values, counts = np.unique(line_hash[countable], return_counts=True)
    remove = np.isin(line_hash, values[counts >= cfg.line_dedup_min_docs])
    line_start = np.concatenate(([0], np.cumsum(counts_per_doc)))

    as_parquet = output.endswith(".parquet")
    removed_lines = kept = kept_bytes = 0
    files: dict[str, dict] = {}
    g = 0
    with contextlib.ExitStack() as stack:
        if as_parquet:
            rows = stack.enter_context(parquet.ParquetRows(output, _parquet_schema()))
        else:
            out = stack.enter_context(_atomic_text(output))
        rej = stack.enter_context(_atomic_text(rejects_path)) if rejects_path else None
        for i, m in enumerate(meta):
            info = {
                "records": m["records"],
                "file_bytes": m["file_bytes"],
                "payload_bytes": m["payload_bytes"],
                "kept": 0,
                "rejected": dict(m["rejected"]),
                "errors": m["errors"],
            }
            files[paths[i]] = info
            with open(os.path.join(workdir, f"{i:06d}.jsonl"), encoding="utf-8") as f:
                for line in f:
                    reason = None
                    doc = None
                    drop = remove[line_start[g] : line_start[g + 1]]
                    if not unique[g]:
                        reason = "exact_duplicate"
                    elif drop.any():
                        doc = json.loads(line)
                        lines = [s for s, d in zip(doc["text"].split("\n"), drop.tolist()) if not d]
                        removed_lines += int(drop.sum())
                        if sum(len(s.split()) for s in lines) < cfg.min_words:
                            reason = "boilerplate_lines"
                        else:
                            doc["text"] = "\n".join(lines)
                    g += 1
                    if reason is not None:
                        info["rejected"][reason] = info["rejected"].get(reason, 0) + 1
                        if rej is not None:
                            doc = doc or json.loads(line)
                            rej.write(json.dumps({"reason": reason, **doc}, ensure_ascii=False) + "\n")
                        continue
                    if as_parquet:
                        doc = doc or json.loads(line)
                        rows.write({name: doc.get(name) for name in PARQUET_COLUMNS})
                        info["kept"] += 1
                        kept += 1
                        kept_bytes += len(doc["text"].encode())
                        continue
                    if doc is not None:
                        line = json.dumps(doc, ensure_ascii=False) + "\n"
                    out.write(line)
                    info["kept"] += 1
                    kept += 1
                    kept_bytes += len(line)
            if rej is not None:
                with open(os.path.join(workdir, f"{i:06d}.rejects.jsonl"), encoding="utf-8") as f:
                    shutil.copyfileobj(f, rej)
    rejected: dict[str, int] = {}
    for info in files.values():
        for k, v in info["rejected"].items():
            rejected[k] = rejected.get(k, 0) + v
    return {
        "output": output,
        "inputs": len(paths),
        "records": sum(i["records"] for i in files.values()),
        "file_bytes": sum(i["file_bytes"] for i in files.values()),
        "payload_bytes": sum(i["payload_bytes"] for i in files.values()),
        "kept": kept,
        "kept_bytes": kept_bytes,
        "rejected": dict(sorted(rejected.items())),
        "lines_removed": {
            "boilerplate_pattern": sum(m["boilerplate_pattern_lines"] for m in meta),
            "cross_document": removed_lines,
        },
        "errors": sum(len(i["errors"]) for i in files.values()),
        "files": files,
    }
