"""One monitor cycle (docs/monitoring.md):

1. evaluate the champion on the configured benchmarks (the `eval` section, the project's tokens);
2. find the watched files no earlier cycle has seen, curate them, and test the champion's loss on
   them against the reference stored when it was promoted (drift);
3. compare each gated metric with the champion's value at promotion, by the gate's rules (regression);
4. retrain on drift or enough new documents (when `monitor.retrain`), through the gate;
5. record: a run in the monitoring experiment, a line in `<root>/monitor/checks.jsonl`, the history
   plots; and alert on regression, drift or a refused retrain.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from evaluation.drift import drift
from model.errors import UsageError
from pipeline import storage
from pipeline.config import Config
from pipeline.layout import Layout
from pipeline.monitor.alert import alert
from pipeline.monitor.drift import new_data_losses
from pipeline.monitor.history import write_history
from pipeline.monitor.retrain import curate_new, cycle_config, cycle_layout, retrain
from pipeline.monitor.state import MonitorState, watched_files
from pipeline.registry.gate import judge
from pipeline.registry.promote import GATE_FILE, evaluate_version
from pipeline.registry.reference import REFERENCE_FILE
from pipeline.storage import StoragePath
from pipeline.tokenize.curated import TokenizeError, curated_rows, curated_files, iter_texts
from pipeline.tracking import Tracker
from pipeline.tracking.registry import CHAMPION, Registry, Version

CHECKS_FILE = "checks.jsonl"


def monitor_dir(layout: Layout) -> StoragePath:
    """`<root>/monitor`: a local folder or one on the root's store (state, checks, history, cycles)."""
    return layout.root / "monitor"


def monitoring_config(cfg: Config) -> Config:
    """The config whose tracker writes to the monitoring experiment (same store)."""
    name = cfg.monitor.experiment or f"{cfg.tracking.experiment}-monitor"
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"experiment": name,
                                                                               "uri": cfg.tracking_uri})})


def promotion_files(registry: Registry, champion: Version, folder: StoragePath) -> tuple[dict | None, dict | None]:
    """(the gate's decision at the champion's promotion, its drift reference), from the promotion run,
    kept in `folder`. MLflow downloads into local folders only: under a remote root they are
    downloaded into a temporary one and copied to `folder`."""
    run_id = champion.tags.get("ownlm.promote_run_id")
    if not run_id:
        return None, None
    if isinstance(folder, Path):
        return registry.run_json(run_id, GATE_FILE, folder), registry.run_json(run_id, REFERENCE_FILE, folder)
    with tempfile.TemporaryDirectory(prefix="ownlm-promotion-") as tmp:
        found = registry.run_json(run_id, GATE_FILE, Path(tmp)), registry.run_json(run_id, REFERENCE_FILE, Path(tmp))
        for name, data in zip((GATE_FILE, REFERENCE_FILE), found, strict=True):
            if data is not None:
                storage.write_text(folder / name, json.dumps(data, indent=2))
    return found


def champion_source(champion_dir: Path, work: StoragePath) -> StoragePath:
    """Where the retraining cycle reads the champion's weights and tokenizer: its registry copy on
    this machine under a local root; under a remote root a copy in the cycle's folder on the store,
    which Ray Train's workers and Ray Data's tokenizers on other nodes fetch themselves."""
    if isinstance(work, Path):
        return champion_dir
    return storage.upload_dir(champion_dir, work / "champion")


