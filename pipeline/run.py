"""Running registered stages in order, skipping those whose inputs and config are unchanged.

A stage's fingerprint hashes its own config section(s), the fingerprints of the stages it
reads from and whatever else its record says the result depends on (`fingerprint_inputs`:
the raw files, the Python version). A finished stage writes `<root>/state/<stage>.json`; a
later run skips the stage when that record's fingerprint matches and its outputs still exist.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

from model.errors import UsageError
from pipeline.config import Config
from pipeline.layout import Layout
from pipeline.raysession import ensure_ray
from pipeline.records import StageRecords
from pipeline.stage import Context, Stage
from pipeline.stages import BY_NAME, NAMES, STAGES, layout_for
from pipeline.tracking import Tracker, ui_command


def hash_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(stage: Stage, ctx: Context, records: StageRecords) -> str:
    cfg = ctx.cfg
    parts = {"stage": stage.name, "sections": {s: getattr(cfg, s).model_dump(mode="json") for s in stage.sections}}
    # Paths under the root are part of the fingerprint only through the upstream stages. An
    # upstream stage that this config leaves out of `ownlm run` (`Stage.enabled`) counts as absent,
    # so a record it left from an earlier config does not change this stage's fingerprint.
    parts["upstream"] = {u: (records.read(u) or {}).get("fingerprint") if BY_NAME[u].enabled(cfg) else None
                         for u in stage.upstream}
    if stage.fingerprint_inputs is not None:
        parts.update(stage.fingerprint_inputs(ctx))
    return hash_json(parts)


def finished(stage: Stage, ctx: Context, records: StageRecords) -> tuple[dict | None, str]:
    """(the stage's record, its fingerprint now): the record when the stage is finished with the
    same fingerprint and its outputs still exist, else None."""
    fp = fingerprint(stage, ctx, records)
    done = records.read(stage.name)
    if done and done.get("fingerprint") == fp and all(p.exists() for p in stage.output_paths(ctx.layout)):
        return done, fp
    return None, fp


def _skipped(stage: Stage, fp: str) -> None:
    print(f"== {stage.name}: unchanged, skipped (fingerprint {fp[:12]})", flush=True)


def run_stage(stage: Stage, ctx: Context, records: StageRecords, force: bool = False,
              record: bool = True) -> tuple[bool, dict]:
    """Run one stage unless it is finished with the same fingerprint. Returns (ran, summary).

    With record=False (explicit paths) the stage neither reads nor writes its record."""
    done, fp = finished(stage, ctx, records) if record else (None, fingerprint(stage, ctx, records))
    if done and not force:
        _skipped(stage, fp)
        return False, done.get("summary", {})
    print(f"== {stage.name}", flush=True)
    if record:
        records.clear(stage.name)
    ctx.fingerprint, ctx.forced = fp, force
    if stage.uses_ray:
        ensure_ray(ctx.cfg)
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


def stages_for(cfg: Config) -> list[str]:
    """The stages `ownlm run` runs under this config, in order."""
    return [s.name for s in STAGES if s.enabled(cfg)]


def run_pipeline(cfg: Config, from_stage: str | None = None, only: list[str] | None = None,
                 layout: Layout | None = None, direct: bool = False) -> dict:
    """Run every stage (or `only` these) in order; `from_stage` forces it and everything after it.

    `ownlm run` opens one parent MLflow run with a nested run per stage; a single-stage
    command (`ownlm curate`, ...) gets one top-level run for its stage. `direct` runs the
    stages on the given layout every time and leaves no stage record (explicit paths).
    """
    layout = layout or layout_for(cfg.root)
    layout.root.mkdir(parents=True, exist_ok=True)
    names = only or stages_for(cfg)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise UsageError(f"unknown stage(s) {', '.join(unknown)}; the stages are {', '.join(NAMES)}")
    if from_stage and from_stage not in names:
        raise UsageError(f"--from {from_stage}: not one of the stages this config runs ({', '.join(names)})")
    forced = set(names[names.index(from_stage):]) if from_stage else set()
    checking = Context(cfg, layout, Tracker(cfg, enabled=False), planned=tuple(names))
    records = StageRecords(layout)
    if not direct and not forced and all(finished(BY_NAME[n], checking, records)[0] for n in names):
        # Nothing to do: decided from the stage records alone, without starting Ray or MLflow.
        for name in names:
            _skipped(BY_NAME[name], fingerprint(BY_NAME[name], checking, records))
        return {"ran": [], "summaries": {n: records.read(n).get("summary", {}) for n in names}, "layout": layout,
                "outputs": [], "mlflow_ui": ui_command(cfg) if cfg.tracking.enabled else None}
    for name in names:  # every input problem before any work starts (or any MLflow run opens)
        if BY_NAME[name].check is not None:
            BY_NAME[name].check(checking)
    tracker = Tracker(cfg)
    ctx = Context(cfg, layout, tracker, planned=tuple(names))
    summaries, ran = {}, []
    parent = tracker.run("ownlm run", stage="run") if only is None else contextlib.nullcontext()
    with parent:
        for name in names:
            did, summaries[name] = run_stage(BY_NAME[name], ctx, records, force=name in forced, record=not direct)
            if did:
                ran.append(name)
        if only is None:
            tracker.set_tags({"ownlm.ran": ",".join(ran) or "(none)", "mlflow.note.content": PARENT_NOTE})
            tracker.log_metrics(headline_metrics(summaries))
    outputs = list(dict.fromkeys(str(p.parent) for name in ran for p in BY_NAME[name].output_paths(layout)))
    return {"ran": ran, "summaries": summaries, "layout": layout, "outputs": outputs,
            "mlflow_ui": tracker.ui_command() if tracker.enabled else None}


PARENT_NOTE = (
    "One `ownlm run`. The metrics here are the headline numbers: the final training loss and "
    "validation loss (`train/loss`, `val/loss`, `final/val_loss`) and every evaluation figure "
    "(`eval/...`). The curves are on the nested runs, one per stage: `train` has train/loss, "
    "train/tokens_per_s and val/loss by step; `curate` the curation counts; `eval` the evaluation "
    "results as an artifact. Params are the whole config.")


def headline_metrics(summaries: dict) -> dict[str, float]:
    """The numbers a user looks for first, for the parent run: the headline stages' metrics."""
    metrics = {}
    for stage in STAGES:
        if stage.headline:
            metrics.update({k: v for k, v in (summaries.get(stage.name) or {}).items()
                            if isinstance(v, (int, float)) and "/" in k})
    return metrics
