"""Adapter checkpoints out of ownlm: merged into a plain checkpoint, or as a Hugging Face PEFT
adapter beside the Hugging Face export of their base (model/hf.py), so that
`peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(DIR), DIR / "adapter")`
gives the fine-tuned model.

PEFT's layout: adapter_config.json (peft_type LORA, r, lora_alpha, target_modules in Hugging
Face's projection names) and adapter_model.safetensors with, per adapted projection,
`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` (r, in) and `lora_B.weight`
(out, r). B's rows follow the weight's rows, so for q and k they take the same rotary
reordering as the weight (hf.interleaved_to_half); A is untouched.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from model import lora
from model.checkpoint import LORA_KEY, TOKENIZER, load_model, read_metadata, save_checkpoint
from model.hf import export_hf, interleaved_to_half

PEFT_DIR = "adapter"
_HF_PROJECTIONS = {"wq": "self_attn.q_proj", "wk": "self_attn.k_proj", "wv": "self_attn.v_proj",
                   "wo": "self_attn.o_proj", "w1": "mlp.gate_proj", "w2": "mlp.down_proj", "w3": "mlp.up_proj"}


def merge_checkpoint(checkpoint: str | Path, output: str | Path) -> Path:
    """An adapter checkpoint's adapters folded into its base, saved as a plain checkpoint at output."""
    checkpoint = Path(checkpoint)
    model, cfg = load_model(checkpoint)
    lora.merge(model)
    reserved = {"format", "format_version", "model", LORA_KEY}
    meta = {k: v for k, v in read_metadata(checkpoint).items() if k not in reserved}
    meta["merged_from"] = str(checkpoint.resolve())
    tokenizer = checkpoint / TOKENIZER
    return save_checkpoint(output, model, cfg, tokenizer_path=tokenizer if tokenizer.is_file() else None,
                           metadata=meta)


def peft_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapters of model under PEFT's names, in Hugging Face's rotary layout."""
    cfg, out = model.cfg, {}
    for name, module in model.named_modules():
        if not isinstance(module, lora.LoRALinear):
            continue
        _, i, _, proj = name.split(".")  # layers.{i}.attn|feed_forward.{proj}
        b = module.lora_b.detach()
        if proj == "wq":
            b = interleaved_to_half(b, cfg.n_heads)
        elif proj == "wk":
            b = interleaved_to_half(b, cfg.resolved_n_kv_heads)
        prefix = f"base_model.model.model.layers.{i}.{_HF_PROJECTIONS[proj]}"
        out[f"{prefix}.lora_A.weight"] = module.lora_a.detach().contiguous()
        out[f"{prefix}.lora_B.weight"] = b.contiguous()
    return out


def write_peft_adapter(model: torch.nn.Module, folder: str | Path, base_model_name: str) -> Path:
    """adapter_config.json + adapter_model.safetensors for the adapters of model."""
    spec = lora.lora_spec(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = peft_state_dict(model)
    save_file(state, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": spec.rank, "lora_alpha": spec.alpha,
              "lora_dropout": spec.dropout, "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
              "use_rslora": False, "init_lora_weights": True, "base_model_name_or_path": base_model_name,
              "target_modules": sorted(_HF_PROJECTIONS[t].split(".")[-1] for t in spec.targets)}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def export_hf_with_adapter(checkpoint: str | Path, output: str | Path, dtype: torch.dtype | None = None) -> Path:
    """An adapter checkpoint as a Hugging Face Llama of its base at output, and its adapters in
    PEFT's layout at output/adapter."""
    output = export_hf(checkpoint, output, dtype=dtype)
    model, _ = load_model(checkpoint, dtype=dtype)
    write_peft_adapter(model, output / PEFT_DIR, base_model_name=str(Path(output).resolve()))
    return output
