"""The tune section and its search space: every problem of a bad space in one error, each naming
its key, at load time (before Ray starts); the derived trials-at-once; the results table and
best.yaml; the optional stage in `ownlm run` and its fingerprints. No Ray here."""
from __future__ import annotations

import pytest

from pipeline import run, stages
from pipeline.config import ConfigError, TrainConfig, load_config
from pipeline.stage import Context
from pipeline.tracking import Tracker
from pipeline.tune import concurrency, space
from pipeline.tune.results import (
    FAILED,
    FINISHED,
    STOPPED,
    TrialRecord,
    best_config,
    best_of,
    table,
)

GOOD_SPACE = ("tune.search_space={train.lr: {loguniform: [1.0e-4, 3.0e-2]}, train.batch_size: {choice: [8, 16]}, "
              "train.warmup_steps: {randint: [0, 50]}, model.preset: {choice: [debug, tiny]}, "
              "train.weight_decay: {grid: [0.0, 0.1]}}")
SEQ_64 = "tokenize.seq_len=64"


def problems(*sets: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(None, list(sets))
    return e.value.problems


def test_the_issues_example_space_loads_and_counts_its_grid_per_sample():
    # (the quickstart packs 256 tokens, more than the debug preset's max_seq_len of 128: also refused)
    assert "exceeds the model's max_seq_len" in problems(GOOD_SPACE)[0]
    cfg = load_config(None, [GOOD_SPACE, SEQ_64, "tune.num_samples=3"])
    dists = {d.key: d for d in space.distributions(cfg)}
    assert dists["train.lr"].kind == "loguniform" and dists["train.lr"].args == (1.0e-4, 3.0e-2)
    assert space.trial_count(cfg) == 6  # 3 samples x 2 grid values
    assert set(space.mutations(list(dists.values()))) == set(dists) - {"train.weight_decay"}


def test_a_bad_space_lists_every_problem_naming_each_key():
    found = problems("tune.max_steps=40", SEQ_64, "tune.search_space={"
                     "train.lr: {loguniform: [0, 1.0e-2]}, "         # log of a non-positive bound
                     "train.beta1: {uniform: [0.9, 0.5]}, "          # reversed
                     "train.warmup_steps: {randint: [-5, 10]}, "     # negative: the config refuses it
                     "train.grad_clip: {uniform: [0.5, 2.0]}, "      # fine
                     "train.bogus: {choice: [1, 2]}, "               # unknown key
                     "model.preset: {choice: [debug, huge]}, "       # unknown preset
                     "train.batch_size: {uniform: [4, 16]}, "        # the key's type cannot take it
                     "model.tie_embeddings: {randint: [0, 1]}, "     # bool key, integer draws
                     "train.eval_every: {randint: [5, 30]}, "        # fine
                     "train.seed: {normal: [0, 1]}, "                # unknown distribution
                     "train.num_workers: {choice: [1, 2]}, "         # a trial's resources are fixed
                     "data.sample: {choice: [true, false]}, "        # not a train or model key
                     "train.min_lr_ratio: 0.1, "                     # not a distribution
                     "train.max_steps: {choice: [10, 50]}}")         # 10 <= warmup_steps' default 30 -> refused
    by_key = {}
    for p in found:
        key = p.split(":")[0].removeprefix("tune.search_space.")
        by_key.setdefault(key, []).append(p)
    assert set(by_key) == {"train.lr", "train.beta1", "train.warmup_steps", "train.bogus", "model.preset",
                           "train.batch_size", "model.tie_embeddings", "train.seed", "train.num_workers",
                           "data.sample", "train.min_lr_ratio", "train.max_steps"}, found
    assert "positive low bound" in by_key["train.lr"][0]
    assert "reversed" in by_key["train.beta1"][0]
    assert "-5" in by_key["train.warmup_steps"][0] and "greater than or equal to 0" in by_key["train.warmup_steps"][0]
    assert "unknown key" in by_key["train.bogus"][0]
    assert len(by_key["model.preset"]) == 1 and "'huge'" in by_key["model.preset"][0]
    assert "use randint, choice or grid" in by_key["train.batch_size"][0]
    assert "use choice or grid" in by_key["model.tie_embeddings"][0]
    assert "unknown distribution 'normal'" in by_key["train.seed"][0]
    assert "set train.num_workers instead" in by_key["train.num_workers"][0]
    assert "only keys of the train and model sections" in by_key["data.sample"][0]
    assert "train.warmup_steps (30) must be below train.max_steps (10)" in by_key["train.max_steps"][0]


def test_sampled_values_are_checked_against_the_trial_budget():
    # warmup up to 50 is fine for the default 300 steps but not for a 20-step trial budget
    load_config(None, ["tune.search_space={train.warmup_steps: {randint: [0, 50]}}"])
    load_config(None, ["tune.max_steps=20", ("tune.search_space={train.warmup_steps: {randint: [0, 10]}, "
                                             "train.lr: {choice: [0.01, 0.02]}}")])  # warmup 30 is never used: fine
    (only,) = problems("tune.max_steps=20", "tune.search_space={train.warmup_steps: {randint: [0, 50]}}")
    assert only.endswith("train.warmup_steps (50) must be below train.max_steps (20)")
    # a problem no searched value avoids is told once, not once per value
    (only,) = problems("tune.max_steps=20", "tune.search_space={train.lr: {choice: [0.01, 0.02, 0.03]}}")
    assert only.startswith("tune.max_steps: every trial's config would be refused: train.warmup_steps (30)")


def test_a_trial_config_is_the_users_with_the_trial_budget_and_its_values():
    cfg = load_config(None, [GOOD_SPACE, SEQ_64, "tune.max_steps=60", "train.max_steps=500"])
    trial = space.apply(space.trial_raw(cfg), {"train.lr": 0.002, "model.preset": "debug"})
    assert trial.train.max_steps == 60 and trial.train.lr == 0.002 and trial.model.preset == "debug"
    assert trial.tune.search_space == {}
    with pytest.raises(ConfigError, match="train.lr"):
        space.apply(space.trial_raw(cfg), {"train.lr": -1.0})
    assert space.sampled({"train.lr": 0.1, space.INIT_CHECKPOINT: "/x", space.GENERATION: 2}) == {"train.lr": 0.1}


def test_resume_is_a_way_to_run_not_part_of_the_config():
    cfg = load_config(None, ["tune.resume=true"])
    assert cfg.tune.resume is True and "resume" not in cfg.model_dump()["tune"]


@pytest.mark.parametrize("cluster, train, requested, expect", [
    # the tests' 4 logical CPUs: the 4th trial's driver would take CPU its worker needs
    ({"CPU": 4}, {"num_workers": 1}, None, (3, "CPU 4 / 1.01 per trial")),
    ({"CPU": 4}, {"num_workers": 2}, None, (1, "CPU 4 / 2.01 per trial")),  # 2 x 2.01 > 4: one at a time
    ({"CPU": 2}, {"num_workers": 1}, None, (1, "CPU 2 / 1.01 per trial")),  # a 2-core laptop
    ({"CPU": 64, "GPU": 4}, {"num_workers": 2, "use_gpu": True}, None, (2, "GPU 4 / 2 per trial")),
    ({"CPU": 64}, {"num_workers": 2}, 3, (3, "tune.max_concurrent_trials")),
    ({"CPU": 8}, {"num_workers": 2}, 10, (3, "CPU 8 / 2.01 per trial")),  # more than fits is lowered
])
def test_trials_at_once_always_leave_each_running_trial_its_workers(cluster, train, requested, expect):
    tc = TrainConfig(**train)
    assert concurrency.max_concurrent(cluster, tc, requested, trials=8) == expect
    at_once = expect[0]
    need = concurrency.trial_resources(tc)
    assert all(at_once * need[k] <= cluster.get(k, 0) for k in need)


def test_no_trial_fits_says_what_one_trial_needs():
    with pytest.raises(ValueError, match=r"one trial needs CPU 4.01 \(the cluster has 2\)"):
        concurrency.max_concurrent({"CPU": 2}, TrainConfig(num_workers=4), None, trials=2)
    assert concurrency.max_concurrent({"CPU": 16}, TrainConfig(num_workers=1), None, trials=3)[0] == 3


def record(tid, lr, metric, steps, status, error=None):
    return TrialRecord(trial_id=tid, config={"train.lr": lr}, metric=metric, iterations=2, steps=steps,
                       status=status, checkpoint=None, error=error)


def test_the_best_trial_ignores_failed_ones_and_the_table_says_why_they_failed():
    records = [record("a", 3e-3, 3.1, 60, FINISHED), record("b", 30.0, 2.0, 10, FAILED, "non-finite loss"),
               record("c", 1e-2, 3.3, 20, STOPPED), record("d", 100.0, None, 0, FAILED, "boom")]
    best = best_of(records, "min")
    assert best.trial_id == "a" and best_of(records[1:2], "min") is None
    assert best_of(records, "max").trial_id == "c"
    text = table(records, "val/loss", "a").splitlines()
    assert text[0].split() == ["trial", "train.lr", "val/loss", "steps", "status"]
    assert text[1].split()[:5] == ["*", "a", "0.003", "3.1000", "60"]
    assert text[2].endswith("failed: non-finite loss") and text[4].split()[2] == "-"


def test_best_yaml_keeps_the_final_budget_and_turns_the_search_off():
    cfg = load_config(None, [GOOD_SPACE, SEQ_64, "tune.enabled=true", "tune.max_steps=60", "train.max_steps=500"])
    best = best_config(cfg, record("a", 0.002, 3.0, 60, FINISHED))
    assert best.train.lr == 0.002 and best.train.max_steps == 500
    assert best.tune.enabled is False and best.tune.search_space == cfg.tune.search_space


def test_tune_runs_in_ownlm_run_only_when_enabled_and_trains_counts_it_only_then(tmp_path):
    off = load_config(None, ["data.sample=false"], root=str(tmp_path))
    on = load_config(None, ["data.sample=false", "tune.enabled=true"], root=str(tmp_path))
    assert "tune" not in run.stages_for(off) and "tune" in run.stages_for(on)
    layout = stages.layout_for(tmp_path)
    records = run.StageRecords(layout)
    train = stages.BY_NAME["train"]

    def fp(cfg):
        return run.fingerprint(train, Context(cfg, layout, Tracker(cfg, enabled=False)), records)

    before_off, before_on = fp(off), fp(on)
    records.write("tune", {"fingerprint": "a search"})
    # A tune record changes train's fingerprint only under a config that runs tune
    assert fp(off) == before_off and fp(on) != before_on
    with pytest.raises(Exception, match="run `ownlm tune` first"):
        train.check(Context(on, layout, Tracker(on, enabled=False), planned=("train",)))
    train.check(Context(on, layout, Tracker(on, enabled=False), planned=("tune", "train")))
    with pytest.raises(Exception, match="tune.search_space is empty"):
        stages.BY_NAME["tune"].check(Context(on, layout, Tracker(on, enabled=False)))
