"""The `eval` stage: perplexity and bits per byte per source, a unigram baseline, lm-eval tasks,
and, when configured, HumanEval and conversational metrics.

Every figure lands in `results.json` and, flattened to MLflow-safe names, in `metrics`:
`eval/perplexity`, `eval/bits_per_byte`, `eval/source/<source>/bits_per_byte`,
`eval/<task>/<metric>`, `eval/humaneval/pass@1`, `eval/conversation/coherence`, ...
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from pipeline.config import EvalConfig
from pipeline.packed import PackedSplit

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-.]")


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


def perplexity_metrics(ppl: dict) -> dict[str, float]:
    """`evaluation.perplexity.perplexity`'s report as MLflow metrics."""
    metrics = {"eval/val_loss": ppl["loss"], "eval/perplexity": ppl["perplexity"],
               "eval/bits_per_token": ppl["bits_per_token"]}
    if "bits_per_byte" in ppl:
        metrics["eval/bits_per_byte"] = ppl["bits_per_byte"]
    for source, s in ppl.get("sources", {}).items():
        name = _UNSAFE.sub("_", source)
        for key in ("loss", "perplexity", "bits_per_byte"):
            if key in s:
                metrics[f"eval/source/{name}/{key}"] = s[key]
    return metrics


def evaluate_checkpoint(cfg: EvalConfig, model_dir: Path, tokens_dir: Path | None, out_dir: Path) -> dict:
    """Evaluate the checkpoint in model_dir; write out_dir/results.json; return {"metrics", ...}.

    Perplexity needs the packed tokens (tokens_dir); without them only the other parts run."""
    from model.checkpoint import load_model, load_tokenizer

    if cfg.tasks and cfg.data_dir:
        from evaluation.benchmarks import resolve_data_dir

        resolve_data_dir(cfg.data_dir)  # a wrong --data-dir fails before any work
    model, _ = load_model(model_dir)
    model.eval()
    tokenizer = load_tokenizer(model_dir)
    metrics: dict[str, float] = {}
    results: dict = {}
    if model.cfg.family == "masked":
        # Next-token likelihood (perplexity, lm-eval's loglikelihood tasks) is undefined for a
        # bidirectional encoder: score what it was trained for, the masked-token loss, instead.
        if tokens_dir is not None:
            metrics["eval/masked_lm_loss"] = masked_lm_loss(model, tokens_dir, cfg.batch_size, cfg.max_batches)
        print("   masked family: perplexity and lm-eval tasks skipped (they need next-token likelihood); "
              "reporting eval/masked_lm_loss", flush=True)
        cfg = cfg.model_copy(update={"perplexity": False, "tasks": []})
    if cfg.perplexity and tokens_dir is not None:
        from evaluation.perplexity import perplexity
        from pipeline.packed import Manifest

        manifest = Manifest.read(tokens_dir)
        if manifest.tokenizer_fingerprint != tokenizer.fingerprint:
            raise ValueError(f"{tokens_dir} was tokenized with another tokenizer than the model in {model_dir}: "
                             "perplexity would compare different token streams; pass the model's own tokens")
        ppl = perplexity(model, tokens_dir, split="val", batch_size=cfg.batch_size, max_batches=cfg.max_batches,
                         tokenizer=tokenizer)
        metrics.update(perplexity_metrics(ppl))
        base = unigram_loss(tokens_dir)
        metrics.update({"eval/unigram_loss": base, "eval/unigram_perplexity": math.exp(base)})
        results["perplexity"] = ppl
    if cfg.tasks:
        from evaluation.harness import run_lm_eval
        from evaluation.lm_eval_adapter import OwnLM

        lm = OwnLM.from_model(model, tokenizer, batch_size=cfg.batch_size)
        harness = run_lm_eval(lm, cfg.tasks, limit=cfg.limit, batch_size=cfg.batch_size, data_dir=cfg.data_dir,
                              num_fewshot=cfg.num_fewshot)
        metrics.update(harness["metrics"])
        results["lm_eval"] = harness["results"]
    if cfg.humaneval:
        from evaluation.humaneval import run_humaneval

        he = run_humaneval(model, tokenizer, samples=cfg.humaneval_samples, limit=cfg.humaneval_limit,
                           temperature=cfg.humaneval_temperature, max_new_tokens=cfg.humaneval_max_new_tokens,
                           timeout=cfg.humaneval_timeout)
        metrics.update(he["metrics"])
        results["humaneval"] = {k: v for k, v in he.items() if k != "samples"}
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_jsonl(out_dir / "humaneval_samples.jsonl", he["samples"])
    if cfg.conversations:
        from evaluation.conversation import evaluate_conversations, load_conversations
        from evaluation.embeddings import make_embedder

        convs = load_conversations(cfg.conversations)
        conv = evaluate_conversations(convs, make_embedder(cfg.embedder, model=model, tokenizer=tokenizer),
                                      model=model, tokenizer=tokenizer, max_new_tokens=cfg.conversation_max_new_tokens)
        metrics.update(conv["metrics"])
        results["conversation"] = conv
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps({"metrics": metrics, **results}, indent=2, default=str))
    return {"metrics": metrics, **results}


def masked_lm_loss(model, tokens_dir: Path, batch_size: int, max_batches: int | None) -> float:
    """Mean loss per masked token on the val split, with a fixed seed so reruns score the same masks."""
    import torch

    from model.objectives import loss_terms

    split = PackedSplit(tokens_dir, "val")
    generator = torch.Generator().manual_seed(0)
    total = count = 0.0
    with torch.no_grad():
        for rows in split.batches(batch_size, max_batches):
            loss_sum, n = loss_terms(model, torch.as_tensor(rows, dtype=torch.long), family="masked",
                                     pad_id=split.pad_id, mask_id=model.cfg.mask_id, generator=generator)
            total += float(loss_sum)
            count += float(n)
    return total / max(count, 1.0)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
