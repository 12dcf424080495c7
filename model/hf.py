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

An import keeps the model exactly: vocabulary, shapes, tied or not, and the tokenizer file
as it is. ownlm's roles (end-of-text, padding, chat roles, mask) are mapped onto tokens the
tokenizer already has, as its tokenizer_config.json / special_tokens_map.json (or config.json's
token ids) name them, and recorded in the checkpoint ("tokenizer_roles"); the Hugging Face
tokenizer files themselves (tokenizer_config.json, chat template, generation_config.json) are
kept in the checkpoint's metadata ("hf_import") so that an export writes them back. Tokens a
command needs that the model lacks are added by that command, explicitly:
model.checkpoint.add_special_tokens.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from model import lora
from model.atomic import discard_dir, publish_dir, staging_dir
from model.checkpoint import ROLES_KEY, TOKENIZER, CheckpointError, load_model, load_tokenizer, read_metadata
from model.checkpoint import save_checkpoint
from model.config import ROPE_SCALING_KEYS, ModelConfig
from model.errors import InputError, MissingInput
from model.tokenizer import CHAT_ROLES, OWN_TOKENS, Tokenizer, check_roles

HF_WEIGHTS = "model.safetensors"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
"""model.tokenizer.chat_prompt as a Jinja template, for tokenizer.apply_chat_template."""
IMPORT_KEY = "hf_import"
"""Checkpoint metadata of an import: {"special_ids", "tokenizer_fingerprint", "files"}."""
KEPT_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
              "generation_config.json")
"""Hugging Face files an import keeps (their text, in the metadata) and an export writes back."""
_TOKEN_KEYS = {"eot": "eos_token", "pad": "pad_token", "bos": "bos_token", "mask": "mask_token"}
"""ownlm's role -> the tokenizer_config.json / special_tokens_map.json key that names its token."""
_ID_KEYS = {"eot": "eos_token_id", "pad": "pad_token_id", "bos": "bos_token_id"}

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

def hf_config(cfg: ModelConfig, tokenizer: Tokenizer | None = None, dtype: torch.dtype = torch.float32,
              special_ids: dict[str, Any] | None = None) -> dict:
    """LlamaConfig's config.json for a causal ownlm model. Token ids come from the tokenizer's
    roles; special_ids (an imported model's own bos/eos/pad_token_id) win where they are set."""
    ids = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if tokenizer is not None:  # documents are separated by end-of-text; ours have no begin token
        ids = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.role_id("eot"),
               "pad_token_id": tokenizer.role_id("pad")}
    ids.update({k: v for k, v in (special_ids or {}).items() if k in ids and v is not None})
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
        **ids,
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

def export_hf(checkpoint: str | Path, output: str | Path, dtype: torch.dtype | None = None,
              merge: bool = False) -> Path:
    """Write the ownlm checkpoint as a Hugging Face Llama folder at output (replaced if there).
    dtype: the weights' dtype in the export (None: as stored). An imported checkpoint gets its
    own tokenizer files back (verbatim while its tokenizer is the one imported).

    An adapter checkpoint (LoRA): with merge, the adapters folded into the weights; without, its
    base model (model.lora_export.export_hf_with_adapter adds the adapters in PEFT's layout)."""
    checkpoint, output = Path(checkpoint), Path(output)
    model, cfg = load_model(checkpoint, dtype=dtype)
    if lora.lora_spec(model) is not None and merge:
        lora.merge(model)
    if cfg.family != "causal":
        raise CheckpointError(
            f"{checkpoint} is a {cfg.family!r}-family model; a Hugging Face Llama is causal, so only the "
            "causal family exports (its logits would differ over the bidirectional part)")
    imported = read_metadata(checkpoint).get(IMPORT_KEY) or {}
    tokenizer = load_tokenizer(checkpoint) if (checkpoint / TOKENIZER).is_file() else None
    state = lora.base_state_dict(model)
    weight_dtype = state["tok_embeddings.weight"].dtype
    tmp = staging_dir(output)
    try:
        save_file(to_hf_state_dict(state, cfg), str(tmp / HF_WEIGHTS), metadata={"format": "pt"})
        _write_json(tmp / "config.json", hf_config(cfg, tokenizer, weight_dtype, imported.get("special_ids")))
        if tokenizer is not None:
            _write_hf_tokenizer(tmp, checkpoint / TOKENIZER, tokenizer, cfg, imported)
        _write_generation_config(tmp / "generation_config.json", tokenizer, imported)
        publish_dir(tmp, output)
    except BaseException:
        discard_dir(tmp)
        raise
    return output


