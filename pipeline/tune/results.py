"""What a finished search leaves: one record per trial, results.json, best.yaml and the table.

A `TrialRecord` is read from Tune's own result of the trial (its reports as a table), so it is
the same after a resumed search as after an uninterrupted one.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.storage import StoragePath, write_text
from pipeline.config import Config, dump_config
from pipeline.tune.space import apply, sampled

FINISHED, STOPPED, FAILED = "finished", "stopped", "failed"


@dataclass
class TrialRecord:
    trial_id: str
    config: dict
    """The searched keys and the values this trial ran with (its last, under PBT)."""
    metric: float | None
    """The best value of the search's metric it reported (None: it reported none)."""
    iterations: int
    """Reports it made (validations)."""
    steps: int
    """Training steps it ran."""
    status: str
    """finished (its whole budget), stopped (by the scheduler) or failed."""
    checkpoint: str | None
    """The last checkpoint its Train run committed."""
    error: str | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)
    """(step, metric) at every report."""

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "curve"} | {"curve": [list(p) for p in self.curve]}


def record_of(result, metric: str, mode: str, budget: int) -> TrialRecord:
    """A TrialRecord from a `ray.tune.Result` (trial folders are named by trial id)."""
    frame = result.metrics_dataframe
    rows = [] if frame is None or metric not in frame else frame.to_dict("records")
    curve = [(int(r.get("step") or 0), float(r[metric])) for r in rows
             if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
    values = [v for _, v in curve]
    best = (min(values) if mode == "min" else max(values)) if values else None
    last = rows[-1] if rows else {}
    checkpoints = [r["checkpoint_path"] for r in rows if isinstance(r.get("checkpoint_path"), str)]
    steps = int(last.get("step") or 0)
    error = _reason(result.error) if result.error else None
    status = FAILED if error else (FINISHED if steps >= budget else STOPPED)
    return TrialRecord(trial_id=Path(result.path).name, config=sampled(dict(result.config or {})),
                       metric=best, iterations=len(rows), steps=steps, status=status,
                       checkpoint=checkpoints[-1] if checkpoints else None, error=error, curve=curve)


def _reason(error: BaseException) -> str:
    """The one-line reason of a trial's error (Ray wraps the trainable's exception)."""
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines()
    return (text[-1] if text and "Traceback" in text[0] else (text[0] if text else type(cause).__name__))[:400]


def best_of(records: list[TrialRecord], mode: str) -> TrialRecord | None:
    ranked = [r for r in records if r.metric is not None and r.status != FAILED]
    if not ranked:
        return None
    return min(ranked, key=lambda r: r.metric if mode == "min" else -r.metric)


def best_config(cfg: Config, best: TrialRecord) -> Config:
    """The user's config with the best trial's values (the final training keeps train.max_steps);
    `tune.enabled` is off, so `ownlm run --config best.yaml` trains this config without searching."""
    raw = cfg.model_dump(mode="json")
    raw["tune"]["enabled"] = False
    return apply(raw, best.config, source="best.yaml")


def write_outputs(folder: StoragePath, cfg: Config, records: list[TrialRecord], best: TrialRecord) -> None:
    summary = {"metric": cfg.tune.metric, "mode": cfg.tune.mode, "scheduler": cfg.tune.scheduler,
               "search": cfg.tune.search, "best_trial": best.trial_id, "best_metric": best.metric,
               "best_config": best.config, "trials": [r.to_json() for r in records]}
    write_text(folder / "results.json", json.dumps(summary, indent=2, default=str))
    header = (f"# ownlm tune: the best trial ({best.trial_id}, {cfg.tune.metric} {best.metric:.4f}) of "
              f"{len(records)}; `ownlm train --config` this file trains it\n")
    write_text(folder / "best.yaml", header + dump_config(best_config(cfg, best)))


def table(records: list[TrialRecord], metric: str, best_id: str | None) -> str:
    """The results table: trial, its hyperparameters, metric, steps, status (and why it failed)."""
    keys = sorted({k for r in records for k in r.config})
    head = ["trial", *keys, metric, "steps", "status"]
    rows = [[("* " if r.trial_id == best_id else "  ") + r.trial_id, *(_cell(r.config.get(k)) for k in keys),
             "-" if r.metric is None else f"{r.metric:.4f}", str(r.steps),
             r.status + (f": {r.error}" if r.error else "")] for r in records]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    # The status column is last and not padded: a failure's reason may be long.
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line[:-1], widths)) + "  " + line[-1] for line in [head, *rows]]
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
