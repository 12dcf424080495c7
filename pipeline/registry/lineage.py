"""The lineage a registered version carries as tags: where the model came from, so that any version
can be traced to the curated data, tokenizer and packed tokens (by content fingerprint), the config,
the code commit and the training run that made it."""
from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.config import Config, dump_config
from pipeline.layout import Layout
from pipeline.records import StageRecords
from pipeline.storage import StoragePath, local_copy
from pipeline.tracking import git_commit

UPSTREAM = {"curate": "ownlm.lineage.curated", "tokenizer": "ownlm.lineage.tokenizer",
            "tokenize": "ownlm.lineage.tokens", "train": "ownlm.lineage.train"}
"""Stage -> the tag holding its fingerprint."""
UNKNOWN = "unknown"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lineage_tags(cfg: Config, layout: Layout, checkpoint: StoragePath, parent_of=None) -> dict[str, str]:
    """Tags for a new version of the checkpoint. The stage fingerprints and the training run come from
    the stage records under the layout's root when the checkpoint is that root's trained model (for a
    checkpoint from elsewhere they are `unknown`, never guessed). `parent_of(run_id)` gives a run's
    parent run id (the `ownlm run` that trained it)."""
    from model.checkpoint import read_metadata  # torch

    local = local_copy(checkpoint)
    meta = read_metadata(local)
    tags = {"ownlm.checkpoint.sha256": file_sha256(local / "model.safetensors"),
            "ownlm.tokenizer_fingerprint": str(meta.get("tokenizer_fingerprint", UNKNOWN)),
            "ownlm.preset": str(meta.get("preset", UNKNOWN)),
            "ownlm.config.sha256": hashlib.sha256(dump_config(cfg).encode()).hexdigest(),
            "ownlm.code_commit": git_commit() or UNKNOWN,
            "ownlm.checkpoint.path": str(checkpoint)}
    ours = checkpoint.resolve() == layout.model.resolve()
    records = StageRecords(layout)
    for stage, tag in UPSTREAM.items():
        record = records.read(stage) if ours else None
        tags[tag] = str((record or {}).get("fingerprint") or UNKNOWN)
    train_run = ((records.read("train") or {}).get("mlflow_run_id") if ours else None) or UNKNOWN
    tags["ownlm.train_run_id"] = train_run
    parent = parent_of(train_run) if parent_of and train_run != UNKNOWN else None
    tags["ownlm.train_parent_run_id"] = parent or UNKNOWN
    return tags
