"""Benchmark: LoRA against full fine-tuning on the same model, data and steps, in one run.

Two parts, each LoRA beside full fine-tuning measured in the same process:

1. One training step at a model shape (default `124m`, a short sequence on a CPU): trainable
   parameters, the memory a step adds to the built model (forward, masked loss, backward,
   AdamW: peak RSS of a fresh process, since torch's MemTracker, bench/memory.py's method, cannot
   watch frozen parameters), and the step time. LoRA's saving is the frozen base's gradients
   and optimizer states.
2. Task accuracy: the support-ticket task of the tests (tests/pipeline/finetune_task.py) on the
   tests' base (tests/pipeline/finetune_base.py: a `debug` model pretrained 400 steps on
   structured text), fine-tuned fully, with LoRA on every linear layer (what the tests run) and
   with LoRA on q and v (the default), for the same steps by the fine-tuning loop
   (pipeline/finetune/loop.py, one in-process worker), scored by the task metric
   (evaluation/task_metric.py). lora_acc_gap is full minus LoRA on every linear.

JSON: lora_memory_ratio (LoRA peak / full peak; goal <= 0.6 at 124m), lora_param_fraction,
lora_acc_gap (full minus LoRA accuracy). Writes bench/out/finetune.json.

    python bench/finetune.py [--preset 124m] [--batch 4] [--seq 64] [--steps 100]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import argparse
import json
import os
import tempfile
import time

import torch

MIB = 2 ** 20


def step_memory(cfg, method: str, batch: torch.Tensor) -> dict:
    """Run in a fresh process (main --one): the resident memory a training step adds on top of the
    built model. torch's MemTracker cannot watch a model with frozen parameters (it hooks every
    parameter's gradient), so this reads the process's peak RSS: the peak after two steps minus
    the RSS before the first, the model (and, for LoRA, its frozen base) already in memory."""
    import resource

    from model import lora
    from model.objectives import sft_terms
    from model.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(cfg).train()
    if method == "lora":
        lora.apply_lora(model, lora.LoRASpec())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    mask, segments = torch.ones_like(batch), torch.ones_like(batch)

    def step() -> None:
        total, count = sft_terms(model, batch, mask, segments)
        (total / count).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    before = _rss_bytes()
    step()
    t = time.perf_counter()
    step()
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"trainable": sum(p.numel() for p in params), "total": sum(p.numel() for p in model.parameters()),
            "peak_mib": (peak - before) / MIB, "step_s": seconds}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def step_memory_in_subprocess(args, method: str) -> dict:
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--one", method, "--preset", args.preset, "--batch",
                          str(args.batch), "--seq", str(args.seq)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def task_accuracy(steps: int) -> dict:
    from evaluation.task_metric import evaluate_task_file
    from model.checkpoint import TOKENIZER, load_config, load_model, load_tokenizer
    from pipeline.config import load_config as load_pipeline_config
    from pipeline.finetune.data import prepare
    from pipeline.finetune.launch import finetune_train_config
    from pipeline.finetune.loop import FinetuneJob, FinetuneTrainer
    from pipeline.train.session import LocalSession
    from tests.pipeline.finetune_base import pretrain_base
    from tests.pipeline.finetune_task import TEMPLATE, write_task

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        base = pretrain_base(d / "pre").resolve()  # the tests' base: structured text, 400 steps
        base_sets = ["model.preset=debug", "tokenize.seq_len=64", "tracking.enabled=false", "train.num_workers=1"]
        train, test = write_task(d / "task")
        tok = load_tokenizer(base)
        model, _ = load_model(base)
        out["base"] = evaluate_task_file(model, tok, test, template=TEMPLATE)["metrics"]["task/tickets_test/acc"]
        prepare(train, None, tok, d / "data", template=TEMPLATE, loss_on="all", seq_len=64, packing=True,
                val_fraction=0.1, seed=0)
        settings = (("full", "1e-2", "[wq,wv]"), ("lora", "2e-2", "[all]"), ("lora_qv", "2e-2", "[wq,wv]"))
        for name, lr, targets in settings:
            method = name.removesuffix("_qv")
            cfg = load_pipeline_config(None, base_sets + [
                f"finetune.method={method}", f"finetune.lr={lr}", f"finetune.max_steps={steps}",
                f"finetune.lora_targets={targets}", "finetune.eval_every=1000", "finetune.checkpoint_every=1000"],
                root=str(d))
            ft = cfg.finetune
            job = FinetuneJob(train=finetune_train_config(cfg).model_dump(), model=load_config(base).to_dict(),
                              tokens_dir=str(d / "data"), tokenizer_path=str(base / TOKENIZER), base=str(base),
                              method=method, lora={"rank": ft.lora_rank, "alpha": ft.lora_alpha, "dropout": 0.0,
                                                   "targets": list(ft.lora_targets)})
            runs = LocalSession(d / f"ft-{name}")
            t = time.perf_counter()
            FinetuneTrainer(job, runs).fit()
            out[f"{name}_train_s"] = time.perf_counter() - t
            tuned, _ = load_model(runs.checkpoints()[-1])
            out[name] = evaluate_task_file(tuned, tok, test, template=TEMPLATE)["metrics"]["task/tickets_test/acc"]
    return out


def main() -> None:
    from model.config import get_preset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="124m")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100, help="fine-tuning steps of the accuracy part")
    ap.add_argument("--one", choices=["full", "lora"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))

    cfg = get_preset(args.preset)
    if args.one:  # the child process of step_memory_in_subprocess
        batch = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1),
                              generator=torch.Generator().manual_seed(0))
        print(json.dumps(step_memory(cfg, args.one, batch)))
        return
    full, lora = (step_memory_in_subprocess(args, m) for m in ("full", "lora"))
    acc = task_accuracy(args.steps)

    print(f"{args.preset} ({full['total'] / 1e6:.1f}M params), batch {args.batch} x {args.seq} tokens, two steps "
          f"(fwd + masked loss + bwd + AdamW), cpu, peak RSS above the built model (MiB)")
    cols = ("trainable", "peak_mib", "step_s")
    print(f"{'method':<8}" + "".join(f"{c.removesuffix('_mib'):>14}" for c in cols))
    for name, r in (("full", full), ("lora", lora)):
        print(f"{name:<8}" + "".join(f"{r.get(c, 0):>14,.0f}" if c == "trainable" else f"{r.get(c, 0):>14.2f}"
                                     for c in cols))
    print(f"task accuracy (debug model, {args.steps} steps, 4 labels, chance 0.25): base {acc['base']:.3f}, "
          f"full {acc['full']:.3f}, lora (all linears) {acc['lora']:.3f}, lora (q, v) {acc['lora_qv']:.3f}")
    result = {"bench": "finetune", "preset": args.preset, "batch": args.batch, "seq": args.seq, "device": "cpu",
              "torch": torch.__version__, "cpus": os.cpu_count(),
              "trainable_full": full["trainable"], "trainable_lora": lora["trainable"],
              "peak_mib_full": round(full["peak_mib"], 1), "peak_mib_lora": round(lora["peak_mib"], 1),
              "step_s_full": round(full["step_s"], 3), "step_s_lora": round(lora["step_s"], 3),
              "lora_memory_ratio": round(lora["peak_mib"] / full["peak_mib"], 3),
              "lora_param_fraction": round(lora["trainable"] / lora["total"], 5),
              "acc_base": acc["base"], "acc_full": acc["full"], "acc_lora": acc["lora"], "acc_lora_qv": acc["lora_qv"],
              "lora_acc_gap": round(acc["full"] - acc["lora"], 3), "steps": args.steps}
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "finetune.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
