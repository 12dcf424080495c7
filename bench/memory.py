"""Benchmark: peak memory of one training step with and without activation checkpointing, and
per rank under FSDP2 on 1 and 2 workers.

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
FSDP2 (the strategy of `train.strategy: fsdp2`, built as the training loop builds it: on the
meta device, sharded, then each rank's shards materialised and initialised) on CPU workers in a
gloo group, the `124m` shape with a short sequence: the per-rank peak of parameters + gradients +
optimizer states (torch's FSDPMemTracker, MemTracker for FSDP modules, at the rank's peak; sharded
and gathered parameters and gradients both count), the largest rank's, for 1 and 2 workers.
fsdp2_rank_memory_ratio = 2 workers / 1 worker (goal <= 0.55: each rank holds half of the states,
plus the one block gathered at a time).

Prints a table and a final JSON line; writes bench/out/memory.json.

    python bench/memory.py [--preset tiny] [--layers 12] [--batch 8] [--seq 256] [--device cpu]
                           [--fsdp-preset 124m] [--fsdp-seq 32] [--fsdp-batch 2] [--no-fsdp]
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


STATE_PARTS = ("Sharded Param", "Unsharded Param", "Sharded Grad", "Unsharded Grad", "OptState")


def _fsdp2_rank(rank: int, world: int, cfg_dict: dict, batch: int, seq: int, out: str) -> None:
    """One rank: the training loop's FSDP2 model, a step untracked (AdamW's states exist), a step
    under FSDPMemTracker; writes this rank's peak by category."""
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker

    from model.config import ModelConfig
    from model.transformer import Transformer, lm_loss
    from pipeline.train import parallel

    with torch.device("meta"):
        model = Transformer(ModelConfig.from_dict(cfg_dict))
    model = parallel.parallelize(model, strategy="fsdp2", device=torch.device("cpu"), world=world, dtype=None)
    parallel.init_weights(model, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    # the same global batch split across the ranks
    rows = torch.randint(0, cfg_dict["vocab_size"], (batch * 2, seq + 1), generator=torch.Generator().manual_seed(0))
    rows = rows.chunk(world)[rank] if world > 1 else rows

    def step() -> None:
        lm_loss(model(rows[:, :-1]), rows[:, 1:]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    tracker = FSDPMemTracker(model, opt)
    tracker.track_inputs((rows,))
    with tracker:
        step()
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    parts = {str(k.value if hasattr(k, "value") else k): v for k, v in peak.items()}
    Path(out, f"rank{rank}.json").write_text(json.dumps(parts))


def measure_fsdp2(cfg, world: int, batch: int, seq: int) -> dict:
    """The largest rank's peak (MiB) of parameters + gradients + optimizer states, and its total."""
    import tempfile

    from pipeline.train.session import spawn_local

    with tempfile.TemporaryDirectory() as out:
        spawn_local(_fsdp2_rank, world, cfg.to_dict(), batch, seq, out)
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(world)]
    states = [sum(r.get(k, 0) for k in STATE_PARTS) for r in ranks]
    worst = max(range(world), key=lambda r: states[r])
    return {"world": world, "state_mib": states[worst] / MIB, "peak_mib": ranks[worst]["Total"] / MIB,
            **{f"{k.lower().replace(' ', '_')}_mib": ranks[worst].get(k, 0) / MIB for k in STATE_PARTS}}


def main() -> None:
    from model.config import count_params, get_preset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--fsdp-preset", default="124m")
    ap.add_argument("--fsdp-seq", type=int, default=32)
    ap.add_argument("--fsdp-batch", type=int, default=2, help="sequences per worker with 2 workers")
    ap.add_argument("--no-fsdp", action="store_true", help="skip the FSDP2 per-rank case")
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
    if not args.no_fsdp:
        fcfg = get_preset(args.fsdp_preset)
        fsdp = [measure_fsdp2(fcfg, world, args.fsdp_batch, args.fsdp_seq) for world in (1, 2)]
        print(f"\nFSDP2 on CPU (gloo), {args.fsdp_preset} ({count_params(fcfg) / 1e6:.1f}M params), global batch "
              f"{2 * args.fsdp_batch} x {args.fsdp_seq} tokens, the largest rank's peak by FSDPMemTracker (MiB)")
        fcols = ("state_mib", "sharded_param_mib", "unsharded_param_mib", "sharded_grad_mib", "unsharded_grad_mib",
                 "optstate_mib", "peak_mib")
        print(f"{'workers':<10}" + "".join(f"{c.removesuffix('_mib'):>17}" for c in fcols))
        for r in fsdp:
            print(f"{r['world']:<10}" + "".join(f"{r[c]:>17.1f}" for c in fcols))
        result.update({"fsdp2_preset": args.fsdp_preset, "fsdp2_seq": args.fsdp_seq,
                       "fsdp2_state_mib_1": round(fsdp[0]["state_mib"], 1),
                       "fsdp2_state_mib_2": round(fsdp[1]["state_mib"], 1),
                       "fsdp2_rank_memory_ratio": round(fsdp[1]["state_mib"] / fsdp[0]["state_mib"], 3)})
    if args.device == "cuda":
        result["cuda_ckpt_memory_ratio"] = round(ckpt["cuda_max_allocated_mib"] / plain["cuda_max_allocated_mib"], 3)
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
