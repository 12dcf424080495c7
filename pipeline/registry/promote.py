"""Promotion: the candidate and the champion evaluated in one run on the same tasks and data (never a
score remembered from elsewhere), the gate's rules judged, `champion` moved only if every rule
passes (or `--force`, recorded in a tag). The decision is an MLflow run of its own: both sides'
metrics, the table, and, for a promoted version, the drift reference the monitor compares new data to.
"""
from __future__ import annotations

import getpass
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from model.errors import UsageError
from pipeline.config import Config
from pipeline.evaluate import evaluate_checkpoint
from pipeline.layout import Layout
from pipeline.registry.reference import REFERENCE_FILE, reference_losses
from pipeline.registry.gate import Row, check_reported, judge, table
from pipeline.tracking import Tracker
from pipeline.tracking.registry import CHALLENGER, CHAMPION, Registry, Version

REFUSED = 3
"""Exit status of a refused promotion (and of a monitor cycle that alerts): not a usage error (2), not
a failed run (1), something to act on."""
GATE_FILE = "gate/decision.json"
"""The promotion run's artifact: both sides' metrics, the rows, the decision."""


@dataclass
class Decision:
    candidate: Version
    champion: Version | None
    rows: list[Row]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    """"candidate" and "champion" (absent without one): every metric the evaluation reported."""
    promoted: bool = False
    forced: bool = False
    run_id: str | None = None

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def action(self) -> str:
        return "promoted" if self.promoted else "refused"

    def to_dict(self) -> dict:
        return {"candidate": self.candidate.number, "champion": self.champion.number if self.champion else None,
                "rows": [r.to_dict() for r in self.rows], "passed": self.passed, "promoted": self.promoted,
                "forced": self.forced, "metrics": self.metrics}


def tokens_for(layout: Layout) -> Path | None:
    """The packed tokens both sides are scored on (perplexity, the drift reference), if there are any."""
    return layout.tokens if (layout.tokens / "manifest.json").is_file() else None


def evaluate_version(cfg: Config, layout: Layout, registry: Registry, version: Version, out: Path) -> dict:
    return evaluate_checkpoint(cfg.eval, registry.checkpoint(version), tokens_for(layout), out,
                               hide_paths=[layout.root] if isinstance(layout.root, Path) else [])["metrics"]


def promote(cfg: Config, layout: Layout, candidate: Version, *, force: bool = False, reason: str | None = None,
            registry: Registry | None = None, tracker: Tracker | None = None) -> Decision:
    """Judge `candidate` against the current champion and move `champion` when it passes (or when
    forced). Refusal leaves every alias where it was."""
    registry = registry or Registry(cfg)
    tracker = tracker or Tracker(cfg)
    champion = registry.alias(CHAMPION)
    if champion is not None and champion.number == candidate.number:
        raise UsageError(f"version {candidate.number} of {registry.name!r} is already the champion")
    out = layout.root / "promote" / f"v{candidate.number}-{time.strftime('%Y%m%d-%H%M%S')}"
    tags = {"ownlm.candidate_version": str(candidate.number),
            "ownlm.champion_version": str(champion.number) if champion else "none"}
    with tracker.run(f"promote v{candidate.number}", stage="promote", tags=tags, log_config=False):
        print(f"   evaluating candidate version {candidate.number}", flush=True)
        mine = evaluate_version(cfg, layout, registry, candidate, out / "candidate")
        check_reported(cfg.gate.rules, mine)  # before the champion's evaluation: a config mistake fails fast
        theirs = None
        if champion is not None:
            print(f"   evaluating champion version {champion.number}", flush=True)
            theirs = evaluate_version(cfg, layout, registry, champion, out / "champion")
        rows = judge(cfg.gate.rules, mine, theirs)
        decision = Decision(candidate, champion, rows, {"candidate": mine, **({"champion": theirs} if theirs else {})},
                            run_id=tracker.run_id)
        decision.forced = force and not decision.passed
        decision.promoted = decision.passed or force
        record(tracker, decision, reason)
        if decision.promoted:
            move_champion(cfg, layout, registry, tracker, decision)
    print(table(rows), flush=True)
    verdict = ("promoted (forced past the gate)" if decision.forced else "promoted") if decision.promoted else \
        "refused: champion stays"
    print(f"   version {candidate.number}: {verdict}", flush=True)
    return decision


def record(tracker: Tracker, decision: Decision, reason: str | None) -> None:
    tracker.log_metrics({f"{side}/{k}": v for side, metrics in decision.metrics.items() for k, v in metrics.items()})
    tracker.log_metrics({"gate/passed": float(decision.passed), "gate/promoted": float(decision.promoted)})
    tags = {"ownlm.gate.decision": "forced" if decision.forced else decision.action}
    if decision.forced:
        tags.update({"ownlm.gate.forced_by": getpass.getuser(), "ownlm.gate.force_reason": reason or "(none given)"})
    tracker.set_tags(tags)
    tracker.log_text(json.dumps(decision.to_dict(), indent=2), GATE_FILE)
    tracker.log_text(table(decision.rows) + "\n", "gate/table.txt")


def move_champion(cfg: Config, layout: Layout, registry: Registry, tracker: Tracker, decision: Decision) -> None:
    """The drift reference first (logged on this run), then the alias, then the version's tags."""
    from model.checkpoint import load_model  # torch

    tokens = tokens_for(layout)
    if tokens is not None:
        model, _ = load_model(registry.checkpoint(decision.candidate))
        tracker.log_text(json.dumps(reference_losses(model, tokens, cfg.gate.drift_windows)), REFERENCE_FILE)
    candidate = decision.candidate
    registry.set_alias(CHAMPION, candidate)
    if CHALLENGER in candidate.aliases:
        registry.delete_alias(CHALLENGER)
    tags = {"ownlm.promoted_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "ownlm.promote_run_id": decision.run_id or ""}
    if decision.forced:
        tags["ownlm.promoted_by_force"] = getpass.getuser()
    registry.set_tags(candidate, tags)
