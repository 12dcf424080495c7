"""Benchmark: our training step on a GPU next to the plain-PyTorch reference, same shape, same run.

torch alone (no Ray, no MLflow): the `124m` preset (GPT-2 small's shape with Llama blocks:
vocab 32768, dim 768, 12 layers, 12 heads, ffn 2048, untied head, which is the model of
../shared/bench/ref_gpt.py), bf16 autocast, torch.compile, forward + backward + fused AdamW, on
random tokens. Reports tokens/s and MFU against --peak-tflops (989: an H100's dense bf16) with the
reference's own FLOP count (model.config.flops_per_token equals it; a test pins that), then runs
the reference (`run()` of ../shared/bench/ref_gpt.py) with the same shape in the same process.
ours_vs_ref = our tokens/s / the reference's, per variant (goal >= 1 compiled).

The `fsdp2` variant is the training loop's FSDP2 path (`train.strategy: fsdp2`): the model built
on the meta device, `fully_shard`ed per block and at the root, each rank's shards materialised
and initialised (pipeline.train.parallel), bf16 by FSDP2's MixedPrecisionPolicy (fp32 reduce),
eager. Alone it runs as one rank in a process group of its own (NCCL); under
`torchrun --nproc-per-node N bench/gpu_train.py --variants fsdp2` every GPU is a rank, --batch
is per rank and tokens/s is global (rank 0 prints). It has no reference counterpart.

The reference is CUDA-only. On a CPU (`--device cpu`, with a small preset) the script runs our
step the same way and reports our numbers alone: that checks the script, not the speed.
Prints a table and a final JSON line; writes bench/out/gpu_train.json.

    python bench/gpu_train.py                                   # a GPU machine: 124m, B=32, T=1024
    python bench/gpu_train.py --variants eager,compiled,fsdp2                 # + the FSDP2 path
    python bench/gpu_train.py --device cpu --preset debug --batch 4 --seq 64 --steps 3 --warmup 1
"""
from __future__ import annotations

import sys
from pathlib import Path

# Keep this folder off the import path: bench/tokenize.py would shadow the standard library's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import argparse
import contextlib
import importlib.util
import json
import os
import time

import torch

