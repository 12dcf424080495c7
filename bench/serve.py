"""Benchmark: `ownlm serve` under concurrent clients, with and without dynamic batching.

A `tiny` model (random weights: speed does not depend on what was learned) is served on a local
Ray instance, one model replica of 1 CPU (torch with 1 thread), twice in one run: with
`@serve.batch` up to --max-batch-size requests, and with batches of one. Each of 1, 4 and 16
client threads sends its share of the requests (greedy, --max-tokens new tokens, prompts of
different lengths) to /v1/completions and waits for the answer. Reported per setting:
requests/s, p50 and p95 latency, generated tokens/s (from the responses' usage).

  batching_speedup = tokens/s at 16 clients, batched / unbatched        (goal >= 3)
  serve_overhead   = tokens/s of 1 client through the server / `generate` in-process on the
                     same prompts with the same thread count            (goal >= 0.8)

Prints a table and a final JSON line; writes bench/out/serve.json.

    python bench/serve.py [--max-tokens 32] [--requests 32] [--max-batch-size 16] [--port 8790]
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
import statistics
import tempfile
import threading
import time

os.environ.setdefault("RAY_AUTH_MODE", "token")  # token auth stays on (read once, at Ray's import)

PROMPTS = ["def add(a, b):", "import os", "class Stack:\n    def push(self, item):", "for i in range(10):",
           "The json module", "x = [1, 2, 3]\nprint(len(x))", "A tuple is", "from pathlib import Path\n"]


def build_checkpoint(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from model.checkpoint import save_checkpoint
    from model.config import get_preset
    from model.tokenizer import SPECIAL_TOKENS
    from model.transformer import Transformer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2048, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([Path(__file__).read_text()] * 4 + PROMPTS * 8, trainer=trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    cfg = get_preset("tiny", vocab_size=tok.get_vocab_size())
    torch.manual_seed(0)
    save_checkpoint(folder / "ckpt", Transformer(cfg), cfg, tokenizer_path=folder / "tokenizer.json")
    return folder / "ckpt"


def load(url: str, clients: int, requests_total: int, max_tokens: int) -> dict:
    """`clients` threads share requests_total requests; latency per request, tokens from usage."""
    import requests

    latencies, tokens, lock = [], [0], threading.Lock()
    per_client = max(1, requests_total // clients)

    def client(c):
        session = requests.Session()
        for r in range(per_client):
            body = {"model": "bench", "prompt": PROMPTS[(c + r) % len(PROMPTS)], "max_tokens": max_tokens,
                    "temperature": 0}
            t = time.perf_counter()
            out = session.post(url + "/v1/completions", json=body, timeout=600)
            out.raise_for_status()
            with lock:
                latencies.append(time.perf_counter() - t)
                tokens[0] += out.json()["usage"]["completion_tokens"]

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "seconds": wall, "requests_per_s": len(latencies) / wall,
            "p50_s": statistics.median(latencies), "p95_s": latencies[min(len(latencies) - 1,
                                                                          int(0.95 * len(latencies)))],
            "tokens": tokens[0], "tokens_per_s": tokens[0] / wall}


def in_process(ckpt: Path, requests_total: int, max_tokens: int) -> dict:
    """The same prompts one after another through model.generate, in this process, 1 thread."""
    import torch

    from model.checkpoint import load_model, load_tokenizer
    from model.generate import generate
    from model.sampling import SamplingParams

    torch.set_num_threads(1)
    model, _ = load_model(ckpt)
    tok = load_tokenizer(ckpt)
    params = SamplingParams(max_new_tokens=max_tokens)
    generate(model, tok.encode(PROMPTS[0]), params, eos_id=tok.eot_id)  # warm-up, as the server's first requests
    start, n = time.perf_counter(), 0
    for r in range(requests_total):
        n += len(generate(model, tok.encode(PROMPTS[r % len(PROMPTS)]), params, eos_id=tok.eot_id))
    wall = time.perf_counter() - start
    return {"tokens": n, "seconds": wall, "tokens_per_s": n / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--requests", type=int, default=32, help="requests per setting, shared by the clients")
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--port", type=int, default=8790)
    args = ap.parse_args()

    import ray
    from ray import serve

    from pipeline.config import ServeConfig
    from pipeline.serve.command import settings_for, start

    work = Path(tempfile.mkdtemp(prefix="ownlm-bench-serve-"))
    ckpt = build_checkpoint(work)
    ray.init(num_cpus=4, log_to_driver=False, configure_logging=False)
    rows = []
    for label, batch in (("batched", args.max_batch_size), ("unbatched", 1)):
        cfg = ServeConfig(port=args.port, app_name="bench", model_name="bench", max_batch_size=batch,
                          batch_wait_timeout_s=0.01, max_tokens=args.max_tokens)
        url = start(cfg, settings_for(cfg, str(ckpt)))
        load(url, 4, 8, args.max_tokens)  # warm-up: the replica's first forward passes
        for clients in (1, 4, 16):
            rows.append({"setting": label, "max_batch_size": batch, **load(url, clients, args.requests,
                                                                             args.max_tokens)})
        serve.delete("bench")
    serve.shutdown()
    ray.shutdown()
    local = in_process(ckpt, args.requests, args.max_tokens)

    def tps(label, clients):
        return next(r["tokens_per_s"] for r in rows if r["setting"] == label and r["clients"] == clients)

    print(f"{'setting':10} {'clients':>7} {'req':>4} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'tokens/s':>9}")
    for r in rows:
        print(f"{r['setting']:10} {r['clients']:>7} {r['requests']:>4} {r['requests_per_s']:>7.2f} "
              f"{r['p50_s']:>7.3f} {r['p95_s']:>7.3f} {r['tokens_per_s']:>9.1f}")
    print(f"{'in-process':10} {1:>7} {args.requests:>4} {'':>7} {'':>7} {'':>7} {local['tokens_per_s']:>9.1f}")
    result = {"bench": "serve", "preset": "tiny", "max_tokens": args.max_tokens, "rows": rows, "in_process": local,
              "batching_speedup": tps("batched", 16) / tps("unbatched", 16),
              "serve_overhead": tps("batched", 1) / local["tokens_per_s"],
              "machine": f"{platform.machine()} {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d")}
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "serve.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))


if __name__ == "__main__":
    main()
