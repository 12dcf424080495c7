"""The `tune` stage: a Ray Tune search in which every trial is a Ray Train run (search.py).

In `ownlm run` only when `tune.enabled` (between tokenize and train, which then trains the
best trial's config); `ownlm tune` runs it on its own."""
from __future__ import annotations

import importlib.util

from model.errors import MissingPackage, UsageError
from pipeline.layout import Location
from pipeline.options import ConfigFlag, PathFlag
from pipeline.stage import Context, Stage


def tune(ctx: Context) -> dict:
    from pipeline.tune.search import run_search  # Ray Tune: only when searching

    return run_search(ctx)


def check(ctx: Context) -> None:
    """Before Ray starts: a space to search, and Optuna when the config asks for it."""
    if ctx.cfg.tune.search == "optuna" and importlib.util.find_spec("optuna") is None:
        raise MissingPackage("tune.search optuna needs Optuna: pip install 'ownlm[tune]' (or tune.search: random)")
    if not ctx.cfg.tune.search_space:
        raise UsageError("tune.search_space is empty: name the keys to search, such as "
                         "--set 'tune.search_space={train.lr: {loguniform: [1.0e-4, 3.0e-2]}}' (docs/tuning.md)")


STAGE = Stage(
    name="tune",
    help="search hyperparameters with Ray Tune, every trial a Ray Train run",
    action=tune,
    upstream=("tokenize",),
    sections=("model", "train", "tune"),
    locations=(Location("tune", "tune", "the search's results.json, best.yaml and tune.png"),
               Location("tune_runs", "tune-runs", "Ray Tune's experiments and each trial's Ray Train run")),
    outputs=(("tune", "results.json"), ("tune", "best.yaml")),
    flags=(PathFlag("--data", "tokens", "packed tokens folder (from `ownlm tokenize`)"),
           PathFlag("--output", "tune", "folder for results.json, best.yaml and tune.png"),
           ConfigFlag("--resume", "tune.resume", switch=True,
                      help="continue the interrupted search of this config; finished trials are not rerun"),
           ConfigFlag("--num-samples", "tune.num_samples", type=int),
           ConfigFlag("--scheduler", "tune.scheduler", metavar="asha|pbt|fifo")),
    check=check,
    uses_ray=True,
    enabled=lambda cfg: cfg.tune.enabled,
)