REF = ROOT.parent / "shared" / "bench" / "ref_gpt.py"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_ours(cfg, compile_: bool, B: int, T: int, steps: int, warm: int, device: str, peak: float) -> dict:
    """Our Transformer, lm_loss and AdamW, timed exactly as ref_gpt.run times the reference."""
    from model.config import count_params, flops_per_token
    from model.transformer import Transformer, lm_loss

    torch.manual_seed(0)
    model = Transformer(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=device == "cuda")
    step = torch.compile(model) if compile_ else model
    x = torch.randint(0, cfg.vocab_size, (B, T + 1), device=device)
    autocast = torch.autocast(device, torch.bfloat16) if device in ("cuda", "cpu") else contextlib.nullcontext()

    def one():
        with autocast:
            loss = lm_loss(step(x[:, :-1]), x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    dt, loss = timed_steps(one, steps, warm, device)
    tok_s = B * T / dt
    out = dict(variant="compiled" if compile_ else "eager", params_M=round(count_params(cfg, False) / 1e6, 1),
               tokens_per_s=round(tok_s), mfu=round(tok_s * flops_per_token(cfg, T) / peak, 3),
               step_ms=round(dt * 1e3, 1), loss=round(loss.item(), 3))
    if device == "cuda":
        out["max_mem_GB"] = round(torch.cuda.max_memory_allocated() / 1e9, 1)
        torch.cuda.reset_peak_memory_stats()
    return out


def timed_steps(one, steps: int, warm: int, device: str):
    """Seconds per call of the training step `one` after `warm` untimed calls, and its last loss."""
    for _ in range(warm):
        one()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        loss = one()
    sync(device)
    return (time.perf_counter() - t) / steps, loss


def run_fsdp2(cfg, B: int, T: int, steps: int, warm: int, device: str, peak: float) -> dict:
    """The training loop's FSDP2 model and step (no autocast: the MixedPrecisionPolicy casts), timed
    as run_ours times ours; on every rank of the process group (one of its own when none exists)."""
    import socket

    import torch.distributed as dist

    from model.config import count_params, flops_per_token
    from model.transformer import Transformer, lm_loss
    from pipeline.train import parallel

    started = not dist.is_initialized()
    if started:
        backend = "nccl" if device == "cuda" else "gloo"
        if "RANK" in os.environ:  # torchrun
            dist.init_process_group(backend)
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    rank, world = dist.get_rank(), dist.get_world_size()
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if device == "cuda" else torch.device("cpu")
    if device == "cuda":
        torch.cuda.set_device(dev)
    with torch.device("meta"):
        model = Transformer(cfg)
    model = parallel.parallelize(model, strategy="fsdp2", device=dev, world=world,
                                 dtype=parallel.compute_dtype("auto", dev))
    parallel.init_weights(model, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    x = torch.randint(0, cfg.vocab_size, (B, T + 1), device=dev)

    def one():
        loss = lm_loss(model(x[:, :-1]), x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    dt, loss = timed_steps(one, steps, warm, device)
    tok_s = world * B * T / dt
    out = dict(variant="fsdp2", params_M=round(count_params(cfg, False) / 1e6, 1), tokens_per_s=round(tok_s),
               mfu=round(tok_s * flops_per_token(cfg, T) / (peak * world), 3), step_ms=round(dt * 1e3, 1),
               loss=round(loss.item(), 3), world=world, rank=rank)
    if device == "cuda":
        out["max_mem_GB"] = round(torch.cuda.max_memory_allocated() / 1e9, 1)
        torch.cuda.reset_peak_memory_stats()
    if started:
        dist.destroy_process_group()
    return out


def load_reference():
    if not REF.is_file():
        raise FileNotFoundError(f"the reference benchmark is not at {REF}")
    spec = importlib.util.spec_from_file_location("ref_gpt", REF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    from model.config import get_preset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="124m")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--variants", default="eager,compiled", help="comma list of eager, compiled, fsdp2")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="the device's dense bf16 peak (H100: 989)")
    ap.add_argument("--no-ref", action="store_true", help="skip the reference (it always is on a CPU)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --device cpu and a small preset to check the script")

    cfg = get_preset(args.preset, max_seq_len=max(args.seq, get_preset(args.preset).max_seq_len))
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    peak = args.peak_tflops * 1e12
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({os.cpu_count()} cores)"
    print(f"{args.preset}: dim {cfg.dim}, {cfg.n_layers} layers, {cfg.n_heads} heads, ffn {cfg.resolved_ffn_dim}, "
          f"vocab {cfg.vocab_size}; batch {args.batch} x {args.seq}; bf16 autocast; {device_name}; torch {torch.__version__}",
          flush=True)
    rows = []
    unknown = sorted(set(variants) - {"eager", "compiled", "fsdp2"})
    if unknown:
        raise SystemExit(f"unknown --variants {unknown}: choose from eager, compiled, fsdp2")
    for v in variants:
        if v == "fsdp2":
            r = run_fsdp2(cfg, args.batch, args.seq, args.steps, args.warmup, args.device, peak)
            if r.pop("rank"):  # under torchrun, rank 0 speaks for all
                return
        else:
            r = run_ours(cfg, v == "compiled", args.batch, args.seq, args.steps, args.warmup, args.device, peak)
        rows.append(("ours", r))
        print(json.dumps({"impl": "ours", **rows[-1][1]}), flush=True)
    ref_note = None
    if args.device == "cuda" and not args.no_ref:
        ref = load_reference()
        for v in (v for v in variants if v != "fsdp2"):  # the reference has no FSDP2 path
            r = ref.run(v == "compiled", V=cfg.vocab_size, d=cfg.dim, L=cfg.n_layers, h=cfg.n_heads,
                        ffn=cfg.resolved_ffn_dim, T=args.seq, B=args.batch, steps=args.steps, warm=args.warmup,
                        peak=peak)
            r["mfu"] = r.pop(next(k for k in r if k.startswith("mfu")))
            rows.append(("ref", r))
            print(json.dumps({"impl": "ref", **r}), flush=True)
    else:
        ref_note = "reference not run: it needs CUDA" if args.device != "cuda" else "reference skipped (--no-ref)"

    print(f"\n{'impl':<6}{'variant':<10}{'params_M':>9}{'tokens/s':>12}{'MFU':>7}{'step_ms':>10}{'loss':>8}")
    for impl, r in rows:
        print(f"{impl:<6}{r['variant']:<10}{r['params_M']:>9}{r['tokens_per_s']:>12,}{r['mfu']:>7}"
              f"{r['step_ms']:>10}{r['loss']:>8}")
    if ref_note:
        print(f"({ref_note})")
    result = {"bench": "gpu_train", "preset": args.preset, "batch": args.batch, "seq": args.seq,
              "device": device_name, "torch": torch.__version__, "peak_tflops": args.peak_tflops}
    for impl, r in rows:
        result[f"{impl}_{r['variant']}_tokens_per_s"] = r["tokens_per_s"]
        result[f"{impl}_{r['variant']}_mfu"] = r["mfu"]
    for v in ("eager", "compiled"):
        if f"ref_{v}_tokens_per_s" in result and f"ours_{v}_tokens_per_s" in result:
            result[f"ours_vs_ref_{v}"] = round(result[f"ours_{v}_tokens_per_s"] / result[f"ref_{v}_tokens_per_s"], 3)
    if ref_note:
        result["note"] = ref_note
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "gpu_train.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
