"""Benchmark: loglikelihood requests/s of the ownlm lm-eval adapter against lm-eval's own `hf`
backend, on the same model (exported to Hugging Face format) and the same requests.

For each model size (the `debug` and `tiny` presets, random weights: speed does not depend on
training), builds a checkpoint with a byte-level BPE trained on standard-library sources,
exports it with `model.hf.export_hf`, and times `loglikelihood` on N requests (contexts of
10-200 tokens of Python source, continuations of 1-20 tokens, as multiple-choice tasks send)
through `OwnLM` and through lm-eval's `HFLM`, alternating, best of R rounds, same batch size and
torch threads. Also reports the largest score difference between the two (a parity check).

    python bench/eval.py [--presets debug tiny] [--requests 512] [--batch-size 32] [--rounds 3]

Prints a table and a final JSON line (`vs_hf_backend` = ours / hf requests per second for the
largest preset; goal >= 1.0); writes bench/out/eval.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a tokenize.py, which would shadow the standard library's: keep the folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import platform
import random
import sysconfig
import tempfile
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def stdlib_text(limit_bytes: int = 3_000_000) -> str:
    parts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(errors="replace")
        parts.append(text)
        size += len(text)
        if size > limit_bytes:
            break
    return "\n".join(parts)


def build(folder: Path, preset: str, text: str) -> tuple[Path, Path]:
    """A random-weight checkpoint of the preset and its Hugging Face export."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from model.checkpoint import save_checkpoint
    from model.config import get_preset
    from model.hf import export_hf
    from model.tokenizer import SPECIAL_TOKENS
    from model.transformer import Transformer

    tok_path = folder / "tokenizer.json"
    if not tok_path.is_file():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=4096, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator([text[i : i + 10_000] for i in range(0, len(text), 10_000)], trainer=trainer)
        tok.save(str(tok_path))
    cfg = get_preset(preset, vocab_size=4096)
    torch.manual_seed(0)
    ckpt = save_checkpoint(folder / f"{preset}-ckpt", Transformer(cfg), cfg, tokenizer_path=tok_path)
    return ckpt, export_hf(ckpt, folder / f"{preset}-hf")


def make_requests(text: str, tokenizer, n: int, max_len: int, seed: int = 0):
    from lm_eval.api.instance import Instance

    rng = random.Random(seed)
    ids = tokenizer.encode(text[:400_000])
    out = []
    for i in range(n):
        ctx_len, cont_len = rng.randint(10, min(200, max_len - 21)), rng.randint(1, 20)
        start = rng.randrange(0, len(ids) - ctx_len - cont_len)
        context = tokenizer.decode(ids[start : start + ctx_len])
        continuation = tokenizer.decode(ids[start + ctx_len : start + ctx_len + cont_len])
        out.append(Instance("loglikelihood", {}, (context, continuation), i))
    return out


def time_backend(lm, requests) -> tuple[float, list]:
    start = time.perf_counter()
    scores = lm.loglikelihood(requests, disable_tqdm=True)
    return time.perf_counter() - start, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["debug", "tiny"])
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch
    from lm_eval.models.huggingface import HFLM

    from evaluation.lm_eval_adapter import OwnLM
    from model.checkpoint import load_tokenizer

    text = stdlib_text()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ownlm-bench-eval-") as tmp:
        for preset in args.presets:
            ckpt, hf_dir = build(Path(tmp), preset, text)
            ours = OwnLM(path=ckpt, batch_size=args.batch_size)
            hf = HFLM(pretrained=str(hf_dir), device="cpu", batch_size=args.batch_size, dtype="float32")
            requests = make_requests(text, load_tokenizer(ckpt), args.requests, ours.max_length)
            time_backend(ours, requests[:8]), time_backend(hf, requests[:8])  # warm up
            ours_s, hf_s = [], []
            for _ in range(args.rounds):
                t, a = time_backend(ours, requests)
                ours_s.append(t)
                t, b = time_backend(hf, requests)
                hf_s.append(t)
            diff = max(abs(x[0] - y[0]) for x, y in zip(a, b))
            same_greedy = sum(x[1] == y[1] for x, y in zip(a, b)) / len(a)
            n_params = sum(p.numel() for p in ours.model.parameters())
            rows.append({"preset": preset, "params": n_params, "requests": len(requests),
                         "batch_size": args.batch_size, "ours_req_s": len(requests) / min(ours_s),
                         "hf_req_s": len(requests) / min(hf_s), "max_abs_diff": diff,
                         "same_is_greedy": same_greedy})
            rows[-1]["vs_hf_backend"] = rows[-1]["ours_req_s"] / rows[-1]["hf_req_s"]

    print(f"\nloglikelihood requests/s, best of {args.rounds} (torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()})")
    print(f"{'preset':<8} {'params':>10} {'ours req/s':>11} {'hf req/s':>9} {'vs_hf':>6} {'max |diff|':>11}")
    for r in rows:
        print(f"{r['preset']:<8} {r['params']:>10,} {r['ours_req_s']:>11.1f} {r['hf_req_s']:>9.1f} "
              f"{r['vs_hf_backend']:>6.2f} {r['max_abs_diff']:>11.2e}")
    result = {"bench": "eval", "vs_hf_backend": rows[-1]["vs_hf_backend"], "preset": rows[-1]["preset"],
              "rows": rows, "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
