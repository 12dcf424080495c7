"""`ownlm finetune`: check the base checkpoint and the data, prepare the example rows, and run
the fine-tuning loop (pipeline/finetune/loop.py) through the training launch (Ray Train)."""
from __future__ import annotations

from pathlib import Path

from model.checkpoint import LORA_KEY, ROLES_KEY, TOKENIZER, load_config, load_tokenizer, read_metadata
from model.errors import UsageError
from model.tokenizer import CHAT_ROLES
from pipeline.config import Config, TrainConfig
from pipeline.finetune.data import prepare, read_examples
from pipeline.finetune.loop import FinetuneJob, finetune_loop_per_worker
from pipeline.train.launch import TrainError, launch


def check_base(cfg: Config, base: Path) -> None:
    """Everything about the base that would stop a fine-tune, before Ray starts."""
    ft = cfg.finetune
    if ft.data is None:
        raise UsageError("nothing to fine-tune on: pass --data FILE.jsonl (finetune.data)")
    meta = read_metadata(base)
    mcfg = load_config(base)
    if mcfg.family != "causal":
        raise TrainError(f"{base} is a {mcfg.family!r} model: fine-tuning trains next-token answers and needs "
                         "a causal model")
    load_tokenizer(base).require(*CHAT_ROLES, purpose="fine-tuning (chat role tokens)")
    if ft.method == "lora" and LORA_KEY in meta:
        raise TrainError(f"{base} holds LoRA adapters: merge them first (`ownlm export {base} --merge --format "
                         "ownlm --output DIR`) and fine-tune DIR, or use finetune.method=full")
    if ft.method == "lora" and cfg.train.strategy == "fsdp2":
        raise TrainError("finetune.method=lora runs under train.strategy=ddp (LoRA keeps the frozen base whole "
                         "on every worker); set train.strategy=ddp")
    if ft.seq_len is not None and ft.seq_len > mcfg.max_seq_len:
        raise TrainError(f"finetune.seq_len={ft.seq_len} is longer than the model's max_seq_len "
                         f"{mcfg.max_seq_len}")


def check_data(cfg: Config, base: Path) -> None:
    """The data files exist and hold usable examples for this base's tokenizer (else one error)."""
    ft = cfg.finetune
    tok, seq_len = load_tokenizer(base), ft.seq_len or load_config(base).max_seq_len
    for path in (ft.data, ft.val):
        if path is not None:
            read_examples(path, tok, template=ft.template, loss_on=ft.loss_on, max_tokens=seq_len + 1)


def finetune_train_config(cfg: Config) -> TrainConfig:
    """The `train` section with the fine-tune's budget and optimizer in place of its own."""
    return TrainConfig.model_validate({**cfg.train.model_dump(), **cfg.finetune.train_overrides()})


def run_finetune(cfg: Config, base: Path, output_dir: Path, data_dir: Path, storage_dir: Path, run_name: str,
                 run_id: str | None = None, fresh: bool = False) -> dict:
    """Fine-tune the checkpoint at base on cfg.finetune.data; the kept checkpoint goes to output_dir
    (a full checkpoint, or for LoRA the adapters with a reference to base). Returns the metrics."""
    check_base(cfg, base)
    ft, base = cfg.finetune, Path(base).resolve()
    meta, mcfg, tok = read_metadata(base), load_config(base), load_tokenizer(base)
    seq_len = ft.seq_len or mcfg.max_seq_len
    data = prepare(ft.data, ft.val, tok, data_dir, template=ft.template, loss_on=ft.loss_on, seq_len=seq_len,
                   packing=ft.packing, val_fraction=ft.val_fraction, seed=ft.seed)
    print(f"   {data['train']['examples']} training examples in {data['train']['rows']} rows of {seq_len + 1} "
          f"tokens ({data['train']['target_tokens']:,} answer tokens), {data['val']['examples']} validation "
          f"examples ({data['val']['source']})", flush=True)
    for name, rejects in (("data", data["rejects"]), ("val", data["val_rejects"])):
        if rejects.total:
            print(f"   finetune.{name}: {rejects.summary()}", flush=True)
    tc = finetune_train_config(cfg)
    metadata = {"finetune": {"method": ft.method, "base": str(base), "data": str(ft.data)},
                **({ROLES_KEY: meta[ROLES_KEY]} if ROLES_KEY in meta else {})}
    job = FinetuneJob(train=tc.model_dump(), model=mcfg.to_dict(), tokens_dir=str(data_dir),
                      tokenizer_path=str(base / TOKENIZER),
                      tracking_uri=cfg.tracking_uri if cfg.tracking.enabled else None, run_id=run_id,
                      metadata=metadata, base=str(base), method=ft.method,
                      lora={"rank": ft.lora_rank, "alpha": ft.lora_alpha, "dropout": ft.lora_dropout,
                            "targets": list(ft.lora_targets)})
    metrics = launch(job, tc, output_dir, storage_dir, run_name, fresh=fresh, loop=finetune_loop_per_worker)
    metrics.update({"finetune/train_examples": data["train"]["examples"], "finetune/val_examples":
                    data["val"]["examples"], "finetune/rejected_lines": data["rejects"].total})
    return metrics
