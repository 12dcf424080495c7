"""Benchmark: decoding tokens/s of ours (dynamic cache, static cache, static + compiled step)
against transformers' generate() on the same weights, at batch 1 and 8; and what the KV cache buys.

On the `tiny` preset (random weights: speed does not depend on what was learned), greedy:
  - no_cache: every new token recomputes the whole sequence (model(context) each step);
  - dynamic: prefill once, then one token per step over the cache (the eager default);
  - static: the same over a StaticKVCache (fixed shapes, slot as a tensor; model/kv_cache.py);
  - compiled: static with the torch.compile'd step (model/decode_compile.py), compiled before
    timing (the compile time is reported apart);
  - transformers: LlamaForCausalLM.generate() on the checkpoint as `ownlm export` writes it
    (model.hf.export_hf), greedy, min_new_tokens = max_new_tokens, left-padded with an attention
    mask at batch 8.
Batch 8: prompts of lengths 2..--prompt-len, left-padded into one batch. Every variant's greedy
tokens are asserted equal to transformers' (and the cached to the recomputed). The variants run
interleaved, round after round, and each keeps its best round: the machine is shared, so what
runs side by side in one run is what compares.
kv_speedup = dynamic / no_cache tokens/s at batch 1 (goal >= 5);
vs_transformers_b1, vs_transformers_b8 = compiled tokens/s over transformers' (goal >= 1.5 at 1).
tiny's window (256) is raised to --prompt-len + --new-tokens; that only lengthens the rotary tables.
Prints a table and a final JSON line; writes bench/out/generate.json.

    python bench/generate.py [--preset tiny] [--new-tokens 256] [--prompt-len 16] [--batch 8] [--rounds 3]
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
import tempfile
import time

import torch


def seconds(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def exported_llama(model, cfg, folder: Path):
    """transformers' LlamaForCausalLM from our checkpoint, through `ownlm export`'s code."""
    import transformers

    from model.checkpoint import save_checkpoint
    from model.hf import export_hf

    save_checkpoint(folder / "ckpt", model, cfg)
    export_hf(folder / "ckpt", folder / "hf")
    return transformers.LlamaForCausalLM.from_pretrained(str(folder / "hf")).eval()


def hf_generate(hf, prompts: list[list[int]], n: int) -> list[list[int]]:
    """transformers' greedy generate() of exactly n tokens per prompt, left-padded as ours."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.inference_mode():
        out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                          pad_token_id=0, eos_token_id=None)
    return out[:, width:].tolist()


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
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads, for ours and transformers alike (default 1: a shared machine's "
                         "second core is someone else's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = get_preset(args.preset, max_seq_len=max(get_preset(args.preset).max_seq_len,
                                                  args.prompt_len + args.new_tokens))
    model = Transformer(cfg).eval()
    tmp = tempfile.TemporaryDirectory()
    hf = exported_llama(model, cfg, Path(tmp.name))
    g = torch.Generator().manual_seed(1)
    n = args.new_tokens
    greedy = SamplingParams(max_new_tokens=n)
    lengths = [max(2, args.prompt_len * (i + 1) // args.batch) for i in range(args.batch)]
    batches = {1: [torch.randint(0, cfg.vocab_size, (args.prompt_len,), generator=g).tolist()],
               args.batch: [torch.randint(0, cfg.vocab_size, (k,), generator=g).tolist() for k in lengths]}

    variants = {
        "dynamic": lambda ps: generate_batch(model, ps, greedy),
        "static": lambda ps: generate_batch(model, ps, greedy, static_cache=True),
        "compiled": lambda ps: generate_batch(model, ps, greedy, compile=True),
        "transformers": lambda ps: hf_generate(hf, ps, n),
    }
    compile_s = {b: seconds(lambda ps=ps: variants["compiled"](ps))[0] for b, ps in batches.items()}  # compile, first run
    best = {(name, b): float("inf") for b in batches for name in variants}
    outputs = {}
    for _ in range(args.rounds):
        for b, ps in batches.items():
            for name, fn in variants.items():
                secs, outputs[name, b] = seconds(lambda fn=fn, ps=ps: fn(ps))
                best[name, b] = min(best[name, b], secs)
    t_nc, out_nc = seconds(lambda: generate(model, batches[1][0], greedy, use_cache=False))  # slow: once
    for (name, b), out in outputs.items():
        assert out == outputs["transformers", b], f"{name} at batch {b}: tokens differ from transformers'"
    assert out_nc == outputs["dynamic", 1][0], "cached decoding must give the recomputed tokens"

    rate = {key: b * n / secs for key, secs in best.items() if (b := key[1])}
    print(f"{args.preset} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params), prompt "
          f"{args.prompt_len}, {n} new tokens, greedy, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, best of {args.rounds} interleaved rounds")
    print(f"{'variant':<22} {'batch':>5} {'seconds':>8} {'tokens/s':>10} {'vs transformers':>16}")
    print(f"{'no_cache':<22} {1:>5} {t_nc:>8.2f} {n / t_nc:>10.1f} {n / t_nc / rate['transformers', 1]:>16.2f}")
    for b in batches:
        for name in variants:
            print(f"{name:<22} {b:>5} {best[name, b]:>8.2f} {rate[name, b]:>10.1f} "
                  f"{rate[name, b] / rate['transformers', b]:>16.2f}")
    ratio = {f"{name}_vs_transformers_b{b}": round(rate[name, b] / rate["transformers", b], 2)
             for b in batches for name in ("dynamic", "static", "compiled")}
    result = {
        "bench": "generate", "preset": args.preset, "new_tokens": n, "prompt_len": args.prompt_len,
        "batch": args.batch, "rounds": args.rounds, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpus": os.cpu_count(), "no_cache_tokens_per_s": round(n / t_nc, 1),
        **{f"{name}_b{b}_tokens_per_s": round(rate[name, b], 1) for b in batches for name in variants},
        "compile_s": {f"b{b}": round(s, 1) for b, s in compile_s.items()},
        "kv_speedup": round(rate["dynamic", 1] / (n / t_nc), 2),
        "vs_transformers_b1": ratio["compiled_vs_transformers_b1"],
        f"vs_transformers_b{args.batch}": ratio[f"compiled_vs_transformers_b{args.batch}"],
        **ratio, "same_tokens": True,
    }
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "generate.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
