"""`ownlm tune`: the Ray Tune search over Ray Train trials, its scheduler, resume and outputs.

Layout: Tune's experiment lives in `<tune_runs>/<experiment>` (named by the stage fingerprint),
the trials' Train runs in `<tune_runs>/<experiment>-trials/<experiment>-<trial>-g<generation>`,
and results.json, best.yaml and tune.png in `<tune>/`.
"""
from __future__ import annotations

import importlib.util
import os
import random
import time
from pathlib import Path

import ray
from ray import tune

from model.errors import MissingInput, MissingPackage, UserError
from pipeline.config import Config
from pipeline.stage import Context
from pipeline.storage import StoragePath, cache_root, filesystem, is_remote, resolve, rmtree, worker_env
from pipeline.tracking import ChildRuns
from pipeline.tune import concurrency, space
from pipeline.tune.plot import plot
from pipeline.tune.results import (
    FAILED,
    FINISHED,
    best_of,
    record_of,
    table,
    write_outputs,
)
from pipeline.tune.trial import TrialSetup, run_trial

STATE_SAVE_SECONDS = 3
"""How often Tune saves the experiment's state while the search runs (a kill loses at most this)."""


class TuneError(UserError, RuntimeError):
    """A search that cannot start or in which no trial finished: told in one line."""


def experiment_name(fingerprint: str) -> str:
    return "search-" + fingerprint[:12]


def budget(cfg: Config) -> int:
    return cfg.tune.max_steps or cfg.train.max_steps


def run_search(ctx: Context) -> dict:
    cfg, layout = ctx.cfg, ctx.layout
    name = experiment_name(ctx.fingerprint)
    # A local folder or a URI (s3://...): Tune keeps the experiment there through the pyarrow
    # filesystem (with its credentials), as Ray Train does for each trial's run.
    search_root = resolve(layout.tune_runs)
    experiment = search_root / name
    fs, _ = filesystem(search_root)
    tune_fs = fs if is_remote(search_root) else None
    trials = space.trial_count(cfg)
    try:
        at_once, why = concurrency.max_concurrent(ray.cluster_resources(), cfg.train, cfg.tune.max_concurrent_trials,
                                                  trials)
    except ValueError as e:
        raise TuneError(f"tune: {e}") from e
    train_storage = (f"{cfg.train.storage_path.rstrip('/')}/tune/{name}-trials" if cfg.train.storage_path
                     else str(search_root / f"{name}-trials"))
    setup = TrialSetup(raw=space.trial_raw(cfg), tokens_dir=str(resolve(layout.tokens)), storage=train_storage,
                       local_dir=str(search_root if isinstance(search_root, Path) else cache_root() / "tune" / name),
                       experiment=name,
                       tracking_uri=cfg.tracking_uri if cfg.tracking.enabled else None,
                       parent_run_id=ctx.tracker.run_id, checkpoint_every_report=cfg.tune.scheduler == "pbt",
                       storage_env=worker_env())
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup),
                                    {"CPU": concurrency.DRIVER_CPUS})
    progress = ProgressLines(cfg.tune.metric, trials, budget(cfg))
    resuming = cfg.tune.resume and not ctx.forced
    if resuming:
        if not tune.Tuner.can_restore(_on_fs(experiment), storage_filesystem=tune_fs):
            raise MissingInput(f"--resume: no interrupted search of this config in {experiment}; run `ownlm tune` "
                               f"without --resume to start one")
        print(f"[tune] resuming {name}: finished trials are kept, unfinished ones continue from their last "
              f"checkpoint (the scheduler starts afresh: Tune does not save its state)", flush=True)
        tuner = tune.Tuner.restore(_on_fs(experiment), trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False, storage_filesystem=tune_fs)
    else:
        for old in (experiment, search_root / f"{name}-trials"):  # a search of this config starts over
            rmtree(old)
        optuna = cfg.tune.search == "optuna"
        tuner = tune.Tuner(trainable, param_space=space.param_space(space.distributions(cfg), grid_as_choice=optuna),
                           tune_config=tune_config(cfg, at_once, train_storage),
                           run_config=tune.RunConfig(name=name, storage_path=_on_fs(search_root),
                                                     storage_filesystem=tune_fs, verbose=0, callbacks=[progress]))
    print(f"[tune] {trials} trial(s), {at_once} at a time ({why}); scheduler {cfg.tune.scheduler}, search "
          f"{cfg.tune.search}, {budget(cfg)} steps each, ranked by {cfg.tune.metric} ({cfg.tune.mode})", flush=True)
    start = time.perf_counter()
    # Tune's own tables and banners would bury the progress lines; the legacy reporter at
    # verbose=0 prints nothing (a value the user sets wins).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune saves the experiment's state (what --resume restores) every 10 s or more by default; a
    # search killed in between reruns the trials that ended since. The state of a search's few
    # trials is a small JSON file, so it is saved every few seconds.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(STATE_SAVE_SECONDS))
    grid = tuner.fit()
    seconds = time.perf_counter() - start
    ended = [t for t in grid._experiment_analysis.trials if t.status in ("TERMINATED", "ERROR")]
    if len(ended) < trials:  # interrupted (Ctrl-C, SIGUSR1): Tune saved the experiment's state
        raise TuneError(f"tune: the search was interrupted with {trials - len(ended)} of {trials} trial(s) "
                        f"unfinished; `ownlm tune --resume` continues it")
    records = [record_of(r, cfg.tune.metric, cfg.tune.mode, budget(cfg)) for r in grid]
    records.sort(key=lambda r: r.trial_id)
    best = best_of(records, cfg.tune.mode)
    close_trial_runs(setup, records, best)
    print("\n" + table(records, cfg.tune.metric, best.trial_id if best else None), flush=True)
    if best is None:
        raise TuneError(f"tune: none of the {len(records)} trial(s) finished with a {cfg.tune.metric}; the table "
                        f"above gives each one's reason")
    return publish(ctx, records, best, seconds)


