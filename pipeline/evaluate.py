"""The `eval` stage: the checkpoint against the validation split and the benchmarks, every
figure from evaluation/ (this module only reads the stage's inputs and wires the parts).

Perplexity and bits per byte per source beside a unigram baseline, lm-eval tasks, and, when
configured, HumanEval and conversational metrics. Every figure lands in `results.json` and,
flattened to MLflow-safe names, in `metrics`: `eval/perplexity`, `eval/bits_per_byte`,
`eval/source/<source>/bits_per_byte`, `eval/<task>/<metric>`, `eval/humaneval/pass_at_1`,
`eval/conversation/coherence`, ...
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from evaluation import humaneval
from evaluation.benchmarks import resolve_data_dir
from evaluation.conversation import evaluate_conversations, load_conversations
from evaluation.embeddings import make_embedder
from evaluation.harness import run_lm_eval
from evaluation.isolation import require as require_isolation
from evaluation.task_metric import evaluate_task_file
from evaluation.taskfile import DEFAULT_TEMPLATE
from model.errors import InputError
from pipeline.config import EvalConfig
from pipeline.layout import Location
from pipeline.options import ConfigFlag, PathFlag, comma_list
from pipeline.packed import Manifest, PackedSplit
from pipeline.stage import Context, Stage
from pipeline.storage import StoragePath, local_copy

UNIGRAM_BATCH = 4096
"""Rows per batch when counting tokens for the unigram baseline (numpy only, no model)."""


def evaluate_checkpoint(cfg: EvalConfig, model_dir: StoragePath, tokens_dir: StoragePath | None, out_dir: StoragePath,
                        hide_paths: list[Path] = (), task_template: str = DEFAULT_TEMPLATE) -> dict:
    """Evaluate the checkpoint in model_dir; write out_dir/results.json; return {"metrics", ...}.

    Perplexity needs the packed tokens (tokens_dir); without them only the other parts run.
    hide_paths: folders HumanEval's generated programs must not see (the storage root).
    task_template: the user turn around a task file's inputs (finetune.template)."""
    from evaluation import perplexity  # torch (and lm-eval): only when evaluating
    from evaluation.lm_eval_adapter import OwnLM
    from model.checkpoint import load_model, load_tokenizer

    if cfg.tasks and cfg.data_dir:
        resolve_data_dir(cfg.data_dir)  # a wrong --data-dir fails before any work
    local_model = local_copy(model_dir)  # safetensors and the tokenizer load from real files
    model, _ = load_model(local_model)
    model.eval()
    tokenizer = load_tokenizer(local_model)
    metrics: dict[str, float] = {}
    results: dict = {}
    if model.cfg.family == "masked":
        # Next-token likelihood (perplexity, lm-eval's loglikelihood tasks) is undefined for a
        # bidirectional encoder: score what it was trained for, the masked-token loss, instead.
        if tokens_dir is not None:
            val = PackedSplit(tokens_dir, "val")
            metrics["eval/masked_lm_loss"] = perplexity.masked_lm_loss(
                model, val.batches(cfg.batch_size, cfg.max_batches), val.pad_id, model.cfg.mask_id)
        print("   masked family: perplexity and lm-eval tasks skipped (they need next-token likelihood); "
              "reporting eval/masked_lm_loss", flush=True)
        cfg = cfg.model_copy(update={"perplexity": False, "tasks": []})
    if cfg.perplexity and tokens_dir is not None:
        if Manifest.read(tokens_dir).tokenizer_fingerprint != tokenizer.fingerprint:
            raise InputError(f"{tokens_dir} was tokenized with another tokenizer than the model in {model_dir}: "
                             "perplexity would compare different token streams; pass the model's own tokens")
        val, train = PackedSplit(tokens_dir, "val"), PackedSplit(tokens_dir, "train")
        ppl = perplexity.perplexity(model, val.source_batches(cfg.batch_size, cfg.max_batches), val.pad_id,
                                    tokenizer=tokenizer)
        metrics.update(perplexity.perplexity_metrics(ppl))
        base = perplexity.unigram_loss(train.batches(UNIGRAM_BATCH), val.batches(UNIGRAM_BATCH), val.pad_id)
        metrics.update({"eval/unigram_loss": base, "eval/unigram_perplexity": math.exp(base)})
        results["perplexity"] = ppl
    if cfg.tasks:
        lm = OwnLM.from_model(model, tokenizer, batch_size=cfg.batch_size)
        harness = run_lm_eval(lm, cfg.tasks, limit=cfg.limit, batch_size=cfg.batch_size, data_dir=cfg.data_dir,
                              num_fewshot=cfg.num_fewshot)
        metrics.update(harness["metrics"])
        results["lm_eval"] = harness["results"]
    if cfg.task_file:
        task = evaluate_task_file(model, tokenizer, cfg.task_file, name=cfg.task_name, template=task_template,
                                  batch_size=cfg.batch_size, limit=cfg.limit)
        metrics.update(task["metrics"])
        results["task"] = {k: v for k, v in task.items() if k != "metrics"}
        if task["rejects"]:
            print(f"   {cfg.task_file}: rejected lines {task['rejects']}", flush=True)
    if cfg.humaneval:
        he = humaneval.run_humaneval(model, tokenizer, samples=cfg.humaneval_samples, limit=cfg.humaneval_limit,
                                     temperature=cfg.humaneval_temperature,
                                     max_new_tokens=cfg.humaneval_max_new_tokens, timeout=cfg.humaneval_timeout,
                                     hide_paths=hide_paths, unsafe_no_sandbox=cfg.humaneval_unsafe_no_sandbox)
        metrics.update(he["metrics"])
        results["humaneval"] = {k: v for k, v in he.items() if k != "samples"}
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_jsonl(out_dir / "humaneval_samples.jsonl", he["samples"])
    if cfg.conversations:
        convs = load_conversations(cfg.conversations)
        conv = evaluate_conversations(convs, make_embedder(cfg.embedder, model=model, tokenizer=tokenizer),
                                      model=model, tokenizer=tokenizer, max_new_tokens=cfg.conversation_max_new_tokens)
        metrics.update(conv["metrics"])
        results["conversation"] = conv
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps({"metrics": metrics, **results}, indent=2, default=str))
    return {"metrics": metrics, **results}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))


