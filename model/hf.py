"""Hugging Face Llama checkpoints in and out, without importing `transformers`.

export_hf writes a folder that `transformers.AutoModelForCausalLM.from_pretrained` and
`AutoTokenizer.from_pretrained` load (config.json, model.safetensors, tokenizer files,
generation_config.json); import_hf reads such a folder (a Llama someone already has) into
an ownlm checkpoint that the trainer can continue from.

The one real difference is the layout of rotary embeddings. Ours rotates interleaved channel
pairs (2j, 2j+1) of each head, as Meta's Llama code does; Hugging Face's LlamaAttention uses
rotate_half, which pairs channel j with j + head_dim/2. Attention scores only depend on
q . k, so permuting the output rows of wq and wk within each head (pair members to the two
halves) gives the same model in the other layout; this is the permutation of transformers'
own convert_llama_weights_to_hf.py.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from model.atomic import discard_dir, publish_dir, staging_dir
from model.checkpoint import TOKENIZER, CheckpointError, load_model, save_checkpoint
from model.config import ROPE_SCALING_KEYS, ModelConfig
from model.errors import InputError, MissingInput
from model.tokenizer import EOT, MASK, PAD, SPECIAL_TOKENS, Tokenizer

HF_WEIGHTS = "model.safetensors"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
"""model.tokenizer.chat_prompt as a Jinja template, for tokenizer.apply_chat_template."""

# ours -> Hugging Face, per layer ({i} is the layer index)
_LAYER_KEYS = {
    "attention_norm.weight": "input_layernorm.weight",
    "attn.wq.weight": "self_attn.q_proj.weight",
    "attn.wk.weight": "self_attn.k_proj.weight",
    "attn.wv.weight": "self_attn.v_proj.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
}
_TOP_KEYS = {"tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}


class HFFormatError(InputError):
    """A Hugging Face folder that is not a Llama checkpoint this module can read."""


# ---- the rotary layout ----

def interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of wq or wk (n_heads * hd, dim) from interleaved pairs to rotate_half's halves:
    within each head, row 2j goes to j and row 2j+1 to j + hd/2."""
    rows, cols = w.shape
    hd = rows // n_heads
    return w.view(n_heads, hd // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of interleaved_to_half."""
    rows, cols = w.shape
    hd = rows // n_heads
    return w.view(n_heads, 2, hd // 2, cols).transpose(1, 2).reshape(rows, cols)


# ---- weights ----

def to_hf_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict -> LlamaForCausalLM's names and rotary layout. A tied head is left out,
    as transformers' save_pretrained does (tie_word_embeddings re-ties it on load)."""
    out = {}
    for name, t in state.items():
        if name == "output.weight" and cfg.tie_embeddings:
            continue
        if name in _TOP_KEYS:
            out[_TOP_KEYS[name]] = t
            continue
        _, i, rest = name.split(".", 2)  # layers.{i}.{rest}
        if rest == "attn.wq.weight":
            t = interleaved_to_half(t, cfg.n_heads)
        elif rest == "attn.wk.weight":
            t = interleaved_to_half(t, cfg.resolved_n_kv_heads)
        out[f"model.layers.{i}.{_LAYER_KEYS[rest]}"] = t
    return {k: v.contiguous() for k, v in out.items()}


def from_hf_state_dict(hf: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """LlamaForCausalLM's state dict -> ours (the inverse of to_hf_state_dict). Rotary
    inverse-frequency buffers that old checkpoints carry are dropped; anything else unknown
    raises."""
    top = {v: k for k, v in _TOP_KEYS.items()}
    layer = {v: k for k, v in _LAYER_KEYS.items()}
    out, unknown = {}, []
    for name, t in hf.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue
        if name in top:
            out[top[name]] = t
            continue
        parts = name.split(".", 3)  # model.layers.{i}.{rest}
        if len(parts) != 4 or parts[:2] != ["model", "layers"] or parts[3] not in layer:
            unknown.append(name)
            continue
        i, rest = parts[2], layer[parts[3]]
        if rest == "attn.wq.weight":
            t = half_to_interleaved(t, cfg.n_heads)
        elif rest == "attn.wk.weight":
            t = half_to_interleaved(t, cfg.resolved_n_kv_heads)
        out[f"layers.{i}.{rest}"] = t
    if unknown:
        raise HFFormatError(f"weights that a Llama does not have: {unknown[:5]}")
    if cfg.tie_embeddings:
        out.pop("output.weight", None)
        out["output.weight"] = out["tok_embeddings.weight"]
    return out


# ---- config ----

def hf_config(cfg: ModelConfig, tokenizer: Tokenizer | None = None, dtype: torch.dtype = torch.float32) -> dict:
    """LlamaConfig's config.json for a causal ownlm model."""
    eot = tokenizer.eot_id if tokenizer else None
    rope = {"rope_type": "llama3", **cfg.rope_scaling} if cfg.rope_scaling else {"rope_type": "default"}
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.resolved_ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.resolved_n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,  # transformers 4.x
        "rope_parameters": {**rope, "rope_theta": cfg.rope_theta},  # transformers 5
        "rope_scaling": rope if cfg.rope_scaling else None,  # transformers 4.x
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": cfg.init_std,
        "bos_token_id": None,  # documents are separated by end-of-text; there is no begin token
        "eos_token_id": eot,
        "pad_token_id": tokenizer.pad_id if tokenizer else None,
        "torch_dtype": str(dtype).removeprefix("torch."),  # transformers 4.x
        "dtype": str(dtype).removeprefix("torch."),  # transformers 5
        "use_cache": True,
    }


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """The ModelConfig of a Hugging Face LlamaConfig dict; every feature ours lacks is refused
    by name, so that an import never silently computes something else."""
    problems = []
    if hf.get("model_type") != "llama":
        problems.append(f"model_type is {hf.get('model_type')!r}; only 'llama' checkpoints can be imported")
    if hf.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {hf.get('hidden_act')!r}: ours is SwiGLU (silu)")
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            problems.append(f"{flag} is true: ours has no biases")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    scaling = None
    if rope_type == "llama3":
        scaling = {k: rope.get(k) for k in ROPE_SCALING_KEYS}
        if None in scaling.values():
            problems.append(f"rope type 'llama3' lacks {[k for k, v in scaling.items() if v is None]}")
    elif rope_type != "default":
        problems.append(f"rope type {rope_type!r}: ours implements plain RoPE and Llama 3.1's "
                        "scaling only (rope_type 'default' or 'llama3')")
    dim, n_heads = hf.get("hidden_size"), hf.get("num_attention_heads")
    if dim and n_heads and hf.get("head_dim") not in (None, dim // n_heads):
        problems.append(f"head_dim {hf['head_dim']} != hidden_size / num_attention_heads ({dim // n_heads})")
    missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                           "num_attention_heads") if k not in hf]
    if missing:
        problems.append(f"config.json lacks {missing}")
    if problems:
        raise HFFormatError("cannot import this checkpoint:\n" + "\n".join(f"  - {p}" for p in problems))
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    return ModelConfig(
        vocab_size=hf["vocab_size"], dim=dim, n_layers=hf["num_hidden_layers"], n_heads=n_heads,
        n_kv_heads=hf.get("num_key_value_heads") or n_heads, ffn_dim=hf["intermediate_size"],
        max_seq_len=hf.get("max_position_embeddings", 2048), rope_theta=float(theta), rope_scaling=scaling,
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)), tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        init_std=float(hf.get("initializer_range", 0.02)),
    ).validate()


