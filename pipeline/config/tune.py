"""`ownlm tune`: the hyperparameter search, and the syntax of its search space.

The space is a mapping from dotted config keys of the `train` and `model` sections to one
distribution each (`{loguniform: [1.0e-4, 3.0e-2]}`). This module parses it into typed
`Distribution`s and says what is wrong with a space that does not fit the keys it names
(`space_problems`); load.py checks every sampled value like a user's own config, so a bad
space fails at load time, before Ray starts. docs/tuning.md describes the syntax.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from pipeline.config.base import Section

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice", "grid")
RANGES = ("uniform", "loguniform", "randint")

# The trial's resources are fixed for the whole search (max_concurrent_trials is derived from them).
FIXED_TRAIN_KEYS = ("num_workers", "cpus_per_worker", "use_gpu", "resources_per_worker", "placement_strategy",
                    "storage_path")


class TuneConfig(Section):
    """`ownlm tune`: a Ray Tune search in which every trial is a Ray Train run of the `train`
    section with some keys sampled from `search_space`; `ownlm run` includes it (before `train`,
    which then trains the best trial's config) when `enabled`."""

    enabled: bool = False
    """`ownlm run` runs the search between tokenize and train, and train starts from best.yaml."""
    num_samples: int = Field(default=8, ge=1)
    """Samples drawn from the space; each combination of the grid values counts once per sample."""
    metric: str = "val/loss"
    """What the trials are ranked by: a metric every validation reports (val/loss, val/perplexity)."""
    mode: Literal["min", "max"] = "min"
    scheduler: Literal["asha", "pbt", "fifo"] = "asha"
    """asha: stop trials that trail at each rung; pbt: population-based training (poor trials copy a
    better one's checkpoint and perturb its hyperparameters); fifo: every trial runs to the end."""
    search: Literal["random", "optuna"] = "random"
    """How points are drawn: random, or Optuna's TPE (`pip install optuna`). Grid values are always
    expanded."""
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    """Trials running at once. None: as many as the cluster's CPUs (and GPUs) hold, each trial
    needing train.num_workers x train.cpus_per_worker; a larger value is lowered to that."""
    grace_period: int = Field(default=1, ge=1)
    """Reports (validations) before ASHA may stop a trial."""
    reduction_factor: int = Field(default=2, ge=2)
    """ASHA keeps the best 1/reduction_factor of the trials at each rung."""
    perturbation_interval: int = Field(default=1, ge=1)
    """PBT: validations between two exploit/explore decisions of a trial."""
    max_steps: int | None = Field(default=None, ge=1)
    """Each trial's step budget (default: train.max_steps). The final training keeps train.max_steps."""
    seed: int = 0
    """Seeds the search (the sampled points, PBT's choices), so a search can be repeated."""
    search_space: dict[str, Any] = Field(default_factory=dict)
    """Dotted `train.*` / `model.*` keys to one distribution each: `{uniform: [lo, hi]}`,
    `{loguniform: [lo, hi]}` (lo > 0), `{randint: [lo, hi]}` (both included), `{choice: [a, b]}`,
    `{grid: [a, b]}`."""
    resume: bool = Field(default=False, exclude=True)
    """Continue the interrupted search of this config (`ownlm tune --resume`) instead of starting
    over; finished trials are not rerun. A way to run, not part of the result: left out of the
    stage fingerprint and of dumped configs."""


@dataclass(frozen=True)
class Distribution:
    key: str
    kind: str
    """One of DISTRIBUTIONS."""
    args: tuple

    @property
    def values(self) -> tuple:
        """The values a config must accept: the bounds of a range, every value of a list."""
        return self.args

    def to_dict(self) -> dict:
        return {self.kind: list(self.args)}


def parse_space(space: dict[str, Any]) -> tuple[list[Distribution], list[str]]:
    """(the distributions that are well formed, a problem line for each entry that is not)."""
    out, problems = [], []
    for key, spec in space.items():
        where = f"tune.search_space.{key}"
        if not isinstance(spec, dict) or len(spec) != 1:
            problems.append(f"{where}: expected one distribution, such as {{loguniform: [1.0e-4, 3.0e-2]}} or "
                            f"{{choice: [8, 16]}}; got {spec!r}")
            continue
        (kind, args), = spec.items()
        if kind not in DISTRIBUTIONS:
            problems.append(f"{where}: unknown distribution {kind!r}; allowed: {', '.join(DISTRIBUTIONS)}")
            continue
        if not isinstance(args, list) or not args:
            problems.append(f"{where}: {kind} takes a list of " + ("[low, high]" if kind in RANGES else "values"))
            continue
        if kind in RANGES:
            problem = _range_problem(kind, args)
            if problem:
                problems.append(f"{where}: {problem}")
                continue
        out.append(Distribution(key, kind, tuple(args)))
    return out, problems


def _range_problem(kind: str, args: list) -> str | None:
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        return f"{kind} takes [low, high], two numbers; got {args!r}"
    low, high = args
    if not all(math.isfinite(a) for a in args):
        return f"{kind} bounds must be finite; got {args!r}"
    if kind == "randint" and not all(float(a).is_integer() for a in args):
        return f"randint takes two integers; got {args!r}"
    if low >= high:
        return f"{kind} bounds are reversed or equal: low {low} must be below high {high}"
    if kind == "loguniform" and low <= 0:
        return f"loguniform needs a positive low bound; got {low}"
    return None


def kind_problem(dist: Distribution, value_type: str) -> str | None:
    """Whether a key whose values are of `value_type` (int, float, bool, str, other) can take the
    distribution: ranges give numbers, randint integers, a list any value the key accepts."""
    if dist.kind in ("uniform", "loguniform") and value_type != "float":
        takes = "randint, choice or grid" if value_type == "int" else "choice or grid"
        return f"{dist.kind} draws real numbers, but this key takes {_type_words(value_type)}: use {takes}"
    if dist.kind == "randint" and value_type not in ("int", "float"):
        return f"randint draws integers, but this key takes {_type_words(value_type)}: use choice or grid"
    return None


def _type_words(value_type: str) -> str:
    return {"int": "integers", "bool": "true/false", "str": "names", "float": "numbers"}.get(value_type, "values")
