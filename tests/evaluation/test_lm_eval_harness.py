from __future__ import annotations

import json

import pytest

from evaluation.harness import TaskNotFound, flatten_metrics, run_lm_eval, task_metric_name


def test_metric_names_are_mlflow_safe():
    assert task_metric_name("ownlm_pyfacts", "acc,none") == "eval/ownlm_pyfacts/acc"
    assert task_metric_name("gsm8k", "exact_match,strict-match") == "eval/gsm8k/exact_match/strict-match"
    assert task_metric_name("t", "acc_stderr,none") == "eval/t/acc_stderr"
    assert task_metric_name("a b", "x,y z") == "eval/a_b/x/y_z"


def test_flatten_keeps_numbers_and_drops_missing_stderr():
    results = {"ownlm_pyfacts": {"alias": "ownlm_pyfacts", "acc,none": 0.5, "acc_stderr,none": "N/A",
                                 "acc_norm,none": 0.25, "acc_norm_stderr,none": 0.1}}
    assert flatten_metrics(results) == {
        "eval/ownlm_pyfacts/acc": 0.5,
        "eval/ownlm_pyfacts/acc_norm": 0.25,
        "eval/ownlm_pyfacts/acc_norm_stderr": 0.1,
    }


def test_run_lm_eval_on_the_bundled_task(checkpoint):
    out = run_lm_eval(str(checkpoint.path), ["ownlm_pyfacts"], limit=8, batch_size=8)
    metrics = out["metrics"]
    for name in ("eval/ownlm_pyfacts/acc", "eval/ownlm_pyfacts/acc_norm"):
        assert 0.0 <= metrics[name] <= 1.0
        # 8 questions: every accuracy is a multiple of 1/8.
        assert (metrics[name] * 8) == pytest.approx(round(metrics[name] * 8))
    assert all("," not in k and " " not in k for k in metrics)
    assert out["results"]["ownlm_pyfacts"]["acc,none"] == metrics["eval/ownlm_pyfacts/acc"]
    json.dumps(out)  # JSON-safe: goes to MLflow as an artifact


def test_run_lm_eval_takes_a_model_in_memory(checkpoint):
    from evaluation.lm_eval_adapter import OwnLM

    lm = OwnLM.from_model(checkpoint.model, checkpoint.tokenizer, batch_size=4)
    by_lm = run_lm_eval(lm, ["ownlm_pyfacts"], limit=4)["metrics"]
    by_model = run_lm_eval(checkpoint.model, ["ownlm_pyfacts"], limit=4, tokenizer=checkpoint.tokenizer)["metrics"]
    assert by_lm == by_model


def test_unknown_task_lists_the_bundled_ones(checkpoint, monkeypatch):
    import lm_eval.tasks

    seen = []

    class LocalOnly(lm_eval.tasks.TaskManager):
        """Skips indexing lm-eval's ~15k bundled configs (10+ s); the lookup logic is the same."""

        def __init__(self, *args, include_defaults=True, **kwargs):
            seen.append(include_defaults)
            super().__init__(*args, include_defaults=False, **kwargs)

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", LocalOnly)
    with pytest.raises(TaskNotFound, match="unknown lm-eval task.*no_such_task_xyz.*ownlm_pyfacts"):
        run_lm_eval(str(checkpoint.path), ["no_such_task_xyz"], limit=2)
    assert seen == [False, True]  # lm-eval's own tasks are searched before giving up