# ---- export ----

def export_hf(checkpoint: str | Path, output: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write the ownlm checkpoint as a Hugging Face Llama folder at output (replaced if there).
    dtype: the weights' dtype in the export (None: as stored)."""
    checkpoint, output = Path(checkpoint), Path(output)
    model, cfg = load_model(checkpoint, dtype=dtype)
    if cfg.family != "causal":
        raise CheckpointError(
            f"{checkpoint} is a {cfg.family!r}-family model; a Hugging Face Llama is causal, so only the "
            "causal family exports (its logits would differ over the bidirectional part)")
    tokenizer = Tokenizer.from_file(checkpoint / TOKENIZER) if (checkpoint / TOKENIZER).is_file() else None
    state = {k: v for k, v in model.state_dict().items()}
    weight_dtype = state["tok_embeddings.weight"].dtype
    tmp = staging_dir(output)
    try:
        save_file(to_hf_state_dict(state, cfg), str(tmp / HF_WEIGHTS), metadata={"format": "pt"})
        _write_json(tmp / "config.json", hf_config(cfg, tokenizer, weight_dtype))
        if tokenizer is not None:
            _write_hf_tokenizer(tmp, checkpoint / TOKENIZER, tokenizer, cfg)
        _write_json(tmp / "generation_config.json", _generation_config(tokenizer))
        publish_dir(tmp, output)
    except BaseException:
        discard_dir(tmp)
        raise
    return output


def _write_hf_tokenizer(folder: Path, tokenizer_file: Path, tok: Tokenizer, cfg: ModelConfig) -> None:
    shutil.copyfile(tokenizer_file, folder / "tokenizer.json")
    specials = {"eos_token": EOT, "pad_token": PAD}
    if tok.mask_id is not None:
        specials["mask_token"] = MASK
    _write_json(folder / "special_tokens_map.json", specials)
    _write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "bos_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": cfg.max_seq_len,
        "chat_template": CHAT_TEMPLATE,
    })