def _on_fs(path: StoragePath) -> str:
    """The path as Tune takes it beside storage_filesystem: on the filesystem (bucket/prefix), or a local folder."""
    return filesystem(path)[1]


def tune_config(cfg: Config, at_once: int, train_storage: str):
    t = cfg.tune
    random.seed(t.seed)  # PBT draws its exploit sources and perturbations from `random`
    # With Optuna the grid is a choice (space.ray_domain), drawn as often as a grid would run it.
    samples = space.trial_count(cfg) if t.search == "optuna" else t.num_samples
    return tune.TuneConfig(metric=t.metric, mode=t.mode, num_samples=samples,
                           scheduler=scheduler(cfg, train_storage), search_alg=search_algorithm(cfg, at_once),
                           trial_dirname_creator=lambda trial: trial.trial_id, reuse_actors=False)


def scheduler(cfg: Config, train_storage: str = ""):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    t = cfg.tune
    if t.scheduler == "asha":
        # One report per validation; max_t bounds the rungs (a run validates at most once a step).
        return ASHAScheduler(time_attr="training_iteration", max_t=max(budget(cfg), t.grace_period),
                             grace_period=t.grace_period, reduction_factor=t.reduction_factor)
    if t.scheduler == "pbt":
        from pipeline.tune.pbt import TrainCheckpointPBT

        if is_remote(train_storage):
            # PBT copies a trial's Train checkpoint for another trial to continue from (pbt.py), with
            # local file operations on the driver; on an object store that copy would be a second
            # mechanism beside storage.py, so it is refused before the search starts.
            raise TuneError(f"tune.scheduler pbt hands checkpoints between trials through a folder, and the trials' "
                            f"runs would be at {train_storage}: set train.storage_path to a folder every node sees "
                            f"(NFS), not a URI, or use tune.scheduler asha or fifo with a storage.root URI")

        mutations = space.mutations(space.distributions(cfg))
        if not mutations:
            raise TuneError("tune.scheduler pbt perturbs the sampled keys: give tune.search_space at least one "
                            "key that is not a grid")
        return TrainCheckpointPBT(exploit_dir=f"{train_storage}/exploits", time_attr="step",
                                  perturbation_interval=t.perturbation_interval * cfg.train.eval_every,
                                  hyperparam_mutations=mutations, quantile_fraction=0.5)
    return FIFOScheduler()


