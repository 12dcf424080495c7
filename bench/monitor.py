"""Benchmark: what the monitor's drift check costs, against a perplexity pass over the same windows.

    python bench/monitor.py                         # 256 and 1,024 windows of 65 tokens, the debug model
    python bench/monitor.py --small 128 --large 512 --preset tiny --json bench/out/monitor.json

The drift side scores each window with the champion (`evaluation.drift.window_losses`) and runs the
statistics (`evaluation.drift.drift`: KS test + PSI); the baseline is `evaluation.perplexity.perplexity`
over exactly the same rows, measured in the same run. A ratio near 1 means the drift check costs a
validation pass and no more; the statistics' share shows they are free beside the model. Random weights
(the cost does not depend on what the model learned). Prints a table and, last, one JSON line.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import platform
import time

import numpy as np


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(model, n: int, seq: int, vocab: int, repeats: int) -> dict:
    from evaluation.drift import drift, window_losses
    from evaluation.perplexity import perplexity

    rng = np.random.default_rng(n)
    ref = rng.integers(1, vocab, (n, seq + 1))
    new = rng.integers(1, vocab, (n, seq + 1))
    batches = lambda rows: {"": iter([rows[i:i + 32] for i in range(0, len(rows), 32)])}  # noqa: E731
    ref_losses = window_losses(model, ref)
    cur = window_losses(model, new)
    # Interleaved, best of `repeats` each: on a shared machine both sides then see the same load.
    baseline = scoring = stats = float("inf")
    for _ in range(repeats):
        baseline = min(baseline, best_of(lambda: perplexity(model, batches(new), pad_id=0), 1))
        scoring = min(scoring, best_of(lambda: window_losses(model, new), 1))
        stats = min(stats, best_of(lambda: drift(ref_losses, cur), 1))
    return {"windows": n, "perplexity_s": baseline, "drift_scoring_s": scoring, "drift_stats_s": stats,
            "drift_vs_perplexity": (scoring + stats) / baseline, "stats_share": stats / (scoring + stats)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--small", type=int, default=256)
    p.add_argument("--large", type=int, default=1024)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--preset", default="debug")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    import torch

    from model.config import get_preset
    from model.transformer import Transformer

    torch.set_num_threads(1)  # one thread: steadier on a shared machine, and what a small monitor box has
    torch.manual_seed(0)
    cfg = get_preset(args.preset, vocab_size=1024)
    model = Transformer(cfg).eval()
    measure(model, 64, args.seq_len, cfg.vocab_size, 1)  # warm-up: first calls pay for allocation and kernels
    rows = [measure(model, n, args.seq_len, cfg.vocab_size, args.repeats) for n in (args.small, args.large)]
    print(f"{'windows':>8} {'perplexity s':>13} {'drift score s':>14} {'stats s':>9} {'drift/ppl':>10} {'stats %':>8}")
    for r in rows:
        print(f"{r['windows']:>8} {r['perplexity_s']:>13.3f} {r['drift_scoring_s']:>14.3f} {r['drift_stats_s']:>9.4f} "
              f"{r['drift_vs_perplexity']:>10.2f} {100 * r['stats_share']:>7.2f}%")
    growth = rows[1]["drift_scoring_s"] / rows[0]["drift_scoring_s"]
    print(f"scoring time grows x{growth:.2f} for x{args.large / args.small:.0f} windows")
    result = {"bench": "monitor", "preset": args.preset, "seq_len": args.seq_len, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "rows": rows, "scoring_growth": growth}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