def chat_template(roles: dict[str, str | None]) -> str | None:
    """model.tokenizer.chat_prompt's layout as a Jinja template in these role tokens (CHAT_TEMPLATE
    for ownlm's own); None when a chat role has no token."""
    if any(roles.get(r) is None for r in CHAT_ROLES):
        return None
    if all(roles[r] == OWN_TOKENS[r] for r in CHAT_ROLES):
        return CHAT_TEMPLATE
    q = {r: json.dumps(roles[r]) for r in CHAT_ROLES}  # a JSON string is a Jinja string literal
    return ("{% for message in messages %}"
            + "".join(f"{'{% if' if i == 0 else '{% elif'} message['role'] == '{r}' %}}{{{{ {q[r]} }}}}"
                      for i, r in enumerate(("system", "user", "assistant")))
            + "{% endif %}{{ message['content'] }}{{ " + q["end_of_turn"] + " }}{% endfor %}"
            + "{% if add_generation_prompt %}{{ " + q["assistant"] + " }}{% endif %}")


def _write_hf_tokenizer(folder: Path, tokenizer_file: Path, tok: Tokenizer, cfg: ModelConfig, imported: dict) -> None:
    shutil.copyfile(tokenizer_file, folder / "tokenizer.json")
    kept = {n: t for n, t in (imported.get("files") or {}).items() if n != "generation_config.json"}
    roles = tok.roles
    specials = {key: roles[role] for role, key in _TOKEN_KEYS.items() if roles[role] is not None}
    if kept and imported.get("tokenizer_fingerprint") == tok.fingerprint:
        for name, text in kept.items():  # the tokenizer as imported: its own files, byte for byte
            (folder / name).write_text(text)
        return
    if kept:  # imported, then grown (add_special_tokens): its files, with what the tokenizer now has
        config = json.loads(kept.get("tokenizer_config.json", "{}"))
        config.pop("added_tokens_decoder", None)  # tokenizer.json's added tokens are the current ones
        for name, text in kept.items():
            if name == "special_tokens_map.json":
                _write_json(folder / name, {**specials, **{k: v for k, v in json.loads(text).items() if v}})
            elif name != "tokenizer_config.json":
                (folder / name).write_text(text)
        config.update({k: v for k, v in specials.items() if not config.get(k)})
        has_template = config.get("chat_template") or {"chat_template.jinja", "chat_template.json"} & kept.keys()
        if not has_template and chat_template(roles):
            config["chat_template"] = chat_template(roles)
        _write_json(folder / "tokenizer_config.json", config)
        return
    _write_json(folder / "special_tokens_map.json", specials)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "bos_token": roles["bos"],
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": cfg.max_seq_len,
    }
    if chat_template(roles):
        config["chat_template"] = chat_template(roles)
    _write_json(folder / "tokenizer_config.json", config)


def _write_generation_config(path: Path, tok: Tokenizer | None, imported: dict) -> None:
    """The imported model's own generation_config.json while its tokenizer is unchanged; else
    ours (or its own, updated): stop at end-of-text and at the end of a chat turn."""
    kept = (imported.get("files") or {}).get("generation_config.json")
    if kept is not None and (tok is None or imported.get("tokenizer_fingerprint") == tok.fingerprint):
        path.write_text(kept)
        return
    base = json.loads(kept) if kept is not None else {}
    if tok is None:
        _write_json(path, base or {"_from_model_config": True})
        return
    eos = base.get("eos_token_id")
    stops = [] if eos is None else list(eos) if isinstance(eos, list) else [eos]
    stops += [i for i in (tok.role_id("eot"), tok.end_of_turn_id) if i is not None and i not in stops]
    base["eos_token_id"] = stops
    if base.get("pad_token_id") is None:
        base["pad_token_id"] = tok.role_id("pad")
    base.setdefault("bos_token_id", tok.bos_id)
    _write_json(path, base)


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


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise HFFormatError(f"{path} is not valid JSON: {e}") from e
    return obj if isinstance(obj, dict) else {}


