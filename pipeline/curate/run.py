"""Curation on Ray Data: sources -> shards -> clean -> dedup -> finish -> output + report.

    clean   one task per shard: read, normalize, split, language, quality, pii, decontaminate,
            dedup keys; every row (kept or rejected) to `work/clean/shard-N.parquet`
    dedup   Ray shuffles over the key columns only: exact and fuzzy verdicts (see dedup.py)
    finish  one task per shard: verdicts and mixture weight applied, part files and rejects written

Rejected rows travel with the kept ones (their `reason` set), so every input row ends up in
the output or in `rejects/`, and the report is summed from the rows the writer writes.
Everything is built in a work folder beside the output (`.<name>.work`) and moved into place
at the end, so a reader never sees half an output. A killed run leaves the work folder; the
next run with the same inputs and config finds it and redoes only the shards not finished
(and the dedup pass if it had not finished), with the same result. The caller owns Ray
(`ray.init`); this module only builds and runs datasets.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa

from model.atomic import publish_dir
from pipeline.config import Config, SourceConfig
from pipeline.config.curate import CurateConfig
from pipeline.curate.decontaminate import Decontaminate, EvalIndex, build_index
from pipeline.curate.dedup import DedupResult, clean_paths, find_duplicates, shard_verdicts
from pipeline.curate.langid import IdentifyLanguage
from pipeline.curate.minhash import DedupKeys
from pipeline.curate.normalize import Normalize
from pipeline.curate.partitions import shuffle_partitions
from pipeline.curate.pii import RedactPII
from pipeline.curate.quality import QualityFilter
from pipeline.curate.reasons import explain
from pipeline.curate.records import KEPT, CurateError
from pipeline.curate.report import Tally, build_report
from pipeline.curate.report_html import render_html
from pipeline.curate.shards import ShardSpec, clean_shard, finish_shard, plan_shards, shard_name
from pipeline.curate.sources import list_source
from pipeline.curate.split import SplitLong
from pipeline.layout import Layout
from pipeline.progress import Progress

__all__ = ["run_curate", "CurateError", "batch_steps"]

WORK_FORMAT = 3
"""Bump when the work folder's contents change meaning: an older one is then discarded."""


def batch_steps(cfg: CurateConfig, index: EvalIndex | None = None) -> list[tuple[str, Callable[[pa.Table], pa.Table]]]:
    """The per-batch steps switched on in `cfg`, in order (dedup, which needs a shuffle, comes after)."""
    steps: list[tuple[str, Callable]] = []
    if cfg.normalize.enabled:
        steps.append(("normalize", Normalize(cfg.normalize)))
    if cfg.split.enabled:
        steps.append(("split", SplitLong(cfg.split)))
    if cfg.language.enabled:
        steps.append(("language", IdentifyLanguage(cfg.language)))
    if cfg.quality.enabled:
        steps.append(("quality", QualityFilter.from_config(cfg.quality)))
    if cfg.pii.enabled and cfg.pii.kinds:
        steps.append(("pii", RedactPII(cfg.pii)))
    if index is not None and not index.empty:
        steps.append(("decontaminate", Decontaminate(index, cfg.decontaminate.mode)))
    return steps


def dedup_steps(cfg: CurateConfig) -> list[str]:
    return (["exact_dedup"] if cfg.dedup.exact else []) + (["fuzzy_dedup"] if cfg.dedup.fuzzy.enabled else [])


@dataclass(frozen=True)
class WorkDir:
    """The work folder of one output: clean shards, dedup verdicts, finished parts, tallies."""

    root: Path

    @property
    def clean(self) -> Path:
        return self.root / "clean"

    @property
    def dedup(self) -> Path:
        return self.root / "dedup"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def tallies(self) -> Path:
        return self.root / "tallies"

    def clean_file(self, index: int) -> Path:
        return self.clean / f"{shard_name(index)}.parquet"

    def tally_file(self, index: int) -> Path:
        return self.tallies / f"{shard_name(index)}.json"

    def open(self, fingerprint: str) -> None:
        """Keep a work folder left by a run with this fingerprint; start afresh otherwise."""
        plan = self.root / "plan.json"
        try:
            same = json.loads(plan.read_text())["fingerprint"] == fingerprint
        except (OSError, ValueError, KeyError):
            same = False
        if not same:
            shutil.rmtree(self.root, ignore_errors=True)
        for folder in (self.clean, self.dedup, self.final, self.tallies):
            folder.mkdir(parents=True, exist_ok=True)
            for leftover in folder.glob("*.tmp*"):  # half-written by a killed task
                leftover.unlink()
        plan.write_text(json.dumps({"fingerprint": fingerprint}) + "\n")


