"""`ownlm train`: wire the config into a Ray Train TorchTrainer and keep the final checkpoint.

The `train` config section becomes Ray Train's ScalingConfig (workers, CPUs, GPU, extra
resources, placement), RunConfig (run name, storage path or URI), CheckpointConfig (keep N,
best by validation loss) and FailureConfig (max failures); the loop in loop.py runs on every
worker. The kept checkpoint with the lowest validation loss (or the last, by config) is
exported as a plain model checkpoint (checkpoints.export_model).
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from model.errors import UserError
from model.tokenizer import Tokenizer
from pipeline.config import Config, TrainConfig
from pipeline.packed import Manifest
from pipeline.storage import (StoragePath, cache_root, filesystem, is_remote, local_copy, local_output, resolve,
                              rmtree, worker_env)
from pipeline.train import failures
from pipeline.train.checkpoints import export_model
from pipeline.train.faults import forwarded_env
from pipeline.train.loop import STOP_NON_FINITE, TrainJob, train_loop_per_worker


class TrainError(UserError, RuntimeError):
    """Training that cannot start (its inputs do not fit together) or that failed: told in one line."""


def build_job(cfg: Config, tokens_dir: Path, run_id: str | None) -> TrainJob:
    manifest = Manifest.read(tokens_dir)
    tokenizer_path = resolve(tokens_dir) / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise TrainError(f"{tokenizer_path} not found: the tokens folder must hold the tokenizer that made "
                         f"it (`ownlm tokenize` writes it there)")
    tok = Tokenizer.from_file(local_copy(tokenizer_path))
    if manifest.tokenizer_fingerprint != tok.fingerprint:
        raise TrainError(f"the tokens in {tokens_dir} were made with another tokenizer than "
                         f"{tokenizer_path}: rerun `ownlm tokenize`")
    # The masked family's objective needs <|mask|>'s id: the model config (and so the checkpoint) carries it.
    mcfg = replace(cfg.model.build(vocab_size=tok.vocab_size), mask_id=tok.mask_id)
    # A local folder made absolute, or a URI kept as it is: the worker that loads the weights
    # fetches them itself (parallel.load_weights), on whichever node it runs.
    init_from = resolve(cfg.train.init_from) if cfg.train.init_from else None
    if init_from is not None:
        mcfg = initial_weights_config(init_from, tok)
    if mcfg.family == "masked" and mcfg.mask_id is None:
        raise TrainError(f"{tokenizer_path} has no <|mask|> token, which the masked family needs: retrain the "
                         f"tokenizer (`ownlm tokenizer --force`) and re-tokenize")
    if manifest.seq_len > mcfg.max_seq_len:
        raise TrainError(f"packed sequences have {manifest.seq_len} tokens but the model's max_seq_len is "
                         f"{mcfg.max_seq_len}: set model.max_seq_len or re-tokenize with a smaller seq_len")
    return TrainJob(train=cfg.train.model_dump(), model=mcfg.to_dict(), tokens_dir=str(tokens_dir),
                    tokenizer_path=str(tokenizer_path), tracking_uri=cfg.tracking_uri if cfg.tracking.enabled
                    else None, run_id=run_id,
                    metadata={"preset": cfg.model.preset, "tokenizer_fingerprint": tok.fingerprint},
                    source_weights={s.name: s.weight for s in cfg.data.sources if s.weight != 1.0},
                    init_from=str(init_from) if init_from is not None else None)


def initial_weights_config(path: StoragePath, tok: Tokenizer):
    """The model config of the checkpoint a run starts from (`train.init_from`, a folder or a URI),
    checked against the tokens' tokenizer: continuing on another tokenizer's ids would train on
    noise. Only its config.json is read here (a remote one through this node's cache)."""
    from model.checkpoint import load_config, read_metadata  # torch

    if not (path / "config.json").is_file():
        raise TrainError(f"train.init_from: no checkpoint at {path} (config.json missing)")
    header = local_copy(path, include=("config.json",))
    theirs = read_metadata(header).get("tokenizer_fingerprint")
    if theirs and theirs != tok.fingerprint:
        raise TrainError(f"train.init_from: {path} was trained with another tokenizer than the tokens' one: "
                         "tokenize with the checkpoint's own tokenizer")
    return load_config(header)


def run_train(cfg: Config, tokens_dir: Path, output_dir: Path, storage_dir: Path, run_name: str,
              run_id: str | None = None, fresh: bool = False) -> dict:
    """Train with Ray Train; export the final checkpoint to output_dir. Returns the last metrics
    logged (rank 0), with `final/step` and `final/val_loss` of the checkpoint kept as the model.

    The Ray Train run is named by the caller (from the stage fingerprint): rerunning an interrupted
    `ownlm train` with the same inputs and config finds the run in storage and resumes from its
    latest checkpoint. Within a run, Ray Train restarts failed workers from the last checkpoint
    (`train.max_failures`). `fresh` deletes the run's earlier checkpoints first (a forced rerun).
    """
    job = build_job(cfg, tokens_dir, run_id)
    return launch(job, cfg.train, output_dir, storage_dir, run_name, fresh=fresh)


def launch(job: TrainJob, tc: TrainConfig, output_dir: Path, storage_dir: Path, run_name: str, fresh: bool = False,
           loop=train_loop_per_worker) -> dict:
    """Fit `loop` (a per-worker entry taking the job as a dict) on Ray Train under the `train`
    section tc; export the kept checkpoint to output_dir; return the metrics (see run_train)."""
    storage = storage_root(tc, storage_dir)
    if fresh:
        delete_run(storage, run_name)
    log_path = failure_log_path(storage, storage_dir, run_name)
    result = fit(trainer_for(job, tc, storage, run_name, log_path, loop=loop), tc, storage, run_name, log_path)
    return finish(result, tc.final_checkpoint, output_dir, where=f"run {run_name} in {storage}")


def storage_root(tc: TrainConfig, storage_dir: Path) -> str:
    """Ray Train's storage path: train.storage_path, else storage_dir (made absolute, as Ray wants)."""
    return str(resolve(tc.storage_path or storage_dir))


def trainer_for(job: TrainJob, tc: TrainConfig, storage: str, run_name: str, log_path: Path, callbacks=(),
                loop=train_loop_per_worker):
    """The TorchTrainer of `ownlm train` (or of `loop`: fine-tuning's); `callbacks` are more Ray
    Train callbacks (a Tune trial's TuneReportCallback)."""
    from ray.train.torch import TorchTrainer

    return TorchTrainer(loop, train_loop_config=asdict(job), scaling_config=scaling_config(tc),
                        run_config=run_config(tc, run_name, storage, log_path, callbacks))


def fit(trainer, tc: TrainConfig, storage: str, run_name: str, log_path: Path):
    """trainer.fit(); a failed run raises TrainError in one line, its errors in full in log_path."""
    from ray.train import TrainingFailedError

    where = f"run {run_name} in {storage}"
    try:
        return trainer.fit()
    except TrainingFailedError as e:
        # The error holds every rank's error and traceback (~35 lines for one lost worker): they go
        # to the log file (the controller wrote the workers' there already), the message is one line.
        if not getattr(e, "worker_failures", None):
            failures.append(log_path, f"training failed ({where})", {"Ray Train": e})
        raise TrainError(failures.summary(e, max_failures=tc.max_failures, where=where, log_path=log_path,
                                          resume_step=failures.last_checkpoint_step(run_path(storage, run_name))
                                          )) from e


def run_path(storage: str, run_name: str) -> str:
    return f"{storage.rstrip('/')}/{run_name}"


def failure_log_path(storage: str, storage_dir: Path, run_name: str) -> Path:
    """Where worker failures are written in full: the run's folder, or for a storage URI the local
    default storage folder (the controller, which writes it, runs on the driver's node)."""
    local = Path(storage) if not is_remote(storage) else cache_root() / "train-logs"
    return local / run_name / "failures.log"


def delete_run(storage: str, run_name: str) -> None:
    """Remove a run's folder (local or any pyarrow filesystem URI) so the next fit starts over."""
    rmtree(resolve(run_path(storage, run_name)))


def finish(result, which: str, output_dir: Path, where: str = "the run") -> dict:
    """From a finished run's `ray.train.Result`: raise on a non-finite stop, export the chosen
    checkpoint to output_dir, and return the metrics (rank 0's last, plus `final/*`)."""
    summary = raise_if_diverged(result)
    chosen = choose_checkpoint(result, which)
    if chosen is None:
        raise TrainError(f"training finished without a checkpoint ({where})")
    checkpoint, chosen_metrics = chosen
    with checkpoint.as_directory() as ckpt_dir, local_output(resolve(output_dir)) as out:
        export_model(ckpt_dir, out)
    metrics = {**chosen_metrics, **summary.get("metrics", {})}
    metrics.update({"step": summary.get("step", chosen_metrics.get("step")),
                    "final/step": chosen_metrics.get("step"), "final/val_loss": chosen_metrics.get("val/loss")})
    if summary.get("stopped"):
        metrics["stopped"] = summary["stopped"]
    return metrics


def raise_if_diverged(result) -> dict:
    """rank 0's summary of a finished run; a run stopped by a non-finite loss raises its message."""
    summary = result.return_value or {}
    if summary.get("stopped") == STOP_NON_FINITE:
        raise TrainError(summary["error"])
    return summary


def scaling_config(tc: TrainConfig):
    from ray.train import ScalingConfig

    # A range makes the run elastic: Ray Train 2.60 takes (min, max) and restarts a failed group on
    # as many workers as the cluster can place; the loop resumes on any number (loop._set_budget).
    elastic = tc.min_workers is not None and tc.min_workers < tc.num_workers
    return ScalingConfig(num_workers=(tc.min_workers, tc.num_workers) if elastic else tc.num_workers,
                         use_gpu=tc.use_gpu,
                         resources_per_worker={"CPU": tc.cpus_per_worker, **tc.resources_per_worker},
                         placement_strategy=tc.placement_strategy)


def run_config(tc: TrainConfig, run_name: str, storage: str, log_path: Path, callbacks=()):
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig

    # The filesystem object, not the URI, so that its credentials travel to the workers (pipeline/storage.py).
    fs, storage_on_fs = filesystem(storage)
    return RunConfig(
        name=run_name, storage_path=storage_on_fs, storage_filesystem=fs if is_remote(storage) else None,
        # One line per worker failure on the console, the full errors in log_path (failures.py).
        callbacks=[failures.FailureLog(log_path, tc.max_failures, run_path(storage, run_name)), *callbacks],
        # Keep the best checkpoints by validation loss (every checkpoint report carries one);
        # Ray Train always keeps the latest too, which is what a restart resumes from.
        checkpoint_config=CheckpointConfig(num_to_keep=tc.keep_checkpoints, checkpoint_score_attribute="val/loss",
                                           checkpoint_score_order="min"),
        failure_config=FailureConfig(max_failures=tc.max_failures),
        # Progress lines come from rank 0's own prints; Train's per-report INFO logs would drown them.
        logging_config=LoggingConfig(log_level="WARNING"),
        # Train V2 also re-logs every print through its logger, which shows each line twice.
        # The storage variables too: the workers read the tokens and tokenizer named by URI in the job.
        worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", **forwarded_env(), **worker_env()}})


def choose_checkpoint(result, which: str):
    """(Checkpoint, its metrics): the lowest validation loss among those kept, or the latest."""
    if which == "best" and result.best_checkpoints:
        return min(result.best_checkpoints, key=lambda cm: (cm[1].get("val/loss", float("inf")),
                                                            -cm[1].get("step", 0)))
    if result.checkpoint is None:
        return None
    return result.checkpoint, dict(result.metrics or {})
