"""The `eval` stage: perplexity on the held-out split, a unigram baseline, and lm-eval tasks."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pipeline.config import EvalConfig
from pipeline.packed import PackedSplit


def unigram_loss(tokens_dir: Path) -> float:
    """Cross-entropy (nats/token) of the val targets under the train split's unigram distribution.

    The floor any model that learned something must beat: it knows token frequencies and no context.
    Add-one smoothing keeps tokens unseen in training finite.
    """
    train, val = PackedSplit(tokens_dir, "train"), PackedSplit(tokens_dir, "val")
    vocab = int(max(_max_id(train), _max_id(val))) + 1
    counts = np.ones(vocab, dtype=np.float64)
    for rows in train.batches(4096):
        counts += np.bincount(rows[:, 1:].ravel(), minlength=vocab)[:vocab]
    counts[train.pad_id] = 0  # padding is never a target
    logp = np.log(counts / counts.sum(), where=counts > 0, out=np.full(vocab, -np.inf))
    total, n = 0.0, 0
    for rows in val.batches(4096):
        targets = rows[:, 1:].ravel()
        targets = targets[targets != val.pad_id]
        total -= logp[targets].sum()
        n += len(targets)
    return total / max(n, 1)


def _max_id(split: PackedSplit) -> int:
    return max((int(rows.max()) for rows in split.batches(4096)), default=0)


def evaluate_checkpoint(cfg: EvalConfig, model_dir: Path, tokens_dir: Path | None, out_dir: Path) -> dict:
    """Evaluate the checkpoint in model_dir; write out_dir/results.json; return {"metrics", ...}.

    Perplexity needs the packed tokens (tokens_dir); without them only the tasks run."""
    from model.checkpoint import load_model, load_tokenizer

    model, _ = load_model(model_dir)
    model.eval()
    metrics: dict[str, float] = {}
    results: dict = {}
    if cfg.perplexity and tokens_dir is not None:
        from evaluation.perplexity import perplexity

        ppl = perplexity(model, tokens_dir, split="val", batch_size=cfg.batch_size, max_batches=cfg.max_batches)
        metrics.update({"eval/val_loss": ppl["loss"], "eval/perplexity": ppl["perplexity"],
                        "eval/bits_per_token": ppl["bits_per_token"]})
        base = unigram_loss(tokens_dir)
        metrics.update({"eval/unigram_loss": base, "eval/unigram_perplexity": math.exp(base)})
        results["perplexity"] = ppl
    if cfg.tasks:
        from evaluation.lm_eval_adapter import OwnLM
        from evaluation.harness import run_lm_eval

        lm = OwnLM.from_model(model, load_tokenizer(model_dir), batch_size=cfg.batch_size)
        harness = run_lm_eval(lm, cfg.tasks, limit=cfg.limit, batch_size=cfg.batch_size)
        metrics.update(harness["metrics"])
        results["lm_eval"] = harness["results"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps({"metrics": metrics, **results}, indent=2, default=str))
    return {"metrics": metrics, **results}