def search_algorithm(cfg: Config, at_once: int):
    """Random search (Tune's variant generator, seeded), or Optuna's TPE behind a concurrency limit.
    Both take the trials-at-once limit themselves: Tune ignores TuneConfig's for a generator."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if cfg.tune.search == "random":
        return BasicVariantGenerator(max_concurrent=at_once, random_state=cfg.tune.seed)
    if importlib.util.find_spec("optuna") is None:
        raise MissingPackage("tune.search optuna needs Optuna: pip install 'ownlm[tune]'")
    from ray.tune.search.optuna import OptunaSearch

    return ConcurrencyLimiter(OptunaSearch(seed=cfg.tune.seed), max_concurrent=at_once)


def close_trial_runs(setup: TrialSetup, records, best) -> None:
    """Each trial's MLflow run ends with its status; the best one is tagged."""
    runs = ChildRuns(setup.tracking_uri, setup.parent_run_id)
    for r in records:
        status = {FINISHED: "FINISHED", FAILED: "FAILED"}.get(r.status, "KILLED")
        runs.close(r.trial_id, status, tags={"ownlm.trial_status": r.status, "ownlm.best": best is not None
                                             and r.trial_id == best.trial_id, **({"ownlm.error": r.error}
                                                                                 if r.error else {})},
                   metrics={"tune/best_metric": r.metric} if r.metric is not None else None)


def publish(ctx: Context, records, best, seconds: float) -> dict:
    cfg, folder = ctx.cfg, resolve(ctx.layout.tune)
    write_outputs(folder, cfg, records, best)
    plot(records, cfg.tune.metric, folder / "tune.png", best.trial_id)
    for name in ("results.json", "best.yaml", "tune.png"):
        ctx.tracker.log_artifact(folder / name)
    ctx.tracker.set_tags({"ownlm.best_trial": best.trial_id})
    print(f"\n[tune] best trial {best.trial_id}: {cfg.tune.metric} {best.metric:.4f} with "
          + ", ".join(f"{k}={v}" for k, v in sorted(best.config.items()))
          + f"; its config is {folder / 'best.yaml'}", flush=True)
    counts = {s: sum(r.status == s for r in records) for s in ("finished", "stopped", "failed")}
    return {"tune/best_metric": best.metric, "tune/trials": len(records),
            "tune/trial_steps": sum(r.steps for r in records), "tune/seconds": round(seconds, 1),
            **{f"tune/{s}": n for s, n in counts.items()}, "best_trial": best.trial_id}


class ProgressLines(tune.Callback):
    """One line per trial that ends, while the search runs."""

    def __init__(self, metric: str, total: int, steps: int):
        self.metric, self.total, self.steps = metric, total, steps

    def _line(self, trials, trial, how: str) -> None:
        # Counted from Tune's trials, not by this callback: after --resume (which restores the
        # callback as it was when the search started) the trials that ended before count too.
        done = len({t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")} | {trial.trial_id})
        last = trial.last_result or {}
        value = last.get(self.metric)
        what = f"{self.metric} {value:.4f}" if isinstance(value, float) else f"no {self.metric}"
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(space.sampled(trial.config).items()))
        print(f"[tune] trial {trial.trial_id} {how} ({done}/{self.total} ended): {what} at step "
              f"{last.get('step', 0)}; {params}", flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trials, trial, FINISHED if (trial.last_result or {}).get("step", 0) >= self.steps else "stopped")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trials, trial, FAILED)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
