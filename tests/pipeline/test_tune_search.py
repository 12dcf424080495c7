"""The search's pieces as Ray Tune objects, built without starting Ray: the scheduler each
config names, the search algorithm holding the trials-at-once limit, and the param space."""
from __future__ import annotations

import pytest

from pipeline.config import load_config
from pipeline.tune import search, space

SPACE = ("tune.search_space={train.lr: {loguniform: [1.0e-4, 3.0e-2]}, train.warmup_steps: {randint: [0, 5]}, "
         "train.weight_decay: {grid: [0.0, 0.1]}}")


def cfg(*sets):
    return load_config(None, [SPACE, "tune.max_steps=40", *sets])


def test_asha_counts_reports_and_pbt_perturbs_only_the_sampled_keys():
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

    from pipeline.tune.pbt import TrainCheckpointPBT

    asha = search.scheduler(cfg("tune.grace_period=2", "tune.reduction_factor=3"))
    assert isinstance(asha, AsyncHyperBandScheduler) and asha._time_attr == "training_iteration"
    assert asha._max_t == 40 and asha._reduction_factor == 3
    pbt = search.scheduler(cfg("tune.scheduler=pbt", "tune.perturbation_interval=2", "train.eval_every=10"),
                           "/runs/trials")
    assert isinstance(pbt, TrainCheckpointPBT) and pbt._perturbation_interval == 20 and pbt._time_attr == "step"
    assert set(pbt._hyperparam_mutations) == {"train.lr", "train.warmup_steps"}  # not the grid key
    assert str(pbt.exploit_dir) == "/runs/trials/exploits"
    with pytest.raises(search.TuneError, match="not a URI"):
        search.scheduler(cfg("tune.scheduler=pbt"), "s3://bucket/trials")
    assert isinstance(search.scheduler(cfg("tune.scheduler=fifo")), FIFOScheduler)


def test_the_search_algorithm_holds_the_trials_at_once_limit():
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    random_search = search.search_algorithm(cfg(), at_once=2)
    assert isinstance(random_search, BasicVariantGenerator) and random_search.max_concurrent == 2
    pytest.importorskip("optuna")
    optuna = search.search_algorithm(cfg("tune.search=optuna"), at_once=3)
    assert isinstance(optuna, ConcurrencyLimiter) and optuna.max_concurrent == 3


def test_the_param_space_is_flat_dotted_keys_and_randint_includes_its_high_bound():
    from ray.tune.search.sample import Categorical, Float, Integer

    dists = space.distributions(cfg())
    params = space.param_space(dists)
    assert set(params) == {"train.lr", "train.warmup_steps", "train.weight_decay"}
    assert isinstance(params["train.lr"], Float) and params["train.weight_decay"] == {"grid_search": [0.0, 0.1]}
    assert isinstance(params["train.warmup_steps"], Integer) and params["train.warmup_steps"].upper == 6
    assert isinstance(space.param_space(dists, grid_as_choice=True)["train.weight_decay"], Categorical)
