"""The pipeline with its storage root on a real S3-compatible server (moto's server mode): curate,
tokenizer, tokenize, train, eval and generate give the same outputs as on local disk, and every
file lands in the bucket."""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.config import load_config
from pipeline.run import run_pipeline
from tests.pipeline.curate.curate_inputs import mixed_corpus
from tests.s3server import BUCKET

pytestmark = pytest.mark.integration

DATA = ["curate", "tokenizer", "tokenize"]
STAGES = DATA + ["train", "eval", "generate"]
# One train worker and one tokenize actor: what is tested is where the files go, not parallelism.
SHORT = ["train.num_workers=1", "tokenize.concurrency=1", "train.max_steps=4", "train.warmup_steps=1",
         "train.log_every=2", "train.eval_every=2", "train.eval_batches=2", "train.checkpoint_every=2",
         "eval.max_batches=4", "eval.tasks=[]", "curate.rows_per_shard=40"]


def run_on(root: str, tracking: str, corpus, stages: list[str]) -> dict:
    raw = storage.resolve(root) / "raw" / "corpus.jsonl"
    storage.copy_file(corpus, raw)
    cfg = load_config("debug", SHORT + [f"tracking.uri={tracking}"], root=root, values={
        "data.sample": False,
        "data.sources": [{"name": "mixed", "kind": "auto", "format": "jsonl", "path": "{root}/raw/corpus.jsonl"}]})
    result = run_pipeline(cfg, only=stages)
    layout = result["layout"]
    curated = sorted(layout.curated.glob("part-*.parquet"), key=str)
    ids = [i for f in curated for i in storage.read_table(f, columns=["id"])["id"].to_pylist()]
    manifest = json.loads((layout.tokens / "manifest.json").read_text())
    return {"cfg": cfg, "result": result, "layout": layout, "ids": ids, "manifest": manifest,
            "report": json.loads((layout.curated / "report.json").read_text())}


@pytest.fixture(scope="module")
def both(ray_session, s3_server, tmp_path_factory):
    """The data stages on local disk, and the same corpus through every stage up to generate on S3
    (training twice would double the test's time; the model is checked against the local tokens)."""
    tmp = tmp_path_factory.mktemp("storage")
    mixed_corpus(tmp / "corpus.jsonl")
    # mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI, which a later config without
    # tracking.uri would take: the variable is put back as it was when this module is done.
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        local = run_on(str(tmp / "local"), f"sqlite:///{tmp / 'local-mlflow.db'}", tmp / "corpus.jsonl", DATA)
        remote = run_on(f"s3://{BUCKET}/runs/a", f"sqlite:///{tmp / 's3-mlflow.db'}", tmp / "corpus.jsonl", STAGES)
        yield local, remote
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def test_every_stage_ran(both):
    local, remote = both
    assert local["result"]["ran"] == DATA and remote["result"]["ran"] == STAGES


def test_curated_ids_and_token_counts_match_local_disk(both):
    local, remote = both
    assert remote["ids"] == local["ids"] and len(local["ids"]) > 20
    assert remote["report"]["output"]["docs"] == local["report"]["output"]["docs"]
    assert remote["report"]["rejects"] == local["report"]["rejects"]
    for split in ("train", "val"):
        for key in ("tokens", "rows", "documents", "files"):
            assert remote["manifest"]["splits"][split][key] == local["manifest"]["splits"][split][key]
    assert remote["manifest"]["tokenizer_fingerprint"] == local["manifest"]["tokenizer_fingerprint"]


