"""Run lm-eval tasks on an ownlm model and name the scores for MLflow.

lm-eval reports `{"ownlm_pyfacts": {"acc,none": 0.25, "acc_stderr,none": "N/A", ...}}`;
MLflow metric names may not hold commas (and ours hold no spaces), so `metrics` flattens that
to `{"eval/ownlm_pyfacts/acc": 0.25}`: the filter suffix is dropped when it is lm-eval's
default ("none") and kept as a path part otherwise (`eval/gsm8k/exact_match/strict-match`);
standard errors keep their `_stderr` name and are dropped when lm-eval has none ("N/A").
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from evaluation import names
from evaluation.benchmarks import hub_offline, offline_task_manager_class, resolve_data_dir
from evaluation.tasks import bundled_tasks, include_path
from model.errors import InputError, MissingInput


class TaskNotFound(MissingInput):
    """A task name that is neither bundled, nor lm-eval's, nor a task YAML file."""


def task_metric_name(task: str, key: str) -> str:
    """`("arc_easy", "acc_norm,none")` -> `"eval/arc_easy/acc_norm"`."""
    metric, _, filt = key.partition(",")
    return names.metric_name("eval", task, metric, *([filt] if filt and filt != "none" else []))


def flatten_metrics(results: dict) -> dict[str, float]:
    """lm-eval's per-task results -> {"eval/<task>/<metric>": float}, numbers only."""
    metrics = {}
    for task, scores in results.items():
        for key, value in scores.items():
            # `sample_len` is how many documents ran, not a score.
            if key in ("alias", "sample_len") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                metrics[task_metric_name(task, key)] = float(value)
    return metrics


def _json_safe(obj):
    return json.loads(json.dumps(obj, default=str))


def _task_manager(tasks: list[str], include_paths: list[str], data_dirs: list[Path]):
    """A TaskManager that knows the bundled tasks and reads known benchmarks from local files
    (see evaluation.benchmarks.offline_task_manager_class)."""
    cls = offline_task_manager_class(data_dirs, extra_include=[include_path()], tasks_hint=tasks)
    manager = cls(include_path=[str(p) for p in include_paths] or None)
    missing = [t for t in tasks if t not in manager.all_tasks and not Path(t).is_file()]
    if missing:
        raise TaskNotFound(
            f"unknown lm-eval task(s): {', '.join(missing)}. Bundled with ownlm: "
            f"{', '.join(bundled_tasks())}; otherwise name a task lm-eval ships (`ownlm lm-eval ls tasks`), "
            "a YAML file, or a folder of task YAMLs via include_paths")
    return manager


def run_lm_eval(model_or_path, tasks: list[str], *, limit: int | float | None = None,
                batch_size: int = 16, include_paths: list[str] = (), tokenizer=None,
                device: str = "cpu", data_dir: str | Path | None = None, num_fewshot: int | None = None,
                log_samples: bool = False, gen_kwargs: dict | None = None) -> dict:
    """Evaluate on lm-eval tasks; returns {"results": lm-eval's per-task results (JSON-safe),
    "metrics": {"eval/<task>/<metric>": float}, "versions": ..., "n-shot": ..., "samples"?}.

    model_or_path: a checkpoint folder, an `OwnLM` (or any lm-eval model), or a Transformer
    (then pass `tokenizer`).
    data_dir: a folder holding benchmark data sets in their own layouts (see
    evaluation.benchmarks), or "bundled" for the small sample files shipped with ownlm. The
    Hugging Face Hub stays offline throughout: missing data fails before the model runs.
    """
    import lm_eval

    from evaluation.lm_eval_adapter import OwnLM

    tasks = list(tasks)
    if not tasks:
        raise InputError("run_lm_eval needs at least one task")
    from lm_eval.api.model import LM

    if isinstance(model_or_path, LM):  # OwnLM, or any lm-eval model (e.g. `hf` for parity checks)
        lm = model_or_path
    elif isinstance(model_or_path, (str, Path)):
        lm = OwnLM(path=model_or_path, batch_size=batch_size, device=device)
    elif tokenizer is not None:
        lm = OwnLM.from_model(model_or_path, tokenizer, batch_size=batch_size)
    else:
        raise TypeError("run_lm_eval takes a checkpoint path, an OwnLM, or a model plus tokenizer=")
    data_dirs = [d for d in [resolve_data_dir(data_dir)] if d is not None]
    with hub_offline():
        manager = _task_manager(tasks, list(include_paths), data_dirs)
        out = lm_eval.simple_evaluate(
            model=lm, tasks=tasks, task_manager=manager, num_fewshot=num_fewshot, gen_kwargs=gen_kwargs,
            limit=limit, bootstrap_iters=0, log_samples=log_samples)
    results = _json_safe(out["results"])
    report = {"results": results, "metrics": flatten_metrics(results),
              "versions": _json_safe(out.get("versions", {})), "n-shot": _json_safe(out.get("n-shot", {})),
              "n-samples": _json_safe(out.get("n-samples", {}))}
    if log_samples:
        report["samples"] = _json_safe(out.get("samples", {}))
    return report
