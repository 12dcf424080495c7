"""Checkpoints: one folder that model/ alone can load.

    <path>/model.safetensors   weights (a tied output head is stored once, as the embedding)
    <path>/config.json         {"format": "ownlm", "format_version": 1, "model": {...}, ...metadata}
    <path>/tokenizer.json      the tokenizer the model was trained with (when given)
    <path>/train_state.pt      what resuming needs: optimizer, scheduler, step, rng (when given)

An adapter checkpoint (a model with LoRA adapters, model/lora.py) holds adapter.safetensors
(the adapters alone) instead of model.safetensors, and config.json's "lora" names its base
checkpoint; load_model loads the base, applies the adapters and checks the base still has the
config they were trained on, so every command that loads a checkpoint loads either kind.

A tokenizer that is not ownlm's own (an imported model's) has its role -> token mapping in
config.json's "tokenizer_roles" (see model.tokenizer); load_tokenizer applies it.
add_special_tokens adds tokens to a checkpoint's tokenizer and grows the model to cover them,
recording the resize in "vocab_resizes".

Folders are written beside the target and renamed into place, so a reader sees the old
checkpoint or the new one, never half of one. Paths are local; syncing to shared storage
is the caller's (Ray Train's) business.
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from model.atomic import discard_dir, publish_dir, staging_dir
from model.config import ModelConfig
from model import lora
from model.errors import InputError, MissingInput
from model.tokenizer import OWN_TOKENS, Tokenizer, check_roles
from model.transformer import Transformer

FORMAT = "ownlm"
FORMAT_VERSION = 1
WEIGHTS, CONFIG, TOKENIZER, TRAIN_STATE = "model.safetensors", "config.json", "tokenizer.json", "train_state.pt"
ADAPTER, LORA_KEY = "adapter.safetensors", "lora"
_TIED_KEY, _EMBEDDING_KEY = "output.weight", "tok_embeddings.weight"
ROLES_KEY, RESIZES_KEY = "tokenizer_roles", "vocab_resizes"
"""config.json metadata: the tokenizer's role -> token mapping, and the list of explicit vocabulary resizes."""


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
    added (and checked, when metadata already has it). A tokenizer that is not ownlm's own
    needs its role mapping in metadata["tokenizer_roles"] (model.tokenizer.Tokenizer's roles). In a distributed run only rank 0
    writes; with FSDP2 every rank must call (gathering the shards is collective).
    """
    path = Path(path)
    spec = lora.lora_spec(unwrap_model(model))
    if spec is not None:
        if spec.base is None:
            raise ValueError("an adapter checkpoint needs its base: set LoRASpec.base to the base checkpoint")
        metadata = {**(metadata or {}), LORA_KEY: spec.to_dict()}
    header = _config_json(cfg, metadata, tokenizer_path)  # fails before anything is written
    state = model_state_dict(model)
    _check_shapes({k: v for k, v in state.items() if not lora.is_adapter_key(k)}, cfg)
    if _is_distributed() and torch.distributed.get_rank() != 0:
        return path
    if spec is not None:  # the adapters alone: the base weights stay in the base checkpoint
        state, weights_file = {k: v for k, v in state.items() if lora.is_adapter_key(k)}, ADAPTER
    else:
        weights_file = WEIGHTS
    if cfg.tie_embeddings:
        # safetensors refuses tensors that share memory; the head is re-tied on load.
        state.pop(_TIED_KEY, None)

    tmp = staging_dir(path)
    try:
        save_file(state, str(tmp / weights_file), metadata={"format": "pt"})
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
        if ROLES_KEY in metadata:
            metadata[ROLES_KEY] = check_roles(metadata[ROLES_KEY])
        fingerprint = Tokenizer.from_file(tokenizer_path, metadata.get(ROLES_KEY)).fingerprint
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
    spec = read_metadata(path).get(LORA_KEY)
    if spec is not None:
        return _load_adapter_model(path, cfg, lora.LoRASpec.from_dict(spec), device, dtype)
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


def _load_adapter_model(path: Path, cfg: ModelConfig, spec, device, dtype):
    """The base checkpoint spec.base with this checkpoint's adapters applied (eval mode)."""
    base_path = Path(spec.base)
    if not base_path.is_absolute():
        base_path = (path / base_path).resolve()  # a base named relative to the adapter folder
    try:
        model, base_cfg = load_model(base_path, device=device, dtype=dtype)
    except InputError as e:
        raise CheckpointError(f"{path} holds LoRA adapters for the base checkpoint {base_path}, which does "
                              f"not load: {e}") from e
    if base_cfg.to_dict() != cfg.to_dict():
        raise CheckpointError(f"{path} holds LoRA adapters for a model other than {base_path} (their model "
                              f"configs differ): point config.json's lora.base at the checkpoint they were trained on")
    lora.apply_lora(model, spec)
    file = path / ADAPTER
    if not file.is_file():
        raise CheckpointError(f"{path} is an adapter checkpoint without its {ADAPTER}")
    adapters = load_file(str(file), device=str(device))
    expected = set(lora.adapter_state_dict(model))
    if set(adapters) != expected:
        raise CheckpointError(f"{file} does not fit the adapters its config.json describes "
                              f"({len(adapters)} tensors, expected {len(expected)})")
    model.load_state_dict({k: v.to(dtype) if dtype else v for k, v in adapters.items()}, strict=False)
    return model.eval(), cfg


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer saved with a checkpoint, with the role mapping its metadata records (an
    imported model's tokenizer); without one, ownlm's own special tokens."""
    meta = read_metadata(path)
    file = Path(path) / TOKENIZER
    if not file.is_file():
        raise CheckpointError(f"checkpoint {path} was saved without a tokenizer ({TOKENIZER})")
    try:
        return Tokenizer.from_file(file, meta.get(ROLES_KEY))
    except ValueError as e:
        raise CheckpointError(f"{file}: {e}") from e


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


# ---- explicit vocabulary growth ----

def grow_vocab(state: dict[str, torch.Tensor], cfg: ModelConfig, vocab_size: int) -> dict[str, torch.Tensor]:
    """A state dict with the embedding (and an untied head) grown to vocab_size rows: the old
    rows exactly as they were, each new row the mean of the old ones (computed in float32), a
    neutral start that training moves. A tied head stays the embedding."""
    old = state[_EMBEDDING_KEY].shape[0]
    if vocab_size < old:
        raise ValueError(f"cannot shrink the vocabulary from {old} to {vocab_size} rows")
    out = dict(state)
    for key in (_EMBEDDING_KEY,) + (() if cfg.tie_embeddings else (_TIED_KEY,)):
        w = state[key]
        extra = w.float().mean(0, keepdim=True).to(w.dtype).expand(vocab_size - w.shape[0], -1)
        out[key] = torch.cat([w, extra])
    if cfg.tie_embeddings:
        out[_TIED_KEY] = out[_EMBEDDING_KEY]
    return out


def add_special_tokens(
    path: str | Path,
    tokens: list[str],
    output: str | Path | None = None,
    *,
    roles: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Add special tokens to a checkpoint's tokenizer and grow the model to cover their ids: the
    explicit resize that a command needing tokens an imported model lacks (fine-tuning on chat
    roles, the masked family's <|mask|>) runs, instead of import changing the model.

    tokens: the tokens' texts, e.g. model.tokenizer.ROLE_TOKENS; ones the tokenizer already has
    are skipped. New ids follow the tokenizer's last; when they pass the config's vocab_size the
    embedding (and an untied head) grow to cover them (grow_vocab: old rows bit-identical, new
    ones the mean of the old). An id below vocab_size keeps the row the model already has there.
    Each of ownlm's roles without a token is mapped to its own token (model.tokenizer.OWN_TOKENS)
    when that is now there; roles maps roles explicitly (to tokens the tokenizer has after the
    addition), overriding. The mask role's id becomes the config's mask_id.

    The result is saved at output (None: the checkpoint itself, replaced atomically), with the
    role mapping in "tokenizer_roles" and this resize appended to "vocab_resizes" in config.json.
    A train_state.pt is not carried over: its optimizer state has the old shapes. When nothing
    changes and output is the checkpoint itself, nothing is written. Returns the
    record: {"added": [token, ...], "ids": {token: id}, "old_vocab_size", "vocab_size",
    "init", "tied", "roles": {role: token | None}, "previous_tokenizer_fingerprint", "output"}.
    """
    import tokenizers

    path = Path(path)
    output = path if output is None else Path(output)
    meta = read_metadata(path)
    tok = load_tokenizer(path)
    model, cfg = load_model(path)
    if isinstance(tokens, str) or not all(isinstance(t, str) and t for t in tokens):
        raise ValueError(f"tokens must be a list of non-empty token strings, got {tokens!r}")
    backend = tokenizers.Tokenizer.from_str(tok.backend.to_str())
    added = [t for t in dict.fromkeys(tokens) if backend.token_to_id(t) is None]
    if added:
        backend.add_special_tokens(added)
    new_roles = dict(tok.roles)
    for role, own in OWN_TOKENS.items():
        if new_roles[role] is None and backend.token_to_id(own) is not None:
            new_roles[role] = own
    new_roles.update(roles or {})
    new_roles = Tokenizer(backend, new_roles).roles  # checks that every mapped token is there

    old_vocab = cfg.vocab_size
    vocab = max(old_vocab, backend.get_vocab_size(with_added_tokens=True))
    mask = new_roles["mask"]
    new_cfg = ModelConfig.from_dict({**cfg.to_dict(), "vocab_size": vocab,
                                     "mask_id": backend.token_to_id(mask) if mask else cfg.mask_id}).validate()
    record = {"added": added, "ids": {t: backend.token_to_id(t) for t in added}, "old_vocab_size": old_vocab,
              "vocab_size": vocab, "init": "mean of the existing rows", "tied": cfg.tie_embeddings,
              "roles": new_roles, "previous_tokenizer_fingerprint": tok.fingerprint}
    if not added and new_roles == tok.roles and new_cfg == cfg and output == path:
        return {**record, "output": str(output)}  # nothing to do: the checkpoint stays as it is
    state = grow_vocab(model.state_dict(), cfg, vocab) if vocab > old_vocab else model.state_dict()
    with torch.device("meta"):
        grown = Transformer(new_cfg)
    grown.load_state_dict(state, strict=True, assign=True)
    grown.tie_weights()

    reserved = {"format", "format_version", "model", "tokenizer_fingerprint"}
    metadata = {k: v for k, v in meta.items() if k not in reserved}
    metadata[ROLES_KEY] = new_roles
    metadata[RESIZES_KEY] = list(meta.get(RESIZES_KEY, [])) + [record]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp_tok = output.parent / f".{output.name}.tokenizer-{uuid.uuid4().hex[:8]}.json"
    backend.save(str(tmp_tok))
    try:
        save_checkpoint(output, grown, new_cfg, tokenizer_path=tmp_tok, metadata=metadata)
    finally:
        tmp_tok.unlink(missing_ok=True)
    return {**record, "output": str(output)}
