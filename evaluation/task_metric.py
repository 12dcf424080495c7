"""The task's own metric: a labelled file (evaluation/taskfile.py) scored as two lm-eval tasks
generated from it, so it runs through the same harness as every benchmark (and `ownlm lm-eval`):

    <name>      multiple_choice: accuracy of ranking the labels' log-likelihoods after the prompt
    <name>_gen  generate_until: exact match of the greedy answer with the label

The prompt is the user turn a fine-tune trained on (the template around the input, in the
model's chat role tokens, the assistant's turn opened), and each choice is a label followed by
the end-of-turn token, as the assistant's answer was during fine-tuning; a line's own "choices"
are its candidates, otherwise every distinct label of the file is. Metrics: `task/<name>/acc`
and `task/<name>/exact_match`.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import yaml

from evaluation import names
from evaluation.harness import run_lm_eval
from evaluation.taskfile import DEFAULT_TEMPLATE, label_set, read_task_file, render_input
from model.tokenizer import CHAT_ROLES

GEN_SUFFIX = "_gen"


def task_name(path: str | Path, name: str | None = None) -> str:
    """The task's name: given, or the file's stem, as an lm-eval task name (letters, digits, _)."""
    raw = name or Path(path).stem
    clean = re.sub(r"[^0-9A-Za-z_]+", "_", raw).strip("_")
    if not clean:
        raise ValueError(f"cannot make a task name from {raw!r}: pass --task-name")
    return clean


def write_tasks(path: str | Path, tokenizer, out_dir: str | Path, *, name: str, template: str = DEFAULT_TEMPLATE,
                max_gen_toks: int = 32) -> dict:
    """Write the two task YAMLs and their data file into out_dir; returns {"tasks", "rejects", "docs"}."""
    tokenizer.require(*CHAT_ROLES, purpose="the task metric's chat prompt")
    examples, rejects = read_task_file(path)
    labels = label_set(examples)
    end = tokenizer.roles["end_of_turn"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / f"{name}.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for ex in examples:
            choices = list(ex.choices or labels)
            context = tokenizer.chat_prompt([{"role": "user", "content": render_input(template, ex.input)}])
            f.write(json.dumps({"context": context, "choices": [c + end for c in choices],
                                "gold": choices.index(ex.label), "label": ex.label}) + "\n")
    common = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}}, "test_split": "test",
              "doc_to_text": "{{context}}", "target_delimiter": "", "metadata": {"version": 1.0}}
    choice = {"task": name, **common, "output_type": "multiple_choice", "doc_to_choice": "choices",
              "doc_to_target": "gold", "metric_list": [{"metric": "acc", "aggregation": "mean",
                                                        "higher_is_better": True}]}
    generate = {"task": name + GEN_SUFFIX, **common, "output_type": "generate_until", "doc_to_target": "label",
                "generation_kwargs": {"until": [end], "do_sample": False, "max_gen_toks": max_gen_toks},
                "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                                 "ignore_case": False, "ignore_punctuation": False,
                                 "regexes_to_ignore": [r"^\s+|\s+$"]}]}
    for task in (choice, generate):
        (out_dir / f"{task['task']}.yaml").write_text(yaml.safe_dump(task, sort_keys=False))
    return {"tasks": [name, name + GEN_SUFFIX], "rejects": rejects, "docs": len(examples)}


def task_metrics(results: dict, name: str) -> dict[str, float]:
    """lm-eval's results of the two tasks -> {"task/<name>/acc", "task/<name>/exact_match"}."""
    return {names.metric_name("task", name, "acc"): float(results[name]["acc,none"]),
            names.metric_name("task", name, "exact_match"): float(results[name + GEN_SUFFIX]["exact_match,none"])}


def evaluate_task_file(model_or_lm, tokenizer, path: str | Path, *, name: str | None = None,
                       template: str = DEFAULT_TEMPLATE, batch_size: int = 16, limit: int | None = None) -> dict:
    """Score a labelled file; returns {"metrics": {task/<name>/...}, "results": lm-eval's, "name",
    "docs", "rejects": {reason: [line, ...]}}."""
    from evaluation.lm_eval_adapter import OwnLM  # lm-eval, torch

    name = task_name(path, name)
    lm = model_or_lm if not hasattr(model_or_lm, "cfg") else OwnLM.from_model(model_or_lm, tokenizer,
                                                                               batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="ownlm-taskfile-") as tmp:
        written = write_tasks(path, tokenizer, tmp, name=name, template=template)
        report = run_lm_eval(lm, written["tasks"], include_paths=[tmp], limit=limit, batch_size=batch_size)
    return {"metrics": task_metrics(report["results"], name), "results": report["results"], "name": name,
            "docs": written["docs"], "rejects": written["rejects"].to_dict()}
