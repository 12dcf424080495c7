"""Benchmark: peak memory of one training step with and without activation checkpointing.

A 12-layer model (the `tiny` preset's width with n_layers=12 by default), the same batch, a
full step: forward, cross-entropy, backward, AdamW. ckpt_memory_ratio = peak with per-block
activation checkpointing / peak without (goal <= 0.5).

How memory is measured on a CPU: torch's MemTracker (torch.distributed._tools.mem_tracker, a
TorchDispatchMode) sees every tensor storage the step allocates and frees, by device, and
sorts it into parameters, gradients, optimizer states, activations and temporaries; its peak is
the most bytes live at once. That counts exactly the tensors torch holds, not allocator slack or
the Python heap, so it is the number checkpointing changes, free of the noise in the process's
RSS (which never shrinks). One step runs untracked first, so AdamW's states exist (as in any
step after the first) and count at the peak. On a GPU, torch.cuda.max_memory_allocated is
reported beside it.
Prints a table and a final JSON line; writes bench/out/memory.json.

    python bench/memory.py [--preset tiny] [--layers 12] [--batch 8] [--seq 256] [--device cpu]
"""
from __future__ import annotations

import sys
from pathlib import Path

# Keep this folder off the import path: bench/tokenize.py would shadow the standard library's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import argparse
import json
import os
import time

import torch

MIB = 2 ** 20


def measure(cfg, checkpointing: bool, batch: torch.Tensor, device: str) -> dict:
    from torch.distributed._tools.mem_tracker import MemTracker

    from model.transformer import Transformer, lm_loss

    torch.manual_seed(0)
    model = Transformer(cfg, activation_checkpointing=checkpointing).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> float:
        loss = lm_loss(model(batch[:, :-1]), batch[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    first_loss = step()  # creates the optimizer states, as every later step has them
    tracker = MemTracker()
    tracker.track_external(model, opt)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tracker:
        step()
    t = time.perf_counter()
    step()  # timed apart: the tracker's dispatch mode slows the step it watches
    seconds = time.perf_counter() - t
    peak = tracker.get_tracker_snapshot("peak")[torch.device(device) if device == "cpu" else torch.device(device, 0)]
    parts = {str(k.value if hasattr(k, "value") else k): v for k, v in peak.items()}
    out = {"checkpointing": checkpointing, "peak_mib": parts["Total"] / MIB, "first_loss": first_loss,
           "step_s": seconds, **{f"{k.lower()}_mib": v / MIB for k, v in parts.items() if k != "Total"}}
    if device == "cuda":
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / MIB
    return out


def main() -> None:
    from model.config import count_params, get_preset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    cfg = get_preset(args.preset, n_layers=args.layers, max_seq_len=max(args.seq, get_preset(args.preset).max_seq_len))
    batch = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1),
                          generator=torch.Generator().manual_seed(0)).to(args.device)
    plain, ckpt = (measure(cfg, c, batch, args.device) for c in (False, True))
    assert abs(plain["first_loss"] - ckpt["first_loss"]) < 1e-4, "checkpointing must not change the loss"

    print(f"{args.preset} x {args.layers} layers ({count_params(cfg) / 1e6:.1f}M params), batch {args.batch} x "
          f"{args.seq} tokens, fwd+bwd+AdamW, {args.device}, peak by torch MemTracker (MiB)")
    cols = ("peak_mib", "activation_mib", "temp_mib", "parameter_mib", "gradient_mib", "optstate_mib", "step_s")
    print(f"{'variant':<22}" + "".join(f"{c.removesuffix('_mib'):>12}" for c in cols))
    for name, r in (("plain", plain), ("activation ckpt", ckpt)):
        print(f"{name:<22}" + "".join(f"{r.get(c, 0):>12.1f}" if c != "step_s" else f"{r[c]:>12.2f}" for c in cols))
    result = {
        "bench": "memory", "preset": args.preset, "layers": args.layers, "batch": args.batch, "seq": args.seq,
        "device": args.device, "torch": torch.__version__, "cpus": os.cpu_count(),
        "peak_mib_plain": round(plain["peak_mib"], 1), "peak_mib_ckpt": round(ckpt["peak_mib"], 1),
        "activation_mib_plain": round(plain["activation_mib"], 1),
        "activation_mib_ckpt": round(ckpt["activation_mib"], 1),
        "step_s_plain": round(plain["step_s"], 2), "step_s_ckpt": round(ckpt["step_s"], 2),
        "ckpt_memory_ratio": round(ckpt["peak_mib"] / plain["peak_mib"], 3),
    }
    if args.device == "cuda":
        result["cuda_ckpt_memory_ratio"] = round(ckpt["cuda_max_allocated_mib"] / plain["cuda_max_allocated_mib"], 3)
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
