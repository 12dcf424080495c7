"""`ownlm train`: wire the config into a Ray Train TorchTrainer and keep the final checkpoint."""
from __future__ import annotations

import shutil
from dataclasses import asdict, replace
from pathlib import Path

from pipeline.config import Config
from pipeline.packed import Manifest
from pipeline.train.loop import TrainJob, train_loop_per_worker


class TrainError(RuntimeError):
    pass


def build_job(cfg: Config, tokens_dir: Path, run_id: str | None) -> TrainJob:
    from model.tokenizer import Tokenizer

    manifest = Manifest.read(tokens_dir)
    tokenizer_path = Path(tokens_dir) / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise TrainError(f"{tokenizer_path} not found: the tokens folder must hold the tokenizer that made "
                         f"it (`ownlm tokenize` writes it there)")
    tok = Tokenizer.from_file(tokenizer_path)
    if manifest.tokenizer_fingerprint != tok.fingerprint:
        raise TrainError(f"the tokens in {tokens_dir} were made with another tokenizer than "
                         f"{tokenizer_path}: rerun `ownlm tokenize`")
    # The masked family's objective needs <|mask|>'s id: the model config (and so the checkpoint) carries it.
    mcfg = replace(cfg.model.build(vocab_size=tok.vocab_size), mask_id=tok.mask_id)
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
                    source_weights={s.name: s.weight for s in cfg.data.sources if s.weight != 1.0})


def run_train(cfg: Config, tokens_dir: Path, output_dir: Path, storage_dir: Path, run_name: str,
              run_id: str | None = None) -> dict:
    """Train with Ray Train; copy the final checkpoint to output_dir. Returns the last reported metrics.

    The Ray Train run is named by the caller (from the stage fingerprint): rerunning an interrupted
    `ownlm train` with the same inputs and config finds the run in storage and resumes from its
    latest checkpoint.
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    job = build_job(cfg, tokens_dir, run_id)
    tc = cfg.train
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=asdict(job),
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                                     resources_per_worker={"CPU": tc.cpus_per_worker}),
        run_config=RunConfig(
            name=run_name, storage_path=str(storage_dir),
            checkpoint_config=CheckpointConfig(num_to_keep=tc.keep_checkpoints),
            failure_config=FailureConfig(max_failures=tc.max_failures),
            # Progress lines come from rank 0's own prints; Train's per-report INFO logs would drown them.
            logging_config=LoggingConfig(log_level="WARNING"),
            # Train V2 also re-logs every print through its logger, which shows each line twice.
            worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}}),
    )
    result = trainer.fit()
    if result.error:
        raise TrainError(f"training failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise TrainError("training finished without a checkpoint")
    output_dir = Path(output_dir)
    tmp = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with result.checkpoint.as_directory() as ckpt:
        shutil.copytree(ckpt, tmp)
    shutil.rmtree(output_dir, ignore_errors=True)
    tmp.rename(output_dir)
    return dict(result.metrics or {})
