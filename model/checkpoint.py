"""Checkpoints: one folder that model/ alone can load.

    <path>/model.safetensors   weights (a tied output head is stored once, as the embedding)
    <path>/config.json         {"format": "ownlm", "format_version": 1, "model": {...}, ...metadata}
    <path>/tokenizer.json      the tokenizer the model was trained with (when given)
    <path>/train_state.pt      what resuming needs: optimizer, scheduler, step, rng (when given)

Folders are written beside the target and renamed into place, so a reader sees the old
checkpoint or the new one, never half of one. Paths are local; syncing to shared storage
is the caller's (Ray Train's) business.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from model.atomic import discard_dir, publish_dir, staging_dir
from model.config import ModelConfig
from model.errors import InputError, MissingInput
from model.tokenizer import Tokenizer
from model.transformer import Transformer

FORMAT = "ownlm"
FORMAT_VERSION = 1
WEIGHTS, CONFIG, TOKENIZER, TRAIN_STATE = "model.safetensors", "config.json", "tokenizer.json", "train_state.pt"
_TIED_KEY, _EMBEDDING_KEY = "output.weight", "tok_embeddings.weight"


class CheckpointError(InputError):
    """A folder that is not a readable ownlm checkpoint."""


# ---- saving ----

def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def model_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full, contiguous tensors of the unwrapped model's weights, as safetensors wants.
    FSDP2 shards (DTensors) are gathered: then every rank must call this (it is collective)."""
    state = unwrap_model(model).state_dict()
    out = {}
    for name, t in state.items():
        if hasattr(t, "full_tensor"):  # a DTensor from FSDP2 / tensor parallelism
            t = t.full_tensor()
        out[name] = t.detach().contiguous()
    return out


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    cfg: ModelConfig,
    *,
    tokenizer_path: str | Path | None = None,
    train_state: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder at path atomically (replacing one already there).

    metadata: JSON-serializable extras stored at the top level of config.json (step,
    tokens seen, data fingerprints, ...); with a tokenizer, "tokenizer_fingerprint" is
    added (and checked, when metadata already has it). In a distributed run only rank 0
    writes; with FSDP2 every rank must call (gathering the shards is collective).
    """
    path = Path(path)
    header = _config_json(cfg, metadata, tokenizer_path)  # fails before anything is written
    state = model_state_dict(model)
    _check_shapes(state, cfg)
    if _is_distributed() and torch.distributed.get_rank() != 0:
        return path
    if cfg.tie_embeddings:
        # safetensors refuses tensors that share memory; the head is re-tied on load.
        state.pop(_TIED_KEY, None)

    tmp = staging_dir(path)
    try:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        if tokenizer_path is not None:
            shutil.copyfile(tokenizer_path, tmp / TOKENIZER)
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE)
        (tmp / CONFIG).write_text(json.dumps(header, indent=2) + "\n")
        publish_dir(tmp, path)
    except BaseException:
        discard_dir(tmp)
        raise
    return path


def _config_json(cfg: ModelConfig, metadata: dict | None, tokenizer_path) -> dict[str, Any]:
    header: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": cfg.to_dict()}
    metadata = dict(metadata or {})
    clash = sorted(set(metadata) & set(header))
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved by the checkpoint format: rename them")
    if tokenizer_path is not None:
        fingerprint = Tokenizer.from_file(tokenizer_path).fingerprint
        claimed = metadata.setdefault("tokenizer_fingerprint", fingerprint)
        if claimed != fingerprint:
            raise ValueError(
                f"metadata says tokenizer_fingerprint {claimed[:12]}... but {tokenizer_path} "
                f"is {fingerprint[:12]}...: pass the tokenizer the model was trained with"
            )
    header.update(metadata)
    try:
        json.dumps(header)
    except TypeError as e:
        raise ValueError(f"checkpoint metadata must be JSON-serializable: {e}") from e
    return header


def _check_shapes(state: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
    """Refuse to write weights that Transformer(cfg) could not load back."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in Transformer(cfg).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        diff = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
        raise ValueError(f"model weights do not match the config at {diff[:5]}: pass the model's own config")



def _is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


# ---- loading ----

def read_metadata(path: str | Path) -> dict[str, Any]:
    """The whole config.json of a checkpoint: format fields, "model", and the extras saved."""
    path = Path(path)
    if not path.is_dir():
        raise MissingInput(f"no checkpoint folder at {path}")
    config_file = path / CONFIG
    if not config_file.is_file():
        raise CheckpointError(f"{path} is not an ownlm checkpoint: it has no {CONFIG}")
    try:
        header = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_file} is not valid JSON: {e}") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{config_file} is not an ownlm checkpoint config (format != {FORMAT!r})")
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format_version {header.get('format_version')!r}; "
            f"this code reads version {FORMAT_VERSION}"
        )
    return header


def load_config(path: str | Path) -> ModelConfig:
    try:
        return ModelConfig.from_dict(read_metadata(path)["model"]).validate()
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}/{CONFIG} has no valid model config: {e}") from e


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """(Transformer, ModelConfig) from a checkpoint, in eval mode, weights in dtype (None:
    as stored). Built on the meta device and given the loaded tensors directly, so no
    memory or time goes into a random init that would be overwritten."""
    path = Path(path)
    cfg = load_config(path)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{path} is not an ownlm checkpoint: it has no {WEIGHTS}")
    state = load_file(str(weights), device=str(device))
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    if cfg.tie_embeddings and _EMBEDDING_KEY in state:
        state[_TIED_KEY] = state[_EMBEDDING_KEY]
    with torch.device("meta"):
        model = Transformer(cfg)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights} does not fit its {CONFIG}: {e}") from e
    model.tie_weights()  # assign=True gave the head its own Parameter object
    model.init_rope()  # float32 tables on the weights' device
    return model.eval(), cfg


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer saved with a checkpoint."""
    read_metadata(path)
    file = Path(path) / TOKENIZER
    if not file.is_file():
        raise CheckpointError(f"checkpoint {path} was saved without a tokenizer ({TOKENIZER})")
    return Tokenizer.from_file(file)


def load_train_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict | None:
    """The training state saved with a checkpoint, or None when it has none.

    Unpickled in full (weights_only=False): optimizer states and RNG states are more than
    tensors. Only load checkpoints you wrote yourself.
    """
    read_metadata(path)
    file = Path(path) / TRAIN_STATE
    if not file.is_file():
        return None
    return torch.load(file, map_location=map_location, weights_only=False)
