"""Common Crawl WET files to a clean, deduplicated corpus, one document per line.

`extract` maps over input files in parallel (local processes or Ray tasks): read the
`conversion` records, clean lines, language-ID and quality-filter each document
(`cc_filters`), and hand back the survivors with 64-bit hashes of the document and of
each line. A sequential reduce, always in input-file order so any backend and worker
count give the same bytes, drops exact duplicate documents and the lines that recur in
`line_dedup_min_docs` distinct documents (navigation, footers), then writes the output.
Download lives in `cc_download`, train/eval split in `cc_split`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

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
        yield from _iter_wet_warcio(path, errors, info)
        return
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


def _iter_wet_warcio(path: str, errors: list[str], info: dict | None = None):
    """Fallback reader for machines without fastwarc (slower, stops at the first bad record)."""
    from warcio.archiveiterator import ArchiveIterator

    n = 0
    try:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type == "warcinfo" and info is not None and "dump" not in info:
                    info["dump"] = _crawl_name(rec.content_stream().read())
                if rec.rec_type != "conversion":
                    continue
                n += 1
                h = rec.rec_headers
                url = (h.get_header("WARC-Target-URI") or "").strip().strip("<>")
                lang = h.get_header("WARC-Identified-Content-Language")
                yield (
                    url,
                    rec.content_stream().read(),
                    lang,
                    h.get_header("WARC-Record-ID"),
                    h.get_header("WARC-Date"),
                )
    except Exception as exc:  # warcio raises several unrelated types on bad input
        errors.append(f"unreadable: {type(exc).__name__}: {exc}")
    if n == 0 and not errors:
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


def shard_env(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(rank, world_size) from the flags, else from a Slurm array job, else (0, 1)."""
    if rank is None and "SLURM_ARRAY_TASK_ID" in os.environ and "SLURM_ARRAY_TASK_COUNT" in os.environ:
        rank = int(os.environ["SLURM_ARRAY_TASK_ID"]) - int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        world_size = int(os.environ["SLURM_ARRAY_TASK_COUNT"])
    rank, world_size = rank or 0, world_size or 1
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    return rank, world_size


def shard_path(output: str, rank: int, world_size: int) -> str:
    """corpus.jsonl -> corpus-00003-of-00008.jsonl when sharded; unchanged otherwise."""
    if world_size == 1:
        return output
    p = Path(output)
    suffix = "".join(p.suffixes[-1:])
    return str(p.with_name(f"{p.name[: len(p.name) - len(suffix)]}-{rank:05d}-of-{world_size:05d}{suffix}"))


def _map_local(paths, cfg, with_rejects, workers, with_meta=False):
    if workers <= 1 or len(paths) == 1:
        for i, p in enumerate(paths):
            yield i, process_file(p, cfg, with_rejects, with_meta)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ray = sys.modules.get("ray")
    if not (ray is not None and ray.is_initialized()):
        # fork shares one copy of the language-ID model (loaded here first) with every worker.
        from fastgpt.cc.langid import classify

        classify("warm up")
        ctx = multiprocessing.get_context("fork")
    else:
        # spawn beside a running Ray client: fork would copy its threads mid-state.
        ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(paths)), mp_context=ctx) as pool:
        futures = {pool.submit(process_file, p, cfg, with_rejects, with_meta): i for i, p in enumerate(paths)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def _map_ray(paths, cfg, with_rejects, address, with_meta=False):
    import ray

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    task = ray.remote(num_cpus=1)(process_file)
    refs = {task.remote(p, cfg, with_rejects, with_meta): i for i, p in enumerate(paths)}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            yield refs[ref], ray.get(ref)


def _atomic_open(path: str):
    tmp = f"{path}.tmp{os.getpid()}"
    return tmp, open(tmp, "w", encoding="utf-8", newline="\n")


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

    With world_size > 1 only every world_size-th input file (from `rank`) is processed,
    into `<stem>-RRRRR-of-WWWWW<ext>`. A `<output>.done` marker makes reruns skip a finished
    output (unless `overwrite`), so a rerun array job only redoes the shards that failed.
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
    rank, world_size = shard_env(rank, world_size)
    paths = expand_inputs(inputs)[rank::world_size]
    output = shard_path(output, rank, world_size)
    if rejects:
        rejects = shard_path(rejects, rank, world_size)
    marker = output + ".done"
    if not overwrite and os.path.exists(marker) and os.path.exists(output):
        print(f"fastgpt cc extract: {output} is complete ({marker}); skipping", file=sys.stderr)
        with open(output + ".stats.json", encoding="utf-8") as f:
            return json.load(f)
    if not paths:
        raise ValueError(f"no input files for shard {rank} of {world_size}")
    t0 = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    if backend == "ray":
        results = _map_ray(paths, cfg, bool(rejects), ray_address, as_parquet)
    elif backend == "local":
        results = _map_local(paths, cfg, bool(rejects), workers, as_parquet)
    else:
        raise ValueError(f"unknown backend {backend!r}: use local or ray")

    workdir = f"{output}.parts{os.getpid()}"
    os.makedirs(workdir, exist_ok=True)
    try:
        meta: list[dict | None] = [None] * len(paths)
        bar = tqdm(total=len(paths), unit="file", desc="extract", disable=None if progress is None else not progress)
        kept = 0
        for i, res in results:
            # Spill each file's survivors to disk at once so RAM holds only hashes.
            with open(os.path.join(workdir, f"{i:06d}.jsonl"), "wb") as f:
                f.write(res.pop("docs"))
            with open(os.path.join(workdir, f"{i:06d}.rejects.jsonl"), "wb") as f:
                f.write(res.pop("rejects"))
            meta[i] = res
            kept += len(res["doc_hashes"])
            bar.update(1)
            bar.set_postfix(docs=kept)
        bar.close()
        stats = _reduce(paths, meta, workdir, output, rejects, cfg)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    stats.update(
        seconds=round(time.perf_counter() - t0, 3),
        rank=rank,
        world_size=world_size,
        backend=backend,
        config=asdict(cfg),
    )
    tmp, f = _atomic_open(output + ".stats.json")
    with f:
        json.dump(stats, f, indent=1)
    os.replace(tmp, output + ".stats.json")
    for name, info in stats["files"].items():
        for err in info["errors"]:
            print(f"fastgpt cc extract: {name}: {err}", file=sys.stderr)
    if stats["records"] == 0:
        raise ValueError(f"no WET records could be read from {len(paths)} input file(s); see {output}.stats.json")
    open(marker, "w").close()
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
    if as_parquet:
        rows = parquet.ParquetRows(output, _parquet_schema())
    else:
        tmp, out = _atomic_open(output)
    rtmp, rej = _atomic_open(rejects_path) if rejects_path else (None, None)
    g = 0
    try:
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
        if as_parquet:
            rows.close()
        else:
            out.close()
            os.replace(tmp, output)
        if rej is not None:
            rej.close()
            os.replace(rtmp, rejects_path)
    except BaseException:
        if as_parquet:
            rows.abort()
        else:
            out.close()
            os.unlink(tmp)
        if rej is not None:
            rej.close()
            os.unlink(rtmp)
        raise
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
