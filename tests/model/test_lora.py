"""LoRA (model/lora.py) and adapter checkpoints (model/checkpoint.py): a small trainable
fraction, the base untouched by training, merge equal to the adapters, and an adapter
checkpoint that loads through load_model onto its base."""
import pytest
import torch

from model import lora
from model.checkpoint import ADAPTER, WEIGHTS, load_model, save_checkpoint
from model.config import get_preset
from model.transformer import Transformer


@pytest.fixture
def adapted():
    torch.manual_seed(0)
    cfg = get_preset("debug", vocab_size=256)
    model = Transformer(cfg)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    lora.apply_lora(model, lora.LoRASpec(rank=4, alpha=8.0))
    return model, base


def train_a_little(model, steps=5):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    tokens = torch.randint(0, model.cfg.vocab_size, (4, 17))
    for _ in range(steps):
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return tokens


def test_only_the_adapters_train_and_the_base_stays_as_it_was(adapted):
    model, base = adapted
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(lora.is_adapter_key(n) for n in trainable)
    assert {n.split(".")[-2] for n in trainable} == {"wq", "wv"}  # the default targets
    assert lora.trainable_fraction(model) < 0.1
    train_a_little(model)
    after = lora.base_state_dict(model)
    assert after.keys() == base.keys()
    for k in base:
        torch.testing.assert_close(after[k], base[k], rtol=0, atol=0)
    assert any(v.abs().sum() > 0 for k, v in lora.adapter_state_dict(model).items() if k.endswith("lora_b"))


def test_a_fresh_adapter_changes_nothing_and_merge_equals_the_adapters(adapted):
    model, base = adapted
    plain = Transformer(model.cfg)
    plain.load_state_dict(base)
    tokens = torch.randint(0, 256, (2, 12))
    torch.testing.assert_close(model(tokens), plain(tokens))  # B starts at zero
    train_a_little(model)
    model.eval()
    with torch.no_grad():
        adapted_logits = model(tokens)
        lora.merge(model)
        merged_logits = model(tokens)
    assert not any(isinstance(m, lora.LoRALinear) for m in model.modules())
    assert set(model.state_dict()) == set(plain.state_dict())
    torch.testing.assert_close(merged_logits, adapted_logits, rtol=1e-5, atol=1e-5)


def test_all_targets_every_projection():
    model = Transformer(get_preset("debug", vocab_size=256))
    lora.apply_lora(model, lora.LoRASpec(targets=("all",)))
    wrapped = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, lora.LoRALinear)}
    assert wrapped == set(lora.LINEARS)
    with pytest.raises(ValueError, match="unknown LoRA target"):
        lora.LoRASpec(targets=("wz",))


def test_an_adapter_checkpoint_holds_the_adapters_and_loads_onto_its_base(adapted, tmp_path):
    model, base = adapted
    plain = Transformer(model.cfg)
    plain.load_state_dict(base)
    save_checkpoint(tmp_path / "base", plain, model.cfg)
    train_a_little(model)
    with pytest.raises(ValueError, match="needs its base"):
        save_checkpoint(tmp_path / "adapter", model, model.cfg)
    model.lora = lora.LoRASpec(rank=4, alpha=8.0, base=str(tmp_path / "base"))
    save_checkpoint(tmp_path / "adapter", model, model.cfg)
    assert (tmp_path / "adapter" / ADAPTER).is_file() and not (tmp_path / "adapter" / WEIGHTS).exists()
    assert (tmp_path / "adapter" / ADAPTER).stat().st_size < (tmp_path / "base" / WEIGHTS).stat().st_size / 5
    loaded, _ = load_model(tmp_path / "adapter")
    tokens = torch.randint(0, 256, (2, 12))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), model(tokens))
