"""Training checkpoints: what a restarted run needs, written by the workers, read back on resume.

Two layouts, one per strategy; both hold `train_state.pt` (step, data position in rows,
the global batch and the number of workers that wrote it, best validation loss,
early-stopping counter, the schedule, every rank's RNG states) and the tokenizer. Both
resume on another number of workers: a plain state dict loads anywhere, and DCP reshards.

    ddp    a plain model checkpoint (model/checkpoint.py: model.safetensors + config.json)
           written by rank 0, with the optimizer state inside train_state.pt.
    fsdp2  a distributed checkpoint (torch.distributed.checkpoint) under dcp/: every rank
           writes its own shards of the weights and optimizer state, nothing is gathered;
           rank 0 adds dcp.json (the model config and metadata). Ray Train uploads each
           rank's files into the same checkpoint folder. `export_model` turns it into a plain
           checkpoint that `model.checkpoint.load_model` reads; the final model always is one.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from model.atomic import discard_dir, publish_dir, staging_dir
from model.checkpoint import load_model, load_train_state, save_checkpoint
from model.config import ModelConfig
from model.transformer import Transformer
from pipeline.train.parallel import is_sharded, unwrap

DCP_DIR, DCP_META, TRAIN_STATE, TOKENIZER = "dcp", "dcp.json", "train_state.pt", "tokenizer.json"


def is_distributed_checkpoint(path: str | Path) -> bool:
    return (Path(path) / DCP_META).is_file()


# ---- RNG states: every rank's, so a resumed run draws exactly what it would have ----

def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def all_rng_states(device: torch.device) -> list[dict]:
    """Every rank's RNG states, in rank order (a collective: every rank calls it)."""
    mine = rng_state(device)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [mine]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    return gathered


# ---- saving (every rank calls; returns the folder this rank reports, or None) ----

def save(path: Path, model, optimizer, progress: dict, *, model_config, tokenizer_path: str, metadata: dict,
         rank: int, device: torch.device) -> Path | None:
    state = {**progress, "rng": all_rng_states(device)}
    if not is_sharded(model):
        if rank != 0:
            return None
        save_checkpoint(path, unwrap(model), model_config, tokenizer_path=tokenizer_path,
                        train_state={**state, "optimizer": optimizer.state_dict()}, metadata=metadata)
        return path

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    path.mkdir(parents=True, exist_ok=True)
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(path / DCP_DIR))
    if rank == 0:
        shutil.copyfile(tokenizer_path, path / TOKENIZER)
        torch.save(state, path / TRAIN_STATE)
        (path / DCP_META).write_text(json.dumps({"model": model_config.to_dict(), "metadata": metadata},
                                                indent=2) + "\n")
    return path


# ---- resuming (every rank calls) ----

def load(path: Path, model, optimizer, *, rank: int, device: torch.device) -> dict:
    """Restore weights, optimizer and this rank's RNG states; returns the saved progress."""
    path = Path(path)
    if is_sharded(model) != is_distributed_checkpoint(path):
        kind = "a distributed (fsdp2)" if is_distributed_checkpoint(path) else "a plain (ddp)"
        raise ValueError(f"{path} is {kind} checkpoint: resume it with the strategy that wrote it")
    if is_sharded(model):
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_state, optim_state = get_state_dict(model, optimizer)
        loaded = {"model": model_state, "optim": optim_state}
        dcp.load(loaded, checkpoint_id=str(path / DCP_DIR))  # reshards when the world size changed
        set_state_dict(model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"])
        state = torch.load(path / TRAIN_STATE, map_location="cpu", weights_only=False)
    else:
        weights, _ = load_model(path)
        unwrap(model).load_state_dict(weights.state_dict())
        state = load_train_state(path)
        optimizer.load_state_dict(state.pop("optimizer"))
    rngs = state.pop("rng")
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if len(rngs) == world:  # the same workers: continue each rank's streams exactly
        set_rng_state(rngs[rank], device)
    # on another number of workers each keeps the stream seeded at start: no rank's stream maps to it
    return state


# ---- export (one process, no process group) ----

def export_model(src: str | Path, dst: str | Path) -> Path:
    """Copy a training checkpoint to dst as a plain model checkpoint (atomically replacing dst).

    A distributed checkpoint is read into one process and written as model.safetensors +
    config.json + tokenizer + train_state.pt (progress without the sharded optimizer state).
    """
    src, dst = Path(src), Path(dst)
    if is_distributed_checkpoint(src):
        # One model checkpoint written and published whole by save_checkpoint.
        model, config, meta = load_distributed_weights(src)
        state = torch.load(src / TRAIN_STATE, map_location="cpu", weights_only=False)
        state.pop("rng", None)
        save_checkpoint(dst, model, config, tokenizer_path=src / TOKENIZER, train_state=state,
                        metadata=meta["metadata"])
        return dst
    tmp = staging_dir(dst)
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        return publish_dir(tmp, dst)
    except BaseException:
        discard_dir(tmp)
        raise


def load_distributed_weights(path: str | Path):
    """(Transformer, ModelConfig, dcp.json) from a distributed checkpoint, in one process."""
    import torch.distributed.checkpoint as dcp

    path = Path(path)
    meta = json.loads((path / DCP_META).read_text())
    config = ModelConfig.from_dict(meta["model"])
    with torch.device("meta"):
        model = Transformer(config)
    model.to_empty(device="cpu")
    model.tie_weights()
    weights = {"model": model.state_dict()}
    dcp.load(weights, checkpoint_id=str(path / DCP_DIR))  # only the model's keys are read
    model.load_state_dict(weights["model"])
    model.init_rope()
    return model.eval(), config, meta
