"""`ownlm run` end to end with the debug preset on the bundled sample, tracked in MLflow, then rerun."""
import json

import pytest

from pipeline.config import load_config
from pipeline.run import run_pipeline, stages_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def first_run(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    cfg = load_config("debug", root=str(root))
    return cfg, run_pipeline(cfg)


def test_every_stage_runs_and_leaves_its_outputs(first_run):
    cfg, result = first_run
    # tune and finetune are off in the debug preset; every stage it enables runs
    assert result["ran"] == stages_for(cfg)
    assert {"tune", "finetune"}.isdisjoint(result["ran"])
    root = cfg.root
    report = json.loads((root / "curated" / "report.json").read_text())
    assert report["output"]["docs"] > 300
    assert {"exact_duplicate", "malformed_json", "too_short"} <= set(report["rejects"])
    assert (root / "tokenizer" / "tokenizer.json").is_file()
    manifest = json.loads((root / "tokens" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["tokens"] > 100_000
    assert (root / "model" / "model.safetensors").is_file()
    metrics = json.loads((root / "eval" / "results.json").read_text())["metrics"]
    # even 40 steps of the debug model beat a unigram model of the same data
    assert metrics["eval/val_loss"] < metrics["eval/unigram_loss"]
    assert 0.0 <= metrics["eval/ownlm_pyfacts/acc"] <= 1.0
    assert (root / "eval" / "sample.txt").read_text().startswith(cfg.generate.prompt)
    assert result["mlflow_ui"] == f"mlflow ui --backend-store-uri sqlite:///{root / 'mlflow.db'}"
    # the trained model is registered with its lineage and, the first version, promoted through the gate
    from pipeline.tracking.registry import Registry

    registry = Registry(cfg)
    (version,) = registry.versions()
    assert version.aliases == ("champion",)
    assert version.tags["ownlm.lineage.tokens"] == json.loads((root / "state" / "tokenize.json").read_text())[
        "fingerprint"]
    assert version.tags["ownlm.train_parent_run_id"] != "unknown"


def test_mlflow_has_a_parent_run_with_a_nested_run_per_stage(first_run):
    from mlflow import MlflowClient

    cfg, _ = first_run
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("ownlm.stage") == "run"]
    assert len(parents) == 1
    parent = parents[0]
    children = {r.data.tags["ownlm.stage"]: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == set(stages_for(cfg))
    assert parent.data.params["train.max_steps"] == str(cfg.train.max_steps)
    assert parent.data.params["model.preset"] == "debug"
    train = children["train"]
    history = client.get_metric_history(train.info.run_id, "train/loss")
    assert [m.step for m in history] == list(range(10, cfg.train.max_steps + 1, 10))
    assert history[-1].value < history[0].value
    assert "val/loss" in train.data.metrics and train.data.metrics["train/tokens_per_s"] > 0
    assert "eval/ownlm_pyfacts/acc" in children["eval"].data.metrics
    assert "eval/perplexity" in parent.data.metrics  # headline numbers on the parent too
    assert children["curate"].data.metrics["curate/rejects/exact_duplicate"] >= 1

    def artifacts(run, path=None):
        return {a.path for a in client.list_artifacts(run.info.run_id, path)}

    assert "curate/report.json" in artifacts(children["curate"], "curate")
    assert "tokenizer/tokenizer.json" in artifacts(children["tokenizer"], "tokenizer")
    assert "checkpoint/model.safetensors" in artifacts(train, "checkpoint")
    assert "eval/results.json" in artifacts(children["eval"], "eval")
    assert "generate/sample.txt" in artifacts(children["generate"], "generate")
    assert children["tokenize"].data.tags["ownlm.input.tokenizer"] == children["tokenizer"].data.tags[
        "ownlm.fingerprint"]


def test_rerun_skips_unchanged_stages_and_from_forces_the_rest(first_run):
    cfg, _ = first_run
    assert run_pipeline(cfg)["ran"] == []
    assert run_pipeline(cfg, from_stage="eval")["ran"] == ["eval", "generate", "register"]
    changed = load_config("debug", ["generate.max_new_tokens=8"], root=str(cfg.root))
    assert run_pipeline(changed)["ran"] == ["generate"]


def test_run_with_finetune_data_fine_tunes_between_train_and_eval_and_scores_the_task(first_run):
    """`ownlm run` with finetune.data set: the finetune stage runs after train (not rerun) and
    before eval, which evaluates the fine-tuned model and scores finetune.eval_file."""
    from tests.pipeline.finetune_task import TEMPLATE, write_task

    cfg, _ = first_run
    train, test = write_task(cfg.root / "task", n_train=40, n_test=8)
    tuned = load_config("debug", [f"finetune.data={train}", f"finetune.eval_file={test}", "finetune.max_steps=4",
                                  "finetune.batch_size=2", "finetune.eval_every=4", "finetune.checkpoint_every=4"],
                        values={"finetune.template": TEMPLATE}, root=str(cfg.root))
    ran = run_pipeline(tuned)["ran"]
    assert "train" not in ran and ran[:2] == ["finetune", "eval"]
    assert (cfg.root / "finetuned" / "config.json").is_file()
    metrics = json.loads((cfg.root / "eval" / "results.json").read_text())["metrics"]
    assert 0.0 <= metrics["task/tickets_test/acc"] <= 1.0 and "task/tickets_test/exact_match" in metrics
