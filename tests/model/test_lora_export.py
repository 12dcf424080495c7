"""Adapter checkpoints out of ownlm: the PEFT adapter beside the Hugging Face export of its base
loads with transformers + peft and gives the adapted logits; merged exports (Hugging Face, ownlm)
give them too."""
import pytest
import torch

from model import lora
from model.checkpoint import load_model, read_metadata, save_checkpoint
from model.config import get_preset
from model.hf import export_hf
from model.lora_export import PEFT_DIR, export_hf_with_adapter, merge_checkpoint
from model.transformer import Transformer


@pytest.fixture(scope="module")
def adapter_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("lora-export")
    torch.manual_seed(0)
    cfg = get_preset("debug", vocab_size=256, tie_embeddings=False)
    model = Transformer(cfg)
    save_checkpoint(d / "base", model, cfg)
    lora.apply_lora(model, lora.LoRASpec(rank=4, alpha=8.0, targets=("wq", "wk", "wv", "w2"), base=str(d / "base")))
    with torch.no_grad():  # adapters as training leaves them: B no longer zero
        for name, p in model.named_parameters():
            if name.endswith("lora_b"):
                p.normal_(0, 0.05)
    save_checkpoint(d / "adapter", model, cfg)
    return d


def ours(path, tokens):
    model, _ = load_model(path)
    with torch.no_grad():
        return model(tokens).float()


def test_the_peft_adapter_loads_with_transformers_and_peft(adapter_checkpoint, tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed: the PEFT export cannot be loaded")
    from transformers import AutoModelForCausalLM

    tokens = torch.randint(0, 256, (2, 10))
    out = export_hf_with_adapter(adapter_checkpoint / "adapter", tmp_path / "hf")
    hf = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(out), out / PEFT_DIR).eval()
    with torch.no_grad():
        theirs = hf(tokens).logits.float()
    torch.testing.assert_close(theirs, ours(adapter_checkpoint / "adapter", tokens), rtol=1e-4, atol=1e-4)


def test_merged_exports_equal_the_adapters(adapter_checkpoint, tmp_path):
    from transformers import AutoModelForCausalLM

    tokens = torch.randint(0, 256, (2, 10))
    expected = ours(adapter_checkpoint / "adapter", tokens)
    merged = merge_checkpoint(adapter_checkpoint / "adapter", tmp_path / "merged")
    assert "lora" not in read_metadata(merged)
    torch.testing.assert_close(ours(merged, tokens), expected, rtol=1e-5, atol=1e-5)
    out = export_hf(adapter_checkpoint / "adapter", tmp_path / "hf-merged", merge=True)
    with torch.no_grad():
        theirs = AutoModelForCausalLM.from_pretrained(out).eval()(tokens).logits.float()
    torch.testing.assert_close(theirs, expected, rtol=1e-4, atol=1e-4)
