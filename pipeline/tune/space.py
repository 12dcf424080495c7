"""The search space as Ray Tune sees it, and a trial's config from its sampled values.

The space itself (its syntax and its checks) is config: pipeline/config/tune.py. Here each
`Distribution` becomes a Ray Tune domain under its dotted key (a flat param_space: Tune hands
the trial `{"train.lr": 0.0031, ...}`), and a trial's values are applied to the base config and
validated like a user's own config before the trial starts.
"""
from __future__ import annotations

import copy
import math
from typing import Any

from pipeline.config import Config, Distribution, parse_space, set_key, validate_config

INIT_CHECKPOINT = "_init_checkpoint"
"""A trial config key set by population-based training's exploit: the checkpoint to start from."""
GENERATION = "_generation"
"""How many times PBT has restarted the trial from another's checkpoint (names its Train run)."""
INTERNAL_KEYS = (INIT_CHECKPOINT, GENERATION)


def distributions(cfg: Config) -> list[Distribution]:
    dists, problems = parse_space(cfg.tune.search_space)
    assert not problems, problems  # the config was validated at load time
    return dists


def ray_domain(dist: Distribution, grid_as_choice: bool = False):
    """The Ray Tune domain of a distribution. A search algorithm (Optuna) cannot take Tune's grid:
    there the grid's values are a choice it picks from (grid_as_choice)."""
    from ray import tune

    low, high = (dist.args + (None, None))[:2]
    if dist.kind == "uniform":
        return tune.uniform(low, high)
    if dist.kind == "loguniform":
        return tune.loguniform(low, high)
    if dist.kind == "randint":
        return tune.randint(int(low), int(high) + 1)  # ours includes the high bound, Ray's does not
    if dist.kind == "choice" or grid_as_choice:
        return tune.choice(list(dist.args))
    return tune.grid_search(list(dist.args))


def param_space(dists: list[Distribution], grid_as_choice: bool = False) -> dict[str, Any]:
    return {d.key: ray_domain(d, grid_as_choice) for d in dists}


def mutations(dists: list[Distribution]) -> dict[str, Any]:
    """What population-based training may perturb: every key but the grid's (fixed per trial)."""
    return {d.key: ray_domain(d) for d in dists if d.kind != "grid"}


def trial_count(cfg: Config) -> int:
    """Trials the search runs: num_samples times the number of grid combinations."""
    grids = [len(d.args) for d in distributions(cfg) if d.kind == "grid"]
    return cfg.tune.num_samples * math.prod(grids)


def sampled(trial_config: dict) -> dict[str, Any]:
    """The searched values of a trial's config (Tune's), without the keys the search adds itself."""
    return {k: v for k, v in trial_config.items() if k not in INTERNAL_KEYS}


def trial_raw(cfg: Config) -> dict:
    """Every trial's config before its sampled values: the user's, with the trial budget."""
    raw = cfg.model_dump(mode="json")
    raw["tune"] = {}
    if cfg.tune.max_steps is not None:
        raw["train"]["max_steps"] = cfg.tune.max_steps
    return raw


def apply(raw: dict, values: dict[str, Any], source: str = "trial config") -> Config:
    """`raw` with the dotted `values` set, validated like a user's config (raises ConfigError)."""
    raw = copy.deepcopy(raw)
    for key, value in values.items():
        set_key(raw, key, _plain(value))
    return validate_config(raw, source=source)


def _plain(value):
    """numpy scalars (Optuna's, Tune's) as plain Python numbers, for YAML and pydantic."""
    return value.item() if hasattr(value, "item") else value
