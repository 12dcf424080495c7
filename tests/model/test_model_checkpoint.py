"""Checkpoint folders: exact round trips, atomic overwrite, wrappers, clear errors."""
from __future__ import annotations

import json

import pytest
import torch

from model.checkpoint import (
    CheckpointError,
    load_model,
    load_tokenizer,
    load_train_state,
    read_metadata,
    save_checkpoint,
)
from model.config import get_preset
from model.tokenizer import Tokenizer
from model.transformer import Transformer

TOKENS = torch.randint(0, 4096, (2, 12), generator=torch.Generator().manual_seed(0))


def trained_a_little(cfg, seed=0):
    """Weights unlike any fresh init (and an untied head unlike the embedding)."""
    torch.manual_seed(seed)
    model = Transformer(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    from model.transformer import lm_loss

    for _ in range(2):
        lm_loss(model(TOKENS[:, :-1]), TOKENS[:, 1:]).backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@pytest.mark.parametrize("tied", [True, False])
def test_round_trip_gives_identical_logits(tmp_path, tied):
    cfg = get_preset("debug", tie_embeddings=tied)
    model = trained_a_little(cfg)
    save_checkpoint(tmp_path / "ckpt", model, cfg)
    loaded, loaded_cfg = load_model(tmp_path / "ckpt")
    assert loaded_cfg == cfg
    assert (loaded.output.weight is loaded.tok_embeddings.weight) == tied
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(TOKENS), model(TOKENS))
    if tied:  # the shared matrix is stored once
        from safetensors import safe_open

        with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), "pt") as f:
            assert "output.weight" not in f.keys()


def test_tokenizer_train_state_and_metadata_travel_along(tmp_path, tokenizer_file):
    cfg = get_preset("debug")
    model = Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters())
    state = {"optimizer": opt.state_dict(), "step": 17, "torch_rng": torch.get_rng_state()}
    save_checkpoint(tmp_path / "c", model, cfg, tokenizer_path=tokenizer_file, train_state=state,
                    metadata={"step": 17, "val_loss": 3.5})
    meta = read_metadata(tmp_path / "c")
    assert meta["format"] == "ownlm" and meta["format_version"] == 1
    assert meta["model"] == cfg.to_dict() and meta["step"] == 17 and meta["val_loss"] == 3.5
    tok = load_tokenizer(tmp_path / "c")
    assert tok.fingerprint == Tokenizer.from_file(tokenizer_file).fingerprint == meta["tokenizer_fingerprint"]
    resumed = load_train_state(tmp_path / "c")
    assert resumed["step"] == 17 and torch.equal(resumed["torch_rng"], state["torch_rng"])
    opt.load_state_dict(resumed["optimizer"])


def test_optional_parts_absent(tmp_path):
    cfg = get_preset("debug")
    save_checkpoint(tmp_path / "c", Transformer(cfg), cfg)
    assert load_train_state(tmp_path / "c") is None
    with pytest.raises(CheckpointError, match="without a tokenizer"):
        load_tokenizer(tmp_path / "c")


def test_overwriting_replaces_the_whole_folder_and_leaves_no_debris(tmp_path):
    cfg = get_preset("debug")
    first, second = trained_a_little(cfg, seed=1), trained_a_little(cfg, seed=2)
    save_checkpoint(tmp_path / "c", first, cfg, train_state={"step": 1})
    save_checkpoint(tmp_path / "c", second, cfg)
    loaded, _ = load_model(tmp_path / "c")
    with torch.no_grad():
        assert torch.equal(loaded(TOKENS), second(TOKENS))
    assert load_train_state(tmp_path / "c") is None  # nothing left over from the first save
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_a_failed_save_keeps_the_old_checkpoint(tmp_path):
    cfg = get_preset("debug")
    model = trained_a_little(cfg)
    save_checkpoint(tmp_path / "c", model, cfg)
    with pytest.raises(Exception):
        save_checkpoint(tmp_path / "c", model, cfg, train_state={"f": lambda: 0})  # not picklable
    loaded, _ = load_model(tmp_path / "c")
    with torch.no_grad():
        assert torch.equal(loaded(TOKENS), model(TOKENS))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


class Compiled(torch.nn.Module):
    """Shaped like torch.compile's OptimizedModule (the model under `_orig_mod`, so its
    state_dict keys gain that prefix), without importing dynamo: that alone takes seconds."""

    def __init__(self, model):
        super().__init__()
        self._orig_mod = model


def test_compiled_and_ddp_wrappers_are_unwrapped(tmp_path):
    cfg = get_preset("debug")
    model = trained_a_little(cfg)
    compiled = Compiled(model)
    assert next(iter(compiled.state_dict())).startswith("_orig_mod.")
    save_checkpoint(tmp_path / "compiled", compiled, cfg)
    loaded, _ = load_model(tmp_path / "compiled")
    with torch.no_grad():
        assert torch.equal(loaded(TOKENS), model(TOKENS))

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        save_checkpoint(tmp_path / "ddp", ddp, cfg)
    finally:
        dist.destroy_process_group()
    loaded, _ = load_model(tmp_path / "ddp")
    with torch.no_grad():
        assert torch.equal(loaded(TOKENS), model(TOKENS))


def test_load_in_bfloat16_on_request(tmp_path):
    cfg = get_preset("debug")
    save_checkpoint(tmp_path / "c", trained_a_little(cfg), cfg)
    model, _ = load_model(tmp_path / "c", dtype=torch.bfloat16)
    assert model.tok_embeddings.weight.dtype == torch.bfloat16
    assert model.rope_cos.dtype == torch.float32  # angles stay exact
    assert model(TOKENS).dtype == torch.bfloat16


def test_saving_refuses_a_config_that_does_not_fit_the_weights(tmp_path):
    model = Transformer(get_preset("debug"))
    with pytest.raises(ValueError, match="do not match the config"):
        save_checkpoint(tmp_path / "c", model, get_preset("debug", n_layers=3))
    with pytest.raises(ValueError, match="JSON-serializable"):
        save_checkpoint(tmp_path / "c", model, model.cfg, metadata={"when": object()})
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "c", model, model.cfg, metadata={"model": "mine"})
    assert not (tmp_path / "c").exists()


def test_folders_that_are_not_checkpoints_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        load_model(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not an ownlm checkpoint: it has no config.json"):
        load_model(tmp_path / "empty")
    other = tmp_path / "hf"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="format"):
        load_model(other)
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "config.json").write_text(json.dumps({"format": "ownlm", "format_version": 99, "model": {}}))
    with pytest.raises(CheckpointError, match="format_version 99"):
        read_metadata(newer)
    cfg = get_preset("debug")
    save_checkpoint(tmp_path / "c", Transformer(cfg), cfg)
    (tmp_path / "c" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_model(tmp_path / "c")