def evaluate(ctx: Context) -> dict:
    tokens = ctx.layout.tokens
    if ctx.cfg.eval.perplexity and not (tokens / "manifest.json").is_file():
        print(f"   perplexity skipped: no packed tokens at {tokens} (pass --data TOKENS_DIR)", flush=True)
        tokens = None
    cfg, model_dir = ctx.cfg.eval, ctx.layout.model
    if ctx.cfg.finetune.data and (ctx.layout.finetuned / "config.json").is_file():
        model_dir = ctx.layout.finetuned  # `ownlm run` fine-tuned the model: evaluate what it produced
        print(f"   evaluating the fine-tuned model {model_dir}", flush=True)
    if cfg.task_file is None and ctx.cfg.finetune.eval_file:
        cfg = cfg.model_copy(update={"task_file": ctx.cfg.finetune.eval_file})
    # Only a local root can be hidden from HumanEval's programs (a remote one is not on this disk).
    hide = [ctx.layout.root] if isinstance(ctx.layout.root, Path) else []
    results = evaluate_checkpoint(cfg, model_dir, tokens, ctx.layout.eval, hide_paths=hide,
                                  task_template=ctx.cfg.finetune.template)
    ctx.tracker.log_metrics(results["metrics"])
    ctx.tracker.log_artifact(ctx.layout.eval / "results.json", "eval")
    for name, value in sorted(results["metrics"].items()):
        print(f"   {name}: {value:.4f}", flush=True)
    return results["metrics"]


def check_isolation(ctx: Context) -> None:
    """HumanEval runs model-written code: refuse before anything runs when it cannot be isolated."""
    if ctx.cfg.eval.humaneval:
        require_isolation(ctx.cfg.eval.humaneval_unsafe_no_sandbox)


STAGE = Stage(
    name="eval",
    help="perplexity on the validation split and lm-eval tasks",
    action=evaluate,
    upstream=("train", "tokenize", "finetune"),
    sections=("eval",),
    locations=(Location("eval", "eval", "evaluation results, the generated sample, HumanEval and conversation runs"),),
    outputs=(("eval", "results.json"),),
    flags=(PathFlag("--model", "model", "checkpoint folder, or models:/NAME@ALIAS, models:/NAME/VERSION"),
           PathFlag("--data", "tokens", "packed tokens folder for perplexity"),
           PathFlag("--output", "eval", "folder for results.json"),
           ConfigFlag("--tasks", "eval.tasks", type=comma_list,
                      help="shorthand for --set eval.tasks=... (comma-separated)"),
           ConfigFlag("--data-dir", "eval.data_dir"),
           ConfigFlag("--task-file", "eval.task_file", metavar="FILE.jsonl",
                      help="score a labelled task file {input, label, choices?}: task/<name>/acc, exact_match"),
           ConfigFlag("--task-name", "eval.task_name", metavar="NAME", help="the task's name (default: the file's stem)"),
           ConfigFlag("--limit", "eval.limit", type=int),
           ConfigFlag("--num-fewshot", "eval.num_fewshot", type=int),
           ConfigFlag("--unsafe-no-sandbox", "eval.humaneval_unsafe_no_sandbox", switch=True,
                      help="run HumanEval's generated programs without operating-system isolation")),
    check=check_isolation,
    headline=True,
)