def test_the_model_trained_on_s3_scores_like_on_local_tokens(both):
    """Eval read the S3 tokens and the S3 checkpoint: its figures equal those computed here from the
    local tokens and a local copy of the exported model."""
    from evaluation import perplexity
    from model.checkpoint import load_model
    from pipeline.evaluate import UNIGRAM_BATCH
    from pipeline.packed import PackedSplit

    local, remote = both
    metrics = json.loads((remote["layout"].eval / "results.json").read_text())["metrics"]
    tokens = local["layout"].tokens
    val, train = PackedSplit(tokens, "val"), PackedSplit(tokens, "train")
    assert metrics["eval/unigram_loss"] == pytest.approx(
        perplexity.unigram_loss(train.batches(UNIGRAM_BATCH), val.batches(UNIGRAM_BATCH), val.pad_id), rel=1e-9)
    model, _ = load_model(storage.local_copy(remote["layout"].model))
    model.eval()
    cfg = remote["cfg"].eval
    ppl = perplexity.perplexity(model, val.source_batches(cfg.batch_size, cfg.max_batches), val.pad_id)
    assert metrics["eval/val_loss"] == pytest.approx(perplexity.perplexity_metrics(ppl)["eval/val_loss"], rel=1e-5)
    sample = (remote["layout"].eval / "sample.txt").read_text()
    assert sample.startswith(remote["cfg"].generate.prompt)


def test_every_output_is_in_the_bucket(both):
    _, remote = both
    layout = remote["layout"]
    assert isinstance(layout.root, storage.RemotePath)
    for path in (layout.curated / "report.json", layout.tokenizer / "tokenizer.json", layout.tokens / "manifest.json",
                 layout.model / "model.safetensors", layout.model / "config.json", layout.eval / "results.json",
                 layout.eval / "sample.txt", layout.state / "train.json"):
        assert path.is_file(), path
    # Ray Train's run folder with its checkpoints is under the root too
    runs = [p.name for p in layout.train_runs.iterdir()]
    assert any(name.startswith("train-") for name in runs)
    # nothing half-published is left beside the outputs
    leftovers = [str(p) for p in layout.root.glob("**/.*tmp*")]
    assert leftovers == []
    # the curated shards are real Parquet files in the bucket
    fs, path = storage.filesystem(next(iter(layout.curated.glob("part-*.parquet"))))
    assert pq.ParquetFile(path, filesystem=fs).metadata.num_rows > 0


def test_a_rerun_on_s3_skips_every_stage_from_its_records(both):
    _, remote = both
    again = run_pipeline(remote["cfg"], only=STAGES)
    assert again["ran"] == []


def test_training_starts_from_a_checkpoint_on_s3(both, tmp_path):
    """train.init_from as an s3:// URI: the driver reads only its config.json, the worker fetches
    the weights into its own cache. With a learning rate of 1e-12 one step leaves them as they were,
    which random initial weights would not be."""
    from safetensors.torch import load_file
    from torch.testing import assert_close

    from pipeline.train.launch import run_train

    _, remote = both
    model_uri = str(remote["layout"].model)
    assert model_uri.startswith("s3://")
    cfg = remote["cfg"].model_copy(update={"train": remote["cfg"].train.model_copy(update={
        "init_from": model_uri, "max_steps": 1, "lr": 1e-12, "warmup_steps": 0, "eval_every": 1,
        "checkpoint_every": 1, "storage_path": None})})
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"enabled": False})})
    run_train(cfg, remote["layout"].tokens, tmp_path / "model", tmp_path / "runs", run_name="init-from-s3")
    before = load_file(storage.local_copy(remote["layout"].model) / "model.safetensors")
    after = load_file(tmp_path / "model" / "model.safetensors")
    assert before.keys() == after.keys()
    for name in before:
        assert_close(after[name], before[name], rtol=0, atol=1e-6)


def test_the_model_tools_take_a_checkpoint_uri(both, tmp_path):
    """`ownlm embed --model s3://...` gives the vectors of the checkpoint's local copy (chat and
    generate go through the same download)."""
    import numpy as np

    from pipeline.cli import main

    _, remote = both
    texts = tmp_path / "texts.txt"
    texts.write_text("def add(a, b):\n\nreturn a + b\n")
    uri, local = str(remote["layout"].model), storage.local_copy(remote["layout"].model)
    for model, out in ((uri, "remote.npy"), (str(local), "local.npy")):
        assert main(["embed", "--model", model, "--input", str(texts), "--output", str(tmp_path / out),
                     "--root", str(tmp_path)]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "remote.npy"), np.load(tmp_path / "local.npy"))
