"""The `curate` stage: the configured sources (or `--input` paths) through pipeline/curate/run.py."""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from pipeline.curate.records import CurateError
from pipeline.curate.run import run_curate
from pipeline.curate.sources import infer_source, list_source
from pipeline.layout import Location
from pipeline.options import ConfigFlag, PathFlag
from pipeline.stage import Context, Stage


def curate(ctx: Context) -> dict:
    report = run_curate(ctx.cfg, ctx.layout, progress=lambda line: print(f"   {line}", flush=True))
    out = report.get("output", {})
    ctx.tracker.log_metrics(report_metrics(report))
    for name in ("report.json", "report.html"):
        ctx.tracker.log_artifact(ctx.layout.curated / name, "curate")
    print(f"   kept {out.get('docs', 0):,} documents ({out.get('bytes', 0) / 1e6:.1f} MB); rejects: "
          + (", ".join(f"{k} {v}" for k, v in sorted(report.get("rejects", {}).items())) or "none"), flush=True)
    print(f"   report: {ctx.layout.curated / 'report.html'}", flush=True)
    return {"output": out, "rejects": report.get("rejects", {})}


def report_metrics(report: dict) -> dict[str, float]:
    """The curation report's counts as MLflow metrics."""
    out = report.get("output", {})
    metrics = {"curate/docs_out": out.get("docs", 0), "curate/bytes_out": out.get("bytes", 0)}
    metrics.update({f"curate/rejects/{reason}": n for reason, n in report.get("rejects", {}).items()})
    metrics.update({f"curate/pii/{kind}": n for kind, n in report.get("pii", {}).items()})
    metrics.update({f"curate/languages/{lang}": c["kept"] for lang, c in report.get("languages", {}).items()})
    metrics.update({f"curate/steps/{step}/docs": s["docs"] for step, s in report.get("steps", {}).items()})
    metrics.update({f"curate/dedup/{kind}/duplicates": d["duplicates"]
                    for kind, d in (report.get("dedup") or {}).items() if isinstance(d, dict) and "duplicates" in d})
    return metrics


def check_sources(ctx: Context) -> None:
    """Fail before starting Ray when a configured source is missing, matches no file, or holds only
    empty files (0 bytes), naming every one."""
    sample_pending = "sample" in ctx.planned
    problems = []
    for src in ctx.cfg.data.sources:
        if sample_pending and "{sample}" in src.path:
            continue  # the sample stage is about to build it
        try:
            list_source(src, ctx.layout)
        except CurateError as e:
            problems.append(str(e))
    if problems:
        raise CurateError("; ".join(problems) if len(problems) == 1 else
                          f"{len(problems)} sources cannot be read:\n  - " + "\n  - ".join(problems))


def source_files(ctx: Context) -> dict:
    """(path, size, mtime) of every raw input file, so an edited source reruns curation."""
    entries = []
    for src in ctx.cfg.data.sources:
        path = ctx.layout.expand(src.path)
        if "://" in path:  # a storage URI: its listing (names, sizes, times), as for local files
            try:
                f = list_source(src, ctx.layout)
            except CurateError:  # not there yet (check_sources reports it when it matters)
                entries.append([src.name, path])
                continue
            entries += [[src.name, p, size, mtime] for p, size, mtime in zip(f.paths, f.sizes, f.mtimes or [])]
            continue
        matches = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
        for m in matches:
            for f in _walk(Path(m)):
                st = f.stat()
                entries.append([src.name, str(f), st.st_size, st.st_mtime_ns])
    return {"inputs": entries}


def _walk(path: Path):
    if path.is_file():
        yield path
    elif path.is_dir():
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                yield Path(root) / name


def input_sources(paths: list[str]) -> dict[str, Any]:
    """`--input PATH` (repeatable) in place of the configured sources: one source per path, its
    format from the extension (a mixed folder: each file's own), kind auto (each document's own),
    and no sample corpus."""
    sources = []
    for path in paths:
        sources.append(infer_source(path, {s.name for s in sources}))
    return {"data.sources": [s.model_dump() for s in sources], "data.sample": False}


STAGE = Stage(
    name="curate",
    help="read the raw sources, clean, filter, redact, deduplicate (Ray Data)",
    action=curate,
    upstream=("sample",),
    sections=("data", "curate"),
    locations=(Location("curated", "curated", "curated Parquet shards, rejects/, report.json, report.html"),),
    outputs=(("curated", "report.json"),),
    flags=(ConfigFlag("--input", values=input_sources, repeat=True, explicit=True, metavar="PATH",
                      help="a file, folder or glob to curate instead of data.sources (repeatable; format from "
                           "the extension, each document's kind from its content)"),
           PathFlag("--output", "curated", "folder for the curated shards, rejects/ and report.json")),
    fingerprint_inputs=source_files,
    check=check_sources,
    uses_ray=True,
)
