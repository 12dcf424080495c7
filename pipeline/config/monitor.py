"""The promotion gate (which metrics a candidate must meet to become `champion`) and the monitor
(what `ownlm monitor` watches, when drift alarms, when it retrains, where it reports)."""
from __future__ import annotations

from pydantic import Field, model_validator

from pipeline.config.base import Section


class GateRule(Section):
    """One metric's rule. Absolute bounds (`min`, `max`) apply to every candidate; the others compare
    it with the champion, measured in the same run on the same data. Give at least one."""

    min: float | None = None
    """The candidate's value must be at least this."""
    max: float | None = None
    """The candidate's value must be at most this."""
    max_drop: float | None = Field(default=None, ge=0)
    """Higher is better: the candidate may be at most this much below the champion."""
    max_increase: float | None = Field(default=None, ge=0)
    """Lower is better: the candidate may be at most this much above the champion."""
    max_relative_increase: float | None = Field(default=None, ge=0)
    """Lower is better: at most champion x (1 + this) (0.02: 2 % worse perplexity)."""
    max_relative_drop: float | None = Field(default=None, ge=0)
    """Higher is better: at least champion x (1 - this)."""

    @model_validator(mode="after")
    def _some_bound(self):
        if all(v is None for v in self.model_dump().values()):
            raise ValueError("a gate rule needs at least one of min, max, max_drop, max_increase, "
                             "max_relative_increase, max_relative_drop")
        return self


class GateConfig(Section):
    """`ownlm promote` and `ownlm run`'s promotion: the rules a candidate passes to become champion."""

    rules: dict[str, GateRule] = Field(
        default_factory=lambda: {"eval/perplexity": GateRule(max_relative_increase=0.02)})
    """Per metric name as `ownlm eval` reports it (`eval/perplexity`, `eval/<task>/acc`). A rule on a
    metric that no configured evaluation reports is an error, not a pass."""
    drift_windows: int = Field(default=256, ge=8)
    """Token windows of the validation split whose losses are stored, at promotion, as the
    champion's drift reference (`ownlm monitor` compares new data against them)."""


class MonitorConfig(Section):
    """`ownlm monitor`: one cycle evaluates the champion, checks new data for drift, compares the
    benchmarks with the champion's at promotion, records it all, and retrains when asked to."""

    watch: list[str] = Field(default_factory=list)
    """Paths or globs of raw sources; a file not seen by the last cycle is new data."""
    every: str = "30m"
    """How often `ownlm monitor --every` runs a cycle when no interval is given (`30m`, `2h`, `45s`)."""
    drift_p: float = Field(default=0.01, gt=0, lt=1)
    """Drift needs significance: the KS test's p-value below this ..."""
    drift_min_effect: float = Field(default=0.1, gt=0, le=1)
    """... and size: a KS statistic of at least this, or a PSI of at least `drift_min_psi`."""
    drift_min_psi: float = Field(default=0.2, gt=0)
    """The population stability index that counts as a real shift (0.1-0.2 moderate, above 0.2 large)."""
    drift_windows: int = Field(default=256, ge=8)
    """Most token windows of new data scored per cycle (sampled evenly across the new documents)."""
    retrain: bool = False
    """Retrain when new data drifts or passes `retrain_after_docs`: curate, tokenize with the champion's
    tokenizer, continue training from the champion's weights, evaluate, gate, promote."""
    retrain_after_docs: int = Field(default=1000, ge=1)
    """New curated documents that start a retraining even without drift."""
    retrain_steps: int | None = Field(default=None, ge=1)
    """Optimizer steps of a retraining; None: train.max_steps."""
    webhook_url: str | None = None
    """Where an alert is POSTed as JSON (a failing webhook is logged, never fatal)."""
    experiment: str | None = None
    """The MLflow experiment of the monitoring runs; None: `<tracking.experiment>-monitor`."""