def _token_text(value: Any) -> str | None:
    """A token as tokenizer_config.json writes it: a string, or an AddedToken dict {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def hf_token_roles(folder: str | Path, backend, hf: dict[str, Any] | None = None) -> dict[str, str | None]:
    """Which of the tokenizer's own tokens plays each of ownlm's roles (model.tokenizer.TOKEN_ROLES),
    None where it has none. In order: the tokens that tokenizer_config.json, then
    special_tokens_map.json name (eos_token, pad_token, bos_token, mask_token); the special token
    at config.json's, then generation_config.json's eos/pad/bos_token_id (the first of a list);
    ownlm's own token, when the tokenizer has it (the chat roles are only ever found this way).
    Nothing is added: backend (a tokenizers.Tokenizer) is only read."""
    folder = Path(folder)
    named = [_read_json(folder / n) for n in ("tokenizer_config.json", "special_tokens_map.json")]
    by_id = [hf if hf is not None else _read_json(folder / "config.json"),
             _read_json(folder / "generation_config.json")]
    special = {t.content for t in backend.get_added_tokens_decoder().values() if t.special}
    roles: dict[str, str | None] = {}
    for role, key in _TOKEN_KEYS.items():
        tokens = [t for t in (_token_text(f.get(key)) for f in named) if t and backend.token_to_id(t) is not None]
        if tokens:
            roles[role] = tokens[0]
    for role, key in _ID_KEYS.items():
        for source in by_id if role not in roles else ():
            i = source.get(key)
            i = i[0] if isinstance(i, list) and i else i
            token = backend.id_to_token(i) if isinstance(i, int) and not isinstance(i, bool) and i >= 0 else None
            if token in special:
                roles[role] = token
                break
    for role, own in OWN_TOKENS.items():
        if roles.get(role) is None and backend.token_to_id(own) is not None:
            roles[role] = own
    return check_roles(roles)


def import_hf(folder: str | Path, output: str | Path, dtype: torch.dtype | None = torch.float32) -> dict:
    """Read a local Hugging Face Llama folder into an ownlm checkpoint at output. dtype: the
    stored weights' dtype (float32 by default, what training wants; None keeps the source's).

    The model is kept exactly: vocab_size, shapes, tied or not; the tokenizer.json (when the
    folder has one) is copied as it is. ownlm's roles are mapped onto tokens it already has
    (hf_token_roles) and recorded in the checkpoint's "tokenizer_roles"; roles without a token
    are reported, and a command that needs them adds them explicitly
    (model.checkpoint.add_special_tokens). The Hugging Face tokenizer and generation files are
    kept in the metadata ("hf_import") for export_hf to write back.

    Returns {"config": ModelConfig, "tokenizer": bool (a tokenizer.json came along),
    "roles": {role: token | None} ({} without a tokenizer), "missing": [ownlm roles without a
    token], "notes": [str, ...] (what a user should know, e.g. padding sharing end-of-text)}.
    """
    folder, output = Path(folder), Path(output)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise MissingInput(f"{folder} has no config.json: not a Hugging Face model folder")
    hf = _read_json(config_file)
    cfg = config_from_hf(hf)
    state = from_hf_state_dict(read_hf_weights(folder), cfg)
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}

    record: dict[str, Any] = {"special_ids": {k: hf.get(k) for k in _ID_KEYS.values()}}
    metadata: dict[str, Any] = {"imported_from": str(folder.resolve())}
    tokenizer_path, roles, missing, notes = None, {}, [], []
    if (folder / "tokenizer.json").is_file():
        tokenizer_path = folder / "tokenizer.json"
        try:
            backend = Tokenizer.from_file(tokenizer_path, roles={}).backend
        except ValueError as e:
            raise HFFormatError(str(e)) from e
        n_ids = backend.get_vocab_size(with_added_tokens=True)
        if n_ids > cfg.vocab_size:
            raise HFFormatError(f"{tokenizer_path} has {n_ids} token ids but the model's embedding only "
                                f"{cfg.vocab_size} rows: not the tokenizer of this model")
        roles = hf_token_roles(folder, backend, hf)
        tok = Tokenizer(backend, roles)
        missing = tok.missing()
        if roles["mask"] is not None:
            cfg = ModelConfig.from_dict({**cfg.to_dict(), "mask_id": tok.mask_id}).validate()
        if roles["pad"] is not None and roles["pad"] == roles["eot"]:
            notes.append(f"padding and end-of-text are the same token ({roles['pad']}): training on packed "
                         "documents ignores padding targets, so it would not learn to end a text")
        if missing:
            notes.append(f"no token for {', '.join(missing)}: a command that needs them adds them with "
                         "model.checkpoint.add_special_tokens (it grows the embedding)")
        record["tokenizer_fingerprint"] = tok.fingerprint
        metadata[ROLES_KEY] = roles
    record["files"] = {n: (folder / n).read_text() for n in KEPT_FILES if (folder / n).is_file()}
    metadata[IMPORT_KEY] = record

    with torch.device("meta"):
        from model.transformer import Transformer

        model = Transformer(cfg)
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    save_checkpoint(output, model, cfg, tokenizer_path=tokenizer_path, metadata=metadata)
    return {"config": cfg, "tokenizer": tokenizer_path is not None, "roles": roles, "missing": missing,
            "notes": notes}
