"""Benchmark: what ASHA's early stopping saves. The same search (same space, seed and trial budget)
with ASHA and with FIFO (every trial to the end), in one Ray instance, one after the other.

Each trial is a Ray Train run of the `debug` model on packed real text (the tests' builder:
a BPE trained on generated documents), 1 worker, `--samples` points drawn from a learning-rate
range that spans good and far too high values, `--steps` steps each, validation every
`--eval-every` steps (ASHA's rungs). Reported per scheduler: the best val/loss reached, the
total training steps of all trials, and the wall time of `tuner.fit` (the search alone; starting
Ray and building the data are outside it). FIFO is the baseline:

    asha_speedup  = FIFO wall / ASHA wall           (goal >= 1.8)
    asha_best_gap = ASHA best - FIFO best, in nats   (goal <= 0.05)

Prints a table and, last, one JSON line; writes bench/out/tune.json.

    python bench/tune.py [--samples 8] [--steps 200] [--eval-every 20] [--at-once 2]
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/tokenize.py shadows the standard library's `tokenize`: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import argparse
import json
import os
import platform
import tempfile
import time


def search(scheduler: str, args, tokens: Path, work: Path) -> dict:
    from pipeline.config import load_config
    from pipeline.run import run_pipeline
    from pipeline.stages import layout_for
    from tests.pipeline.test_train_loop import SEQ_LEN

    root = work / scheduler
    sets = ["model.preset=debug", f"tokenize.seq_len={SEQ_LEN}", "tracking.enabled=false", "train.num_workers=1",
            "train.batch_size=8", "train.warmup_steps=5", f"train.eval_every={args.eval_every}",
            "train.eval_batches=2", f"train.log_every={args.eval_every}", "train.checkpoint_every=100000",
            f"train.max_steps={args.steps}", f"tune.num_samples={args.samples}", f"tune.max_concurrent_trials={args.at_once}",
            f"tune.scheduler={scheduler}", "tune.seed=0", "tune.reduction_factor=2",
            "tune.search_space={train.lr: {loguniform: [1.0e-4, 3.0]}}"]
    cfg = load_config(None, sets, root=str(root))
    layout = layout_for(root).with_paths(tokens=tokens)
    start = time.perf_counter()
    run_pipeline(cfg, only=["tune"], layout=layout, direct=True)
    wall = time.perf_counter() - start
    results = json.loads((root / "tune" / "results.json").read_text())
    trials = results["trials"]
    return {"scheduler": scheduler, "best": results["best_metric"], "trial_steps": sum(t["steps"] for t in trials),
            "trials": len(trials), "stopped": sum(t["status"] == "stopped" for t in trials),
            "failed": sum(t["status"] == "failed" for t in trials), "wall_s": round(wall, 1),
            "lrs": sorted(round(t["config"]["train.lr"], 5) for t in trials)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--at-once", type=int, default=2)
    p.add_argument("--cpus", type=int, default=4, help="logical CPUs of the local Ray instance")
    args = p.parse_args()

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    from pipeline.config import load_config
    from pipeline.raysession import require_token_auth

    require_token_auth(load_config(None))
    import ray

    from tests.pipeline.test_train_loop import write_packed_tokens

    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        work = Path(tmp)
        tokens = write_packed_tokens(work / "data", n_docs=400)
        ray.init(num_cpus=args.cpus, log_to_driver=False, configure_logging=False)
        rows = [search("asha", args, tokens, work), search("fifo", args, tokens, work)]
        ray.shutdown()
    asha, fifo = rows
    assert asha["lrs"] == fifo["lrs"], "the two searches drew different points"
    print(f"\nsearch: {args.samples} samples of train.lr ~ loguniform[1e-4, 3], {args.steps} steps each, "
          f"validation every {args.eval_every}, {args.at_once} trials at a time, debug model, 1 worker")
    print(f"{'scheduler':<10} {'best val/loss':>13} {'trial steps':>12} {'stopped':>8} {'failed':>7} {'wall s':>8}")
    for r in rows:
        print(f"{r['scheduler']:<10} {r['best']:>13.4f} {r['trial_steps']:>12} {r['stopped']:>8} {r['failed']:>7} "
              f"{r['wall_s']:>8.1f}")
    summary = {"bench": "tune", "machine": platform.node(), "cpus": os.cpu_count(), "samples": args.samples,
               "steps": args.steps, "eval_every": args.eval_every, "at_once": args.at_once,
               "asha": asha, "fifo": fifo, "asha_speedup": round(fifo["wall_s"] / asha["wall_s"], 3),
               "asha_step_ratio": round(fifo["trial_steps"] / max(1, asha["trial_steps"]), 3),
               "asha_best_gap": round(asha["best"] - fifo["best"], 4)}
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
