"""The pipeline's stages: what each reads, what its fingerprint covers, what it does.

A stage's fingerprint hashes its own config section(s), the fingerprints of the
stages it reads from and, for the first stage, the raw input files (path, size,
mtime). A finished stage writes `<root>/state/<stage>.json`; a later run skips
the stage when that record's fingerprint matches and its outputs still exist.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline.config import Config
from pipeline.layout import Layout
from pipeline.tracking import Tracker

STAGES = ["sample", "curate", "tokenizer", "tokenize", "train", "eval", "generate"]


@dataclass
class Context:
    cfg: Config
    layout: Layout
    tracker: Tracker
    fingerprint: str = ""
    """The running stage's fingerprint (set by run_stage)."""
    forced: bool = False
    """The stage runs because the user forced it (start over rather than resume)."""


@dataclass(frozen=True)
class Stage:
    name: str
    upstream: tuple[str, ...]
    sections: tuple[str, ...]
    """Config sections whose values change this stage's result."""
    outputs: Callable[[Layout], list[Path]]
    action: Callable[[Context], dict]
    """Does the work; returns a JSON-safe summary (metrics are logged inside)."""


def hash_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def source_files_fingerprint(cfg: Config, layout: Layout) -> list:
    """(path, size, mtime) of every raw input file, so an edited source reruns curation."""
    entries = []
    for src in cfg.data.sources:
        path = layout.expand(src.path)
        if "://" in path:
            entries.append([src.name, path])
            continue
        matches = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
        for m in matches:
            for f in _walk(Path(m)):
                st = f.stat()
                entries.append([src.name, str(f), st.st_size, st.st_mtime_ns])
    return entries


def _walk(path: Path):
    if path.is_file():
        yield path
    elif path.is_dir():
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                yield Path(root) / name


class StageRecords:
    def __init__(self, layout: Layout):
        self.dir = layout.state

    def path(self, stage: str) -> Path:
        return self.dir / f"{stage}.json"

    def read(self, stage: str) -> dict | None:
        p = self.path(stage)
        return json.loads(p.read_text()) if p.is_file() else None

    def write(self, stage: str, record: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path(stage).with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str))
        tmp.replace(self.path(stage))

    def clear(self, stage: str) -> None:
        self.path(stage).unlink(missing_ok=True)


def fingerprint(stage: Stage, ctx: Context, records: StageRecords) -> str:
    cfg = ctx.cfg
    parts = {"stage": stage.name, "sections": {s: getattr(cfg, s).model_dump(mode="json")
                                               for s in stage.sections}}
    # Paths under the root are part of the fingerprint only through the upstream stages.
    parts["upstream"] = {u: (records.read(u) or {}).get("fingerprint") for u in stage.upstream}
    if stage.name == "curate":
        parts["inputs"] = source_files_fingerprint(cfg, ctx.layout)
    if stage.name == "sample":
        parts["python"] = platform.python_version()
    return hash_json(parts)


def run_stage(stage: Stage, ctx: Context, records: StageRecords, force: bool = False,
              record: bool = True) -> tuple[bool, dict]:
    """Run one stage unless it is finished with the same fingerprint. Returns (ran, summary).

    With record=False (explicit paths) the stage neither reads nor writes its record."""
    fp = fingerprint(stage, ctx, records)
    done = records.read(stage.name) if record else None
    outputs_exist = all(p.exists() for p in stage.outputs(ctx.layout))
    if not force and done and done.get("fingerprint") == fp and outputs_exist:
        print(f"== {stage.name}: unchanged, skipped (fingerprint {fp[:12]})", flush=True)
        return False, done.get("summary", {})
    print(f"== {stage.name}", flush=True)
    if record:
        records.clear(stage.name)
    ctx.fingerprint, ctx.forced = fp, force
    start = time.perf_counter()
    tags = {"ownlm.fingerprint": fp, **{f"ownlm.input.{u}": str((records.read(u) or {}).get("fingerprint"))
                                         for u in stage.upstream}}
    with ctx.tracker.run(stage.name, stage=stage.name, tags=tags):
        summary = stage.action(ctx)
        seconds = time.perf_counter() - start
        ctx.tracker.log_metrics({f"{stage.name}/seconds": seconds})
        run_id = ctx.tracker.run_id
    if record:
        records.write(stage.name, {"fingerprint": fp, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                   "seconds": round(seconds, 1), "mlflow_run_id": run_id, "summary": summary})
    print(f"   {stage.name} done in {seconds:.1f}s", flush=True)
    return True, summary
