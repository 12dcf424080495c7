"""The evaluation commands as a user runs them: ownlm lm-eval, humaneval, conversations, arena;
and the eval stage's evaluate_checkpoint with every part switched on."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main

from judge_server import chat_server

NO_TRACKING = ["--set", "tracking.enabled=false"]


def mlflow_metrics(root: Path, run_name: str) -> dict[str, float]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("ownlm-quickstart")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.mlflow.runName = '{run_name}'")
    assert len(runs) == 1, runs
    return dict(runs[0].data.metrics)


def test_lm_eval_command_line_with_the_ownlm_model(tmp_path, checkpoint):
    out = tmp_path / "out"
    rc = main(["lm-eval", "--root", str(tmp_path), "run", "--model", "ownlm", "--model_args",
               f"path={checkpoint.path},max_length=64", "--tasks", "arc_easy,ownlm_pyfacts", "--data-dir", "bundled",
               "--limit", "3", "--batch_size", "4", "--output_path", str(out)])
    assert rc == 0
    (results_file,) = out.rglob("results_*.json")
    results = json.loads(results_file.read_text())["results"]
    assert 0 <= results["arc_easy"]["acc,none"] <= 1 and 0 <= results["ownlm_pyfacts"]["acc,none"] <= 1


def test_lm_eval_command_line_help_and_errors(tmp_path, checkpoint, capsys):
    assert main(["lm-eval", "--root", str(tmp_path), "run", "--help"]) == 0
    assert "--model_args" in capsys.readouterr().out
    assert main(["lm-eval", "--root", str(tmp_path), "run", "--model", "ownlm", "--model_args",
                 f"path={checkpoint.path}", "--tasks", "arc_easy", "--data-dir", str(tmp_path)]) == 1
    assert "benchmark data not found" in capsys.readouterr().err
    assert main(["lm-eval", "--root", str(tmp_path), "run", "--model", "ownlm", "--model_args", "path=/nowhere",
                 "--tasks", "arc_easy"]) == 1
    assert "no checkpoint folder at /nowhere" in capsys.readouterr().err


def test_humaneval_command_scores_completions_and_logs_to_mlflow(tmp_path, capsys):
    from evaluation.humaneval import load_problems

    problems = load_problems(3)
    completions = tmp_path / "completions.jsonl"
    completions.write_text("".join(json.dumps({"task_id": p["task_id"], "completion": c}) + "\n"
                                   for p in problems for c in (p["canonical_solution"], "    pass\n")))
    assert main(["humaneval", "--root", str(tmp_path), "--completions", str(completions), "--limit", "3"]) == 0
    assert "pass@1 0.5000" in capsys.readouterr().out
    results = json.loads((tmp_path / "eval/humaneval/results.json").read_text())
    assert results["pass@k"] == {"pass@1": 0.5} and results["samples_per_problem"] == 2
    assert len((tmp_path / "eval/humaneval/samples.jsonl").read_text().splitlines()) == 6
    assert mlflow_metrics(tmp_path, "humaneval") == {"eval/humaneval/pass_at_1": 0.5}


def test_conversations_command(tmp_path, capsys):
    assert main(["conversations", "--root", str(tmp_path), *NO_TRACKING, "--embedder", "hashing"]) == 0
    out = json.loads((tmp_path / "eval/conversations/results.json").read_text())
    assert out["summary"]["conversations"] == 4 and 0 < out["summary"]["context_awareness"] < 1
    assert "coherence:" in capsys.readouterr().out


def test_arena_command_with_a_judge_then_ratings(tmp_path, checkpoint, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def add(a, b):\nimport os\nclass Stack:\n")
    with chat_server(lambda body: "[[A]]" if "Assistant A" in body["messages"][-1]["content"] else "[[C]]") as (url, req):
        rc = main(["arena", "--root", str(tmp_path), "--model", f"first={checkpoint.path}",
                   "--model", f"second={checkpoint.path}", "--prompts", str(prompts), "--max-new-tokens", "4",
                   "--judge-url", url, "--judge-model", "j", "--bootstrap", "20"])
    assert rc == 0 and len(req) == 6  # 3 matches, each judged in both orders
    votes = [json.loads(line) for line in (tmp_path / "arena/votes.jsonl").read_text().splitlines()]
    assert len(votes) == 3 and {v["winner"] for v in votes} == {"tie"}  # always "A": position bias -> ties
    metrics = mlflow_metrics(tmp_path, "arena")
    assert set(metrics) >= {"arena/first/rating", "arena/second/rating", "arena/first/ci_low"}
    capsys.readouterr()
    assert main(["arena", "--root", str(tmp_path), *NO_TRACKING, "--ratings", "--bootstrap", "10"]) == 0
    table = capsys.readouterr().out
    assert "first" in table and "second" in table and "95% CI" in table


def test_arena_command_errors_are_usage_errors(tmp_path, capsys):
    assert main(["arena", "--root", str(tmp_path), *NO_TRACKING, "--model", "only=x"]) == 2
    assert "two or more" in capsys.readouterr().err
    assert main(["arena", "--root", str(tmp_path), *NO_TRACKING, "--model", "bad"]) == 2
    assert "NAME=CKPT" in capsys.readouterr().err


def test_eval_stage_options_are_config_shorthands(tmp_path, capsys):
    assert main(["config", "--set", "eval.limit=5"]) == 0
    from pipeline.cli import COMMANDS, build_parser, load

    args = build_parser().parse_args(["eval", "--data-dir", "bundled", "--num-fewshot", "5", "--limit", "3",
                                      "--tasks", "arc_easy,mmlu", "--set", "eval.limit=9"])
    e = load(COMMANDS["eval"], args).eval
    # Typed values, validated like the config file's; a flag wins over --set.
    assert (e.tasks, e.data_dir, e.limit, e.num_fewshot) == (["arc_easy", "mmlu"], "bundled", 3, 5)


def test_evaluate_checkpoint_with_every_part(tmp_path, checkpoint):
    from evaluation.tasks import TASKS_DIR
    from pipeline.config import EvalConfig
    from pipeline.evaluate import evaluate_checkpoint
    from pipeline.packed import Manifest

    tok, seq = checkpoint.tokenizer, 32
    ids = tok.encode((Path(__file__).read_text() * 2)[:6000])
    files = {}
    for split, name, start in (("train", "code", 0), ("val", "code", 2), ("val", "web page", 5)):
        rows = np.array([ids[(start + i) * seq:(start + i + 1) * seq + 1] for i in range(3)], dtype=np.int32)
        rel = f"{split}/{name.replace(' ', '-')}/shard-0.npy"
        (tmp_path / "tokens" / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "tokens" / rel, rows)
        files.setdefault(split, {})[name] = {"files": [rel], "rows": 3, "tokens": rows.size, "documents": 1}
    Manifest(seq_len=seq, dtype="int32", eot_id=tok.eot_id, pad_id=tok.pad_id, tokenizer_fingerprint=tok.fingerprint,
             splits={s: {"files": [f for v in src.values() for f in v["files"]], "rows": 3 * len(src),
                         "tokens": sum(v["tokens"] for v in src.values()), "documents": len(src), "sources": src}
                     for s, src in files.items()}).write(tmp_path / "tokens")
    cfg = EvalConfig(tasks=["arc_easy"], data_dir="bundled", limit=2, humaneval=True, humaneval_limit=2,
                     humaneval_max_new_tokens=8, humaneval_timeout=5, conversations=str(TASKS_DIR / "conversations.jsonl"),
                     embedder="hashing", conversation_max_new_tokens=8, batch_size=4)
    out = evaluate_checkpoint(cfg, checkpoint.path, tmp_path / "tokens", tmp_path / "eval")
    m = out["metrics"]
    for name in ("eval/perplexity", "eval/bits_per_byte", "eval/source/code/bits_per_byte",
                 "eval/source/web_page/perplexity", "eval/arc_easy/acc", "eval/humaneval/pass_at_1",
                 "eval/conversation/coherence", "eval/conversation/engagement", "eval/unigram_loss"):
        assert name in m, name
    assert all("," not in k and " " not in k for k in m)
    saved = json.loads((tmp_path / "eval/results.json").read_text())
    assert saved["metrics"] == pytest.approx(m)
    assert len((tmp_path / "eval/humaneval_samples.jsonl").read_text().splitlines()) == 2

    other = Manifest.read(tmp_path / "tokens")
    Manifest(**{**other.__dict__, "tokenizer_fingerprint": "another"}).write(tmp_path / "tokens")
    with pytest.raises(ValueError, match="another tokenizer"):
        evaluate_checkpoint(EvalConfig(tasks=[]), checkpoint.path, tmp_path / "tokens", tmp_path / "eval2")