def run_cycle(cfg: Config, layout: Layout) -> dict:
    """One cycle; returns the record appended to checks.jsonl."""
    folder = monitor_dir(layout)
    files = watched_files(cfg.monitor.watch)  # a missing watch path fails before any work
    registry = Registry(cfg)
    champion = registry.alias(CHAMPION)
    if champion is None:
        raise UsageError(f"model {registry.name!r} has no champion to monitor: `ownlm run` promotes the first "
                         f"version, or `ownlm promote --version N`")
    state = MonitorState.load(folder)
    state.cycles += 1
    work = folder / "cycles" / f"{state.cycles:05d}"
    champion_dir = registry.checkpoint(champion)
    at_promotion, reference = promotion_files(registry, champion, work / "promotion")

    print(f"== monitor cycle {state.cycles}: champion version {champion.number}", flush=True)
    metrics = evaluate_version(cfg, layout, registry, champion, work / "eval")
    regressions = []
    if at_promotion is not None:
        rows = judge(cfg.gate.rules, metrics, at_promotion["metrics"]["candidate"])
        regressions = [r.to_dict() for r in rows if not r.passed]

    new = state.new_files(files)
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "champion": champion.number, "metrics": metrics,
              "new_files": len(new), "new_docs": 0, "drift": None, "regressions": regressions, "action": "none"}
    rcfg, cycle = None, None
    if new:
        source = champion_source(champion_dir, work)
        rcfg = cycle_config(cfg, work, new, source)
        cycle = cycle_layout(rcfg, source)
        curated = curate_new(rcfg, cycle)
        texts = _curated_texts(curated)
        record["new_docs"] = len(texts)
        if reference is not None and texts:
            from model.checkpoint import load_model, load_tokenizer  # torch

            model, _ = load_model(champion_dir)
            losses = new_data_losses(model, load_tokenizer(champion_dir), texts, reference["window_tokens"],
                                     cfg.monitor.drift_windows)
            if len(losses) >= 2:
                m = cfg.monitor
                record["drift"] = drift(reference["losses"], losses, p_max=m.drift_p, min_effect=m.drift_min_effect,
                                        min_psi=m.drift_min_psi).to_dict()
    drifted = bool(record["drift"] and record["drift"]["alarm"])
    if cfg.monitor.retrain and rcfg is not None and record["new_docs"] and (
            drifted or record["new_docs"] >= cfg.monitor.retrain_after_docs):
        decision = retrain(cfg, layout, rcfg, cycle, champion, registry)
        record["retrained_version"] = decision.candidate.number
        record["action"] = decision.action
    alerting = bool(regressions) or drifted or record["action"] == "refused"
    if alerting and record["action"] == "none":
        record["action"] = "alert"
    record["alert"] = alerting
    finish(cfg, layout, record, state, new)
    if alerting:
        alert(record, cfg.monitor.webhook_url)
    return record


def _curated_texts(curated: StoragePath) -> list[str]:
    try:
        files = curated_files(curated)
    except TokenizeError:  # every new document was rejected: nothing to test
        return []
    return list(iter_texts(curated)) if curated_rows(files) else []


def append_check(path: StoragePath, record: dict) -> None:
    """One line more in checks.jsonl. Object stores cannot append: the file is rewritten whole (one
    line a cycle keeps it small), locally as well, so that a crash never leaves half a line."""
    before = path.read_text(encoding="utf-8") if path.is_file() else ""
    if before and not before.endswith("\n"):
        before += "\n"
    storage.write_text(path, before + json.dumps(record, default=str) + "\n")


def finish(cfg: Config, layout: Layout, record: dict, state: MonitorState, seen: list[StoragePath]) -> None:
    """The cycle's MLflow run (metrics by cycle, the drift statistics, the decision), its line in
    checks.jsonl, the history plots, and the watched files marked seen."""
    folder = monitor_dir(layout)
    append_check(folder / CHECKS_FILE, record)
    paths = write_history(folder / CHECKS_FILE, folder)
    tracker = Tracker(monitoring_config(cfg))
    tags = {"ownlm.monitor.action": record["action"], "ownlm.champion_version": str(record["champion"])}
    with tracker.run(f"monitor cycle {state.cycles}", stage="monitor", tags=tags, log_config=False):
        tracker.log_metrics(record["metrics"], step=state.cycles)
        # The champion's loss on the new data beside its reference loss: the evaluation on new data.
        drift_figures = {f"drift/{k}": float(v) for k, v in (record["drift"] or {}).items()
                         if k in ("ks_statistic", "p_value", "psi", "alarm", "reference_mean", "current_mean")}
        tracker.log_metrics({**drift_figures, "monitor/new_docs": record["new_docs"],
                             "monitor/regressions": len(record["regressions"]),
                             "monitor/alert": float(record["alert"])}, step=state.cycles)
        tracker.log_text(json.dumps(record, indent=2, default=str), "monitor/check.json")
        for path in paths:
            tracker.log_artifact(path, "monitor")
    state.mark_seen(seen)
    state.save()
