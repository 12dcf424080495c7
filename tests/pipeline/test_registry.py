"""The model registry, the promotion gate and `models:/` URIs, through the `ownlm` command line on a real
MLflow store (SQLite under tmp_path) and real checkpoints: the debug model trained by a plain torch loop
for many steps (better) or a handful (worse) on the same packed tokens. No Ray."""
from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from tests.pipeline.registry_fixtures import python_like, train_checkpoint, train_tokenizer, write_tokens

NAME = "ownlm-debug"  # the debug preset's experiment, the default registered model name


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A storage root with packed tokens, and two checkpoints: good (120 steps) and worse (3 steps)."""
    root = tmp_path_factory.mktemp("registry")
    docs = python_like(600, seed=1)
    tok = train_tokenizer(root / "tok" / "tokenizer.json", docs)
    write_tokens(root / "tokens", tok, docs[:500], docs[500:])
    ckpts = {name: train_checkpoint(root / "ckpts" / name, root / "tokens", steps)
             for name, steps in (("good", 120), ("worse", 3))}
    return {"root": root, **ckpts}


def ownlm(project, *argv) -> int:
    # Perplexity alone as the benchmark keeps each evaluation to a second; lm-eval runs elsewhere.
    return main([*argv, "--config", "debug", "--root", str(project["root"]), "--set", "eval.tasks=[]"])


def registry(project):
    from pipeline.config import load_config
    from pipeline.tracking.registry import Registry

    return Registry(load_config("debug", root=str(project["root"])))


def champion(project) -> int | None:
    v = registry(project).alias("champion")
    return v.number if v else None


def promote_runs(project):
    from mlflow import MlflowClient

    from pipeline.config import load_config

    cfg = load_config("debug", root=str(project["root"]))
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`ownlm.stage` = 'promote'", order_by=["start_time DESC"])
    return client, runs


def test_register_records_lineage_and_the_checkpoint_loads_back(project):
    from model.checkpoint import load_model
    from pipeline.registry.lineage import file_sha256

    assert ownlm(project, "register", "--model", str(project["good"]), "--alias", "challenger") == 0
    v = registry(project).version(alias="challenger")
    assert v.number == 1
    assert v.tags["ownlm.checkpoint.sha256"] == file_sha256(project["good"] / "model.safetensors")
    assert len(v.tags["ownlm.config.sha256"]) == 64 and v.tags["ownlm.preset"] == "debug"
    for tag in ("ownlm.lineage.curated", "ownlm.lineage.tokenizer", "ownlm.lineage.tokens", "ownlm.train_run_id",
                "ownlm.code_commit", "ownlm.tokenizer_fingerprint"):
        assert tag in v.tags
    # a checkpoint from outside the root's pipeline: its stage lineage is unknown, not guessed
    assert v.tags["ownlm.lineage.curated"] == "unknown"

    from pipeline.config import load_config
    from pipeline.tracking.registry import resolve_checkpoint

    cfg = load_config("debug", root=str(project["root"]))
    local = resolve_checkpoint(cfg, f"models:/{NAME}@challenger")
    assert local == project["root"] / "registry" / NAME / "1"
    import torch

    a, _ = load_model(local)
    b, _ = load_model(project["good"])
    for (ka, ta), (kb, tb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(ta, tb)
    assert resolve_checkpoint(cfg, f"models:/{NAME}/1") == local  # by number: the same cached folder


def test_the_first_version_becomes_champion(project, capsys):
    assert ownlm(project, "promote", "--alias", "challenger") == 0
    assert champion(project) == 1
    out = capsys.readouterr().out
    assert "eval/perplexity" in out and "pass" in out
    v = registry(project).version(number=1)
    assert "challenger" not in v.aliases and v.tags["ownlm.promote_run_id"]


def test_a_version_is_an_mlflow_model_that_loads_offline_and_generates_as_ownlm_does(project):
    import mlflow.pyfunc

    from model.checkpoint import load_model, load_tokenizer
    from model.generate import generate_text
    from model.sampling import SamplingParams
    from pipeline.config import load_config

    cfg = load_config("debug", root=str(project["root"]))
    mlflow.set_tracking_uri(cfg.tracking_uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    model, _ = load_model(project["good"])
    expected = generate_text(model, load_tokenizer(project["good"]), "def ", SamplingParams(max_new_tokens=8))
    assert loaded.predict(["def "], params={"max_new_tokens": 8}) == [expected]


def test_generate_and_eval_load_the_champion_by_uri(project, capsys, tmp_path):
    from pipeline.config import load_config
    from pipeline.evaluate import evaluate_checkpoint

    assert ownlm(project, "generate", "--model", f"models:/{NAME}@champion", "--prompt", "def ",
                 "--set", "generate.max_new_tokens=8", "--set", "generate.temperature=0") == 0
    assert capsys.readouterr().out.startswith("def ")
    assert ownlm(project, "eval", "--model", f"models:/{NAME}@champion", "--data", str(project["root"] / "tokens"),
                 "--output", str(tmp_path / "eval")) == 0
    via_uri = json.loads((tmp_path / "eval" / "results.json").read_text())["metrics"]
    cfg = load_config("debug", ["eval.tasks=[]"], root=str(project["root"]))
    direct = evaluate_checkpoint(cfg.eval, project["good"], project["root"] / "tokens", tmp_path / "direct")
    assert via_uri["eval/perplexity"] == pytest.approx(direct["metrics"]["eval/perplexity"], rel=1e-6)


def test_a_worse_challenger_is_refused_with_exit_3_and_the_champion_stays(project, capsys):
    assert ownlm(project, "register", "--model", str(project["worse"]), "--alias", "challenger") == 0
    assert ownlm(project, "promote") == 3
    assert champion(project) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "refused" in out
    _, runs = promote_runs(project)
    decision = runs[0]
    assert decision.data.tags["ownlm.gate.decision"] == "refused"
    # both sides measured in that one run
    assert decision.data.metrics["candidate/eval/perplexity"] > decision.data.metrics["champion/eval/perplexity"]


def test_force_moves_the_champion_and_says_who_and_why(project):
    assert ownlm(project, "promote", "--version", "2", "--force", "--reason", "rollback drill") == 0
    assert champion(project) == 2
    _, runs = promote_runs(project)
    tags = runs[0].data.tags
    assert tags["ownlm.gate.decision"] == "forced"
    assert tags["ownlm.gate.force_reason"] == "rollback drill" and tags["ownlm.gate.forced_by"]


def test_a_better_challenger_is_promoted(project):
    # the good checkpoint again, as a new version: better than the (forced) worse champion
    assert ownlm(project, "register", "--model", str(project["good"]), "--alias", "challenger") == 0
    assert ownlm(project, "promote") == 0
    assert champion(project) == 3


@pytest.mark.parametrize("argv, message", [
    (["generate", "--model", f"models:/{NAME}@nope", "--prompt", "x"], "has no alias 'nope'"),
    (["eval", "--model", f"models:/{NAME}/99"], "has no version 99"),
    (["promote", "--alias", "nope"], "has no alias 'nope'"),
    (["generate", "--model", "models:/other@champion", "--prompt", "x"], "no registered model 'other'"),
    (["promote", "--version", "1", "--set", "gate.rules={eval/nope/acc: {min: 0.5}}"],
     "no configured evaluation reports: eval/nope/acc"),
    (["monitor", "--once", "--watch", "/nonexistent/inbox"], "/nonexistent/inbox does not exist"),
    (["monitor", "--once", "--every", "5m"], "one of --once, --every INTERVAL, --report"),
    (["monitor", "--every", "soon"], "--every soon"),
])
def test_bad_input_is_one_line_exit_2_and_moves_nothing(project, capsys, argv, message):
    before = [(v.number, v.aliases) for v in registry(project).versions()]
    assert ownlm(project, *argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert [(v.number, v.aliases) for v in registry(project).versions()] == before


def test_drift_is_quiet_on_the_training_distribution_and_alarms_on_shuffled_text(project):
    from evaluation.drift import drift
    from model.checkpoint import load_model, load_tokenizer
    from pipeline.monitor.drift import new_data_losses
    from pipeline.registry.reference import reference_losses
    from tests.pipeline.registry_fixtures import shuffled_characters

    model, _ = load_model(project["good"])
    tok = load_tokenizer(project["good"])
    ref = reference_losses(model, project["root"] / "tokens", 256)
    fresh = python_like(200, seed=7)  # new documents, same distribution
    same = drift(ref["losses"], new_data_losses(model, tok, fresh, ref["window_tokens"], 256))
    other = drift(ref["losses"], new_data_losses(model, tok, shuffled_characters(fresh, 3), ref["window_tokens"], 256))
    assert not same.alarm and same.ks_statistic < 0.2
    assert other.alarm and other.ks_statistic > 0.9 and other.current_mean > other.reference_mean
