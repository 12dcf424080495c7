"""The promotion gate: each configured rule judged on the candidate's metric and the champion's,
both measured in the same run on the same data. Pure comparisons, no evaluation and no MLflow."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from model.errors import UsageError
from pipeline.config import GateRule


@dataclass(frozen=True)
class Row:
    metric: str
    champion: float | None
    candidate: float
    rule: str
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


def describe(rule: GateRule) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in rule.model_dump().items() if v is not None)


def check_reported(rules: dict[str, GateRule], metrics: dict[str, float]) -> None:
    """A rule on a metric that nothing reported is a config mistake, not a pass."""
    missing = sorted(set(rules) - set(metrics))
    if missing:
        raise UsageError(f"gate.rules name metric(s) no configured evaluation reports: {', '.join(missing)} "
                         f"(reported: {', '.join(sorted(metrics)) or 'none'}); fix gate.rules or eval.tasks")


def passes(rule: GateRule, candidate: float, champion: float | None) -> bool:
    """Every bound of the rule holds. Bounds relative to the champion hold trivially without one
    (the first version), absolute bounds always apply."""
    ok = (rule.min is None or candidate >= rule.min) and (rule.max is None or candidate <= rule.max)
    if champion is None:
        return ok
    if rule.max_drop is not None:
        ok &= candidate >= champion - rule.max_drop
    if rule.max_increase is not None:
        ok &= candidate <= champion + rule.max_increase
    if rule.max_relative_increase is not None:
        ok &= candidate <= champion * (1 + rule.max_relative_increase)
    if rule.max_relative_drop is not None:
        ok &= candidate >= champion * (1 - rule.max_relative_drop)
    return bool(ok)


def judge(rules: dict[str, GateRule], candidate: dict[str, float], champion: dict[str, float] | None) -> list[Row]:
    """One row per rule (in the config's order); raises when a ruled metric is not reported."""
    check_reported(rules, candidate)
    return [Row(metric=name, champion=None if champion is None else champion.get(name), candidate=candidate[name],
                rule=describe(rule), passed=passes(rule, candidate[name],
                                                   None if champion is None else champion.get(name)))
            for name, rule in rules.items()]


def table(rows: list[Row]) -> str:
    """metric | champion | candidate | rule | pass/fail, aligned for the terminal."""
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    body = [("metric", "champion", "candidate", "rule", "result")]
    body += [(r.metric, num(r.champion), num(r.candidate), r.rule, "pass" if r.passed else "FAIL") for r in rows]
    widths = [max(len(line[i]) for line in body) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in body)