def run_curate(cfg: Config, layout: Layout, output_dir: Path | None = None, inputs: list[SourceConfig] | None = None,
               progress: Callable[[str], None] | None = None) -> dict:
    """Curate `inputs` (default: `cfg.data.sources`, their paths expanded by `layout`) into
    `output_dir` (default: `layout.curated`); returns the report.

    Writes `part-*.parquet` (id, text, source, kind, meta), `rejects/part-*.parquet` (the same
    plus reason), `report.json` and `report.html`. Raises CurateError for a missing or empty
    source, an unreadable evaluation file, or a corpus with nothing left. `progress` receives
    one line per finished pass.
    """
    say = progress or (lambda line: None)
    start = time.perf_counter()
    c = cfg.curate
    sources = list(cfg.data.sources if inputs is None else inputs)
    if not sources:
        raise CurateError("no sources to curate: add some under data.sources")
    files = [list_source(src, layout) for src in sources]  # fails fast, before any Ray work
    index = build_index(c.decontaminate, cfg.root) if c.decontaminate.enabled else None
    specs = plan_shards(sources, files, c.shards.target_bytes, c.shards.min_shards)
    output_dir = Path(output_dir or layout.curated)
    work = WorkDir(output_dir.with_name(f".{output_dir.name}.work"))
    work.open(_fingerprint(c, specs, index))
    try:
        wall: dict[str, float] = {}
        t = time.perf_counter()
        say(f"clean: {len(specs)} shards of {len(sources)} source(s)...")
        clean = _clean(specs, c, index, work, say)
        wall["clean"] = time.perf_counter() - t
        say(f"clean: done in {wall['clean']:.1f} s ({clean['reused']} shard(s) kept from an interrupted run)")
        t = time.perf_counter()
        dedup = _dedup(specs, c, work)
        wall["dedup"] = time.perf_counter() - t
        found = ", ".join(f"{k} {v['duplicates']}" for k, v in dedup.stats.items() if isinstance(v, dict))
        say(f"dedup: done in {wall['dedup']:.1f} s ({found or 'off'})")
        t = time.perf_counter()
        finished = _finish(specs, c, dedup, work, say)
        wall["finish"] = time.perf_counter() - t
        say(f"finish: done in {wall['finish']:.1f} s")
        report = _report(sources, files, specs, c, index, clean, dedup, finished, wall, output_dir,
                         time.perf_counter() - start)
        (work.final / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (work.final / "report.html").write_text(render_html(report))
    except CurateError:
        shutil.rmtree(work.root, ignore_errors=True)
        raise
    publish_dir(work.final, output_dir)
    shutil.rmtree(work.root, ignore_errors=True)
    return report


def _fingerprint(c: CurateConfig, specs: list[ShardSpec], index: EvalIndex | None) -> str:
    evals = [[f, Path(f).stat().st_size, Path(f).stat().st_mtime] for f in index.files] if index else []
    blob = json.dumps({"format": WORK_FORMAT, "curate": c.model_dump(mode="json"),
                       "shards": [s.fingerprint() for s in specs], "eval": evals}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------- the three passes


@dataclass(frozen=True)
class ShardTask:
    """Runs `fn` on the shard named by each row of a Ray Data batch; returns its JSON summary."""

    specs: dict[int, ShardSpec]
    fn: Callable[[ShardSpec], dict]

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.table({"summary": [json.dumps(self.fn(self.specs[i])) for i in batch["shard"].to_pylist()]})


def run_shard_tasks(specs: list[ShardSpec], fn: Callable[[ShardSpec], dict], progress: Progress | None = None,
                    docs: Callable[[dict], int] = lambda summary: summary.get("rows", 0)) -> list[dict]:
    """One Ray Data task per shard (as many at a time as there are CPUs); each summary is counted
    by `progress` as it arrives (its input bytes, and `docs(summary)` documents)."""
    if not specs:
        return []
    import ray

    by_index = {s.index: s for s in specs}
    ds = ray.data.from_items([{"shard": s.index} for s in specs], override_num_blocks=len(specs))
    ds = ds.map_batches(ShardTask(by_index, fn), batch_size=1, batch_format="pyarrow")
    summaries = []
    for row in ds.iter_rows():
        summary = json.loads(row["summary"])
        summaries.append(summary)
        if progress is not None:
            progress.add(bytes=by_index[summary["shard"]].input_bytes, count=docs(summary))
    return summaries


@dataclass(frozen=True)
class _Clean:
    cfg: CurateConfig
    index: EvalIndex | None
    work: WorkDir

    def __call__(self, spec: ShardSpec) -> dict:
        steps = batch_steps(self.cfg, self.index)
        keys = DedupKeys(self.cfg.dedup.exact, self.cfg.dedup.fuzzy)
        return clean_shard(spec, self.cfg, steps, keys, self.work.clean_file(spec.index))


def _clean(specs: list[ShardSpec], c: CurateConfig, index: EvalIndex | None, work: WorkDir,
           say: Callable[[str], None]) -> dict:
    pending = [s for s in specs if not work.clean_file(s.index).exists()]
    progress = Progress("clean", say, total_items=len(pending), total_bytes=sum(s.input_bytes for s in pending))
    summaries = run_shard_tasks(pending, _Clean(c, index, work), progress)
    return {"shards": len(specs), "reused": len(specs) - len(pending), "summaries": summaries}


def _dedup(specs: list[ShardSpec], c: CurateConfig, work: WorkDir) -> DedupResult:
    steps = dedup_steps(c)
    done = work.dedup / "stats.json"
    if done.exists():
        stats = json.loads(done.read_text())
        return DedupResult({step: work.dedup / step for step in steps}, {**stats, "reused": True})
    if not steps:
        return DedupResult()
    import ray

    partitions = shuffle_partitions(sum(s.input_bytes for s in specs), int(ray.cluster_resources().get("CPU", 1)))
    result = find_duplicates(clean_paths(work.clean, [s.index for s in specs]), c.dedup, partitions, work.dedup)
    done.write_text(json.dumps(result.stats))  # last: marks the verdict folders complete
    return result


@dataclass(frozen=True)
class _Finish:
    cfg: CurateConfig
    work: WorkDir
    verdicts: dict[str, Path]

    def __call__(self, spec: ShardSpec) -> dict:
        shard = {step: shard_verdicts(folder, spec.index) for step, folder in self.verdicts.items()}
        return finish_shard(spec, self.work.clean_file(spec.index), shard, dedup_steps(self.cfg),
                            self.work.final, self.cfg.rows_per_shard, self.work.tally_file(spec.index))


def _finish(specs: list[ShardSpec], c: CurateConfig, dedup: DedupResult, work: WorkDir,
            say: Callable[[str], None]) -> dict:
    pending = [s for s in specs if not work.tally_file(s.index).exists()]
    progress = Progress("finish", say, total_items=len(pending), total_bytes=sum(s.input_bytes for s in pending),
                        count="docs kept")
    run_shard_tasks(pending, _Finish(c, work, dedup.verdicts), progress,
                    docs=lambda summary: summary["written"]["output"]["docs"])
    summaries = [json.loads(work.tally_file(s.index).read_text()) for s in specs]
    return {"reused": len(specs) - len(pending), "summaries": summaries}


# ---------------------------------------------------------------- report


def _report(sources, files, specs, c: CurateConfig, index, clean: dict, dedup: DedupResult, finished: dict,
            wall: dict, output_dir: Path, seconds: float) -> dict:
    tally: Tally | None = None
    output = {"path": str(output_dir), "files": 0, "docs": 0, "bytes": 0, "file_bytes": 0}
    rejects = {"path": str(output_dir / "rejects"), "files": 0, "docs": 0, "bytes": 0, "file_bytes": 0}
    cpu: dict[str, float] = {}
    for summary in finished["summaries"]:
        part = Tally.from_json(summary["tally"])
        if tally is None:
            tally = part
        else:
            tally.merge(part)
        for key in ("files", "docs", "bytes", "file_bytes"):
            output[key] += summary["written"]["output"][key]
            rejects[key] += summary["written"]["rejects"][key]
        for step, s in summary["seconds"].items():
            cpu[step] = cpu.get(step, 0.0) + s
    for summary in clean["summaries"]:
        for step, s in summary["seconds"].items():
            cpu[step] = cpu.get(step, 0.0) + s
    _check_counts(tally, sources, files, output)
    described = [{"name": s.name, "format": s.format, "kind": s.kind, "path": s.path, "files": len(f.paths),
                  "files_ignored": f.ignored, "curate_weight": s.curate_weight} for s, f in zip(sources, files)]
    sections = {
        "dedup": dedup.stats,
        "decontamination": ({"files": index.files, "texts": index.texts, "ngram": c.decontaminate.ngram,
                             "mode": c.decontaminate.mode} if index is not None else None),
        "shards": {"count": len(specs), "reused_clean": clean["reused"], "reused_finish": finished["reused"],
                   "dedup_reused": bool(dedup.stats.get("reused"))},
        "timing": {"wall_seconds": {k: round(v, 3) for k, v in wall.items()},
                   "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
                   "note": "cpu_seconds are summed over the shard tasks (clean pass from this run only)"},
    }
    return build_report(tally, described, output, rejects, seconds, **sections)


def _check_counts(tally: Tally | None, sources: list[SourceConfig], files, output: dict) -> None:
    for src, f in zip(sources, files):
        rows = tally.total("rows", src.name) if tally else 0
        if rows == (tally.total("rows", src.name, "empty_file") if tally else 0):
            raise CurateError(f"source {src.name!r} ({src.format}): {len(f.paths)} file(s) under {src.path!r} "
                              f"hold no documents")
    if output["docs"] == 0:
        reasons: dict[str, int] = {}
        for (_, reason), counts in tally.counts.items():
            if reason != KEPT:
                reasons[reason] = reasons.get(reason, 0) + counts["rows"]
        raise CurateError(f"curation kept no documents; rejected: {explain(reasons)}")
