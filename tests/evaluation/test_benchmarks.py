"""lm-eval's own benchmark tasks on local files: layouts, rewriting, the missing-data message."""
from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import pytest

from evaluation.benchmarks import (BENCHMARKS, MissingBenchmarkData, find_files, offline_task_manager_class,
                                   resolve_data_dir)
from evaluation.harness import run_lm_eval
from evaluation.tasks import BENCHMARK_SAMPLES

BENCH_TASKS = ["arc_easy", "arc_challenge", "hellaswag", "mmlu_high_school_computer_science",
               "gpqa_main_zeroshot", "hendrycks_math_algebra"]


def jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def manager(data_dir: Path, tasks: list[str]):
    return offline_task_manager_class([data_dir], tasks_hint=tasks)()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the network fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_lm_eval_own_benchmark_tasks_run_on_the_bundled_files(checkpoint, no_network):
    out = run_lm_eval(str(checkpoint.path), BENCH_TASKS, data_dir="bundled", batch_size=8,
                      gen_kwargs={"max_gen_toks": 8})
    m = out["metrics"]
    for task in BENCH_TASKS[:-1]:
        assert 0.0 <= m[f"eval/{task}/acc"] <= 1.0, task
    assert "eval/hendrycks_math_algebra/exact_match" in m
    # Every document of each bundled file was scored, and no other: the rows came from our files.
    samples = BENCHMARK_SAMPLES
    assert out["n-samples"]["arc_easy"]["effective"] == len(
        jsonl_rows(samples / "allenai/ai2_arc/ARC-Easy/test-00000-of-00001.jsonl"))
    assert out["n-samples"]["hellaswag"]["effective"] == len(
        jsonl_rows(samples / "Rowan/hellaswag/data/validation-00000-of-00001.jsonl"))
    assert out["n-samples"]["gpqa_main_zeroshot"]["effective"] == 4
    assert out["n-samples"]["hendrycks_math_algebra"]["effective"] == 2


def test_few_shot_examples_come_from_the_dev_split(checkpoint):
    out = run_lm_eval(str(checkpoint.path), ["mmlu_college_computer_science"], data_dir="bundled",
                      num_fewshot=2, limit=1, log_samples=True)
    prompt = out["samples"]["mmlu_college_computer_science"][0]["arguments"][0][0]  # (context, " A")
    dev = jsonl_rows(BENCHMARK_SAMPLES / "cais/mmlu/college_computer_science/dev-00000-of-00001.jsonl")
    assert dev[0]["question"] in prompt and dev[1]["question"] in prompt and dev[2]["question"] not in prompt
    assert prompt.startswith("The following are multiple choice questions (with answers) about college computer")


def task_docs(data_dir: Path, task: str) -> list[dict]:
    loaded = manager(data_dir, [task]).load([task])["tasks"][task]
    return [dict(d) for d in loaded.eval_docs]


def test_original_release_layouts_give_the_same_documents(tmp_path):
    """MMLU's CSV release, ARC's JSONL release and MATH's one-JSON-per-problem release are
    converted to the Hub schema: lm-eval's tasks see the same documents as from the Hub layout."""
    subject = "computer_security"
    hub = jsonl_rows(BENCHMARK_SAMPLES / f"cais/mmlu/{subject}/test-00000-of-00001.jsonl")
    csv_dir = tmp_path / "cais/mmlu/data/test"
    csv_dir.mkdir(parents=True)
    with (csv_dir / f"{subject}_test.csv").open("w", newline="") as f:
        csv.writer(f).writerows([[r["question"], *r["choices"], "ABCD"[r["answer"]]] for r in hub])

    arc = jsonl_rows(BENCHMARK_SAMPLES / "allenai/ai2_arc/ARC-Challenge/test-00000-of-00001.jsonl")
    arc_file = tmp_path / "ai2_arc/ARC-V1-Feb2018-2/ARC-Challenge/ARC-Challenge-Test.jsonl"
    arc_file.parent.mkdir(parents=True)
    arc_file.write_text("".join(json.dumps({
        "id": r["id"], "answerKey": r["answerKey"],
        "question": {"stem": r["question"], "choices": [{"text": t, "label": lab} for t, lab in
                                                         zip(r["choices"]["text"], r["choices"]["label"])]}}) + "\n"
        for r in arc))

    math = jsonl_rows(BENCHMARK_SAMPLES / "EleutherAI/hendrycks_math/geometry/test-00000-of-00001.jsonl")
    math_dir = tmp_path / "hendrycks_math/MATH/test/geometry"
    math_dir.mkdir(parents=True)
    for i, r in enumerate(math):
        (math_dir / f"{i}.json").write_text(json.dumps(r, indent=4))

    for task in (f"mmlu_{subject}", "arc_challenge", "hendrycks_math_geometry"):
        assert task_docs(tmp_path, task) == task_docs(BENCHMARK_SAMPLES, task), task


