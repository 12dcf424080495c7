"""Benchmark: decoding tokens/s with and without the KV cache, and for a batch of prompts.

On the `tiny` preset (random weights: speed does not depend on what was learned), greedy:
  - no_cache: every new token recomputes the whole sequence (model(context) each step);
  - kv_cache: prefill once, then one token per step over the cache (model.generate);
  - batch: `generate_batch` over --batch prompts of different lengths (left-padded, one cache);
kv_speedup = kv_cache tokens/s / no_cache tokens/s at --new-tokens new tokens (goal >= 5 at 256).
The cached and recomputed tokens are checked to be identical. tiny's window (256) is raised to
--prompt-len + --new-tokens; that only lengthens the rotary tables.
Prints a table and a final JSON line; writes bench/out/generate.json.

    python bench/generate.py [--preset tiny] [--new-tokens 256] [--prompt-len 16] [--batch 8] [--repeats 3]
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
import platform
import time

import torch


def timed(fn, repeats: int) -> tuple[float, object]:
    """Best wall time of repeats runs (the machine is shared: the best run is the least disturbed)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    from model.config import get_preset
    from model.generate import generate, generate_batch
    from model.sampling import SamplingParams
    from model.transformer import Transformer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = get_preset(args.preset, max_seq_len=max(get_preset(args.preset).max_seq_len,
                                                  args.prompt_len + args.new_tokens))
    model = Transformer(cfg).eval()
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, cfg.vocab_size, (args.prompt_len,), generator=g).tolist()
    n = args.new_tokens
    greedy = SamplingParams(max_new_tokens=n)

    t_nc, out_nc = timed(lambda: generate(model, prompt, greedy, use_cache=False), 1)  # slow: once is enough
    t_kv, out_kv = timed(lambda: generate(model, prompt, greedy, use_cache=True), args.repeats)
    assert len(out_kv) == n and out_kv == out_nc, "cached decoding must give the recomputed tokens"
    lengths = [max(1, args.prompt_len * (i + 1) // args.batch) for i in range(args.batch)]
    prompts = [torch.randint(0, cfg.vocab_size, (k,), generator=g).tolist() for k in lengths]
    t_b, out_b = timed(lambda: generate_batch(model, prompts, greedy), args.repeats)
    batch_tokens = sum(len(o) for o in out_b)

    rows = [
        ("no_cache", 1, n, t_nc, n / t_nc),
        ("kv_cache", 1, n, t_kv, n / t_kv),
        (f"kv_cache batch {args.batch}", args.batch, batch_tokens, t_b, batch_tokens / t_b),
    ]
    print(f"{args.preset} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params), prompt "
          f"{args.prompt_len}, {n} new tokens, greedy, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"{'variant':<20} {'seqs':>5} {'tokens':>7} {'seconds':>8} {'tokens/s':>10}")
    for name, seqs, toks, secs, rate in rows:
        print(f"{name:<20} {seqs:>5} {toks:>7} {secs:>8.2f} {rate:>10.1f}")
    result = {
        "bench": "generate", "preset": args.preset, "new_tokens": n, "prompt_len": args.prompt_len,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "cpus": os.cpu_count(),
        "no_cache_tokens_per_s": round(n / t_nc, 1), "kv_cache_tokens_per_s": round(n / t_kv, 1),
        "batch": args.batch, "batch_tokens_per_s": round(batch_tokens / t_b, 1),
        "kv_speedup": round(t_nc / t_kv, 2), "same_tokens": out_kv == out_nc,
    }
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "generate.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
