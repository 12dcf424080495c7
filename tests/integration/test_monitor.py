"""`ownlm monitor --once` end to end on the debug preset: a champion registered and promoted through the
command line, new raw files dropped in a watched folder, and one cycle that evaluates the champion,
tests the new data for drift, runs the retraining loop (curate -> tokenize with the champion's
tokenizer -> train from its weights -> gate) and records what it did. Then `ownlm run` itself."""
from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from tests.pipeline.registry_fixtures import (
    python_like,
    python_modules,
    train_checkpoint,
    train_tokenizer,
    write_tokens,
)

pytestmark = pytest.mark.integration

SETTINGS = ["eval.tasks=[]", "tokenize.seq_len=32", "train.num_workers=1", "train.batch_size=8",
            "train.warmup_steps=2", "train.eval_every=10", "train.checkpoint_every=10", "train.eval_batches=2",
            "monitor.retrain=true", "monitor.retrain_after_docs=5", "monitor.retrain_steps=10"]


@pytest.fixture(scope="module")
def project(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("monitor")
    docs = python_like(600, seed=1)
    tok = train_tokenizer(root / "tok" / "tokenizer.json", docs)
    write_tokens(root / "tokens", tok, docs[:500], docs[500:])
    good = train_checkpoint(root / "ckpts" / "good", root / "tokens", 120)
    inbox = root / "inbox"
    inbox.mkdir()
    p = {"root": root, "inbox": inbox}
    assert ownlm(p, "register", "--model", str(good)) == 0
    assert ownlm(p, "promote", "--version", "1") == 0
    return p


def ownlm(project, *argv) -> int:
    sets = [x for s in SETTINGS for x in ("--set", s)]
    return main([*argv, "--config", "debug", "--root", str(project["root"]), *sets])


def checks(project) -> list[dict]:
    path = project["root"] / "monitor" / "checks.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_cycle_with_new_files_retrains_and_records_what_it_did(project):
    from pipeline.config import load_config
    from pipeline.tracking.registry import Registry

    (project["inbox"] / "new.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in python_modules(60, seed=5)))
    code = ownlm(project, "monitor", "--once", "--watch", str(project["inbox"]))
    line = checks(project)[-1]
    assert line["new_files"] == 1 and line["new_docs"] >= 5
    assert line["champion"] == 1 and "eval/perplexity" in line["metrics"]
    assert set(line["drift"]) >= {"ks_statistic", "p_value", "psi", "alarm"}
    assert line["action"] in ("promoted", "refused") and line["retrained_version"] == 2
    assert code == (3 if line["alert"] else 0)

    registry = Registry(load_config("debug", root=str(project["root"])))
    v2 = registry.version(number=2)
    for tag in ("ownlm.lineage.curated", "ownlm.lineage.tokens", "ownlm.lineage.train", "ownlm.train_run_id"):
        assert v2.tags[tag] != "unknown", tag
    assert v2.tags["ownlm.retrained_from"] == f"models:/{registry.name}/1"
    assert v2.tags["ownlm.lineage.tokenizer"] == registry.version(number=1).tags["ownlm.lineage.tokenizer"]
    champion = registry.alias("champion").number
    assert champion == (2 if line["action"] == "promoted" else 1)
    assert (project["root"] / "monitor" / "history.png").stat().st_size > 0
    assert "<table>" in (project["root"] / "monitor" / "history.html").read_text()

    # the next cycle has nothing new: no retraining, and the same files are not new again
    code = ownlm(project, "monitor", "--once", "--watch", str(project["inbox"]))
    again = checks(project)[-1]
    assert again["new_files"] == 0 and again["drift"] is None and again["action"] in ("none", "alert")
    assert code == (3 if again["alert"] else 0)


def test_a_cycle_under_an_s3_root_keeps_its_records_in_the_bucket(project, s3_server):
    """`ownlm monitor --once --root s3://...` (the project's MLflow store, its tokens, a watched glob
    on S3 that nothing matches yet): the cycle evaluates the champion and writes its state, checks
    and history in the bucket."""
    import uuid

    from pipeline import storage
    from tests.s3server import BUCKET

    root = f"s3://{BUCKET}/monitor-{uuid.uuid4().hex[:8]}"
    sets = [x for s in SETTINGS for x in ("--set", s)]
    code = main(["monitor", "--once", "--config", "debug", "--root", root, *sets,
                 "--set", f"tracking.uri=sqlite:///{project['root'] / 'mlflow.db'}",
                 "--data", str(project["root"] / "tokens"), "--watch", f"{root}/inbox/*.jsonl"])
    folder = storage.resolve(root) / "monitor"
    line = json.loads((folder / "checks.jsonl").read_text().splitlines()[-1])
    assert code == (3 if line["alert"] else 0)
    assert line["new_files"] == 0 and "eval/perplexity" in line["metrics"]
    assert json.loads((folder / "state.json").read_text())["cycles"] == 1
    assert (folder / "history.png").is_file() and (folder / "history.html").is_file()