def test_missing_data_names_every_task_and_file_before_any_model_work(tmp_path, checkpoint):
    calls = []
    from evaluation.lm_eval_adapter import OwnLM

    lm = OwnLM.from_model(checkpoint.model, checkpoint.tokenizer)
    lm._loglikelihood_tokens = lambda *a, **k: calls.append(1)
    with pytest.raises(MissingBenchmarkData) as err:
        run_lm_eval(lm, ["arc_easy", "mmlu_anatomy", "gpqa_main_zeroshot"], data_dir=tmp_path)
    message = str(err.value)
    for expected in ("ARC (allenai/ai2_arc)", "arc_easy: test split", "ARC-Easy/test-*",
                     "MMLU (cais/mmlu)", "mmlu_anatomy", "anatomy/test-*", "data/test/anatomy_test.csv",
                     "GPQA (Idavidrein/gpqa)", "gpqa_main.csv", str(tmp_path / "allenai/ai2_arc"),
                     "huggingface-cli download cais/mmlu --repo-type dataset"):
        assert expected in message, expected
    assert calls == []


def test_a_group_lists_each_missing_member(tmp_path):
    (tmp_path / "cais/mmlu/anatomy").mkdir(parents=True)
    src = BENCHMARK_SAMPLES / "cais/mmlu/computer_security/test-00000-of-00001.jsonl"
    (tmp_path / "cais/mmlu/anatomy/test-00000-of-00001.jsonl").write_text(src.read_text())
    with pytest.raises(MissingBenchmarkData, match=r"MMLU \(cais/mmlu\) for 56 task\(s\)") as err:
        manager(tmp_path, ["mmlu"]).load(["mmlu"])
    assert "mmlu_anatomy:" not in str(err.value)  # the one subject present is not reported


def test_hub_cache_snapshots_are_searched(tmp_path, monkeypatch):
    import huggingface_hub.constants

    snapshot = tmp_path / "hub/datasets--allenai--ai2_arc/snapshots/0123abc/ARC-Easy"
    snapshot.mkdir(parents=True)
    src = BENCHMARK_SAMPLES / "allenai/ai2_arc/ARC-Easy/test-00000-of-00001.jsonl"
    (snapshot / "test-00000-of-00001.jsonl").write_text(src.read_text())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    found = find_files(BENCHMARKS["allenai/ai2_arc"], "ARC-Easy", ["test", "train"], "test", data_dirs=[])
    assert found is not None and found.files == {"test": [snapshot / "test-00000-of-00001.jsonl"]}
    assert found.builder == "json"


def test_data_dir_forms():
    assert resolve_data_dir("bundled") == BENCHMARK_SAMPLES
    assert resolve_data_dir(None) is None
    with pytest.raises(MissingBenchmarkData, match="not a folder"):
        resolve_data_dir("/no/such/folder")


def test_every_bundled_file_matches_its_benchmark_schema():
    expect = {"cais/mmlu": {"question", "subject", "choices", "answer"},
              "allenai/ai2_arc": {"id", "question", "choices", "answerKey"},
              "Rowan/hellaswag": {"ind", "activity_label", "ctx_a", "ctx_b", "ctx", "endings", "source_id",
                                  "split", "split_type", "label"},
              "EleutherAI/hendrycks_math": {"problem", "level", "type", "solution"}}
    for repo, keys in expect.items():
        files = sorted((BENCHMARK_SAMPLES / repo).rglob("*.jsonl"))
        assert files, repo
        for f in files:
            for row in jsonl_rows(f):
                assert set(row) == keys, (f, row)
    with (BENCHMARK_SAMPLES / "Idavidrein/gpqa/gpqa_main.csv").open() as f:
        header = next(csv.reader(f))
    assert {"Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
            "Incorrect Answer 3"} <= set(header)