def _generation_config(tok: Tokenizer | None) -> dict:
    if tok is None:
        return {"_from_model_config": True}
    stops = [tok.eot_id] + ([tok.end_of_turn_id] if tok.end_of_turn_id is not None else [])
    return {"eos_token_id": stops, "pad_token_id": tok.pad_id, "bos_token_id": None}


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


# ---- import ----

def read_hf_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a Hugging Face folder: model.safetensors, a sharded
    model.safetensors.index.json, or a pytorch_model.bin (loaded with weights_only=True)."""
    folder = Path(folder)
    single, index, pickled = folder / HF_WEIGHTS, folder / "model.safetensors.index.json", folder / "pytorch_model.bin"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(folder / shard)))
        return state
    if pickled.is_file():
        return torch.load(pickled, map_location="cpu", weights_only=True)
    raise HFFormatError(f"{folder} has no {HF_WEIGHTS}, model.safetensors.index.json or pytorch_model.bin")


def import_hf(folder: str | Path, output: str | Path, dtype: torch.dtype | None = torch.float32) -> dict:
    """Read a local Hugging Face Llama folder into an ownlm checkpoint at output. dtype: the
    stored weights' dtype (float32 by default, what training wants; None keeps the source's).

    The tokenizer comes along when the folder has a tokenizer.json. Our special tokens that it
    lacks (end-of-text, padding, chat roles, mask) are added to it, and the embedding (and an
    untied head) grow to cover their ids, new rows set to the mean of the old ones (a neutral
    start that fine-tuning moves). Returns what was done: {"config", "added_tokens", "tokenizer"}.
    """
    folder, output = Path(folder), Path(output)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise MissingInput(f"{folder} has no config.json: not a Hugging Face model folder")
    hf = json.loads(config_file.read_text())
    cfg = config_from_hf(hf)
    state = from_hf_state_dict(read_hf_weights(folder), cfg)
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}

    tokenizer_path, added = None, []
    tmp_tok = output.parent / f".{output.name}.tokenizer.json"
    if (folder / "tokenizer.json").is_file():
        import tokenizers

        backend = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        added = [t for t in SPECIAL_TOKENS if backend.token_to_id(t) is None]
        if added:
            backend.add_special_tokens(added)
        vocab = backend.get_vocab_size(with_added_tokens=True)
        if vocab > cfg.vocab_size:
            state = _grow_vocab(state, cfg, vocab)
            cfg = ModelConfig.from_dict({**cfg.to_dict(), "vocab_size": vocab}).validate()
        output.parent.mkdir(parents=True, exist_ok=True)
        backend.save(str(tmp_tok))
        tokenizer_path = tmp_tok
    cfg = ModelConfig.from_dict({**cfg.to_dict(), "mask_id": _mask_id(tokenizer_path)}).validate()

    with torch.device("meta"):
        from model.transformer import Transformer

        model = Transformer(cfg)
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    try:
        save_checkpoint(output, model, cfg, tokenizer_path=tokenizer_path,
                        metadata={"imported_from": str(folder.resolve()), "added_tokens": added})
    finally:
        tmp_tok.unlink(missing_ok=True)
    return {"config": cfg, "added_tokens": added, "tokenizer": tokenizer_path is not None}


def _mask_id(tokenizer_path: Path | None) -> int | None:
    if tokenizer_path is None:
        return None
    import tokenizers

    return tokenizers.Tokenizer.from_file(str(tokenizer_path)).token_to_id(MASK)


def _grow_vocab(state: dict[str, torch.Tensor], cfg: ModelConfig, vocab: int) -> dict[str, torch.Tensor]:
    """Pad the embedding (and an untied head) to vocab rows with the mean of the existing rows."""
    out = dict(state)
    for key in ("tok_embeddings.weight",) + (() if cfg.tie_embeddings else ("output.weight",)):
        w = state[key]
        extra = w.float().mean(0, keepdim=True).to(w.dtype).expand(vocab - w.shape[0], -1)
        out[key] = torch.cat([w, extra])
    if cfg.tie_embeddings:
        out["output.weight"] = out["tok_embeddings.weight"]
    return out

