"""`<root>/state/<stage>.json`: the record a finished stage leaves (fingerprint, time, MLflow run id,
summary). The runner (run.py) writes and reads them to skip unchanged stages; the registry reads them
for a version's lineage (which curated data, tokenizer and tokens a model came from)."""
from __future__ import annotations

import json

from pipeline.layout import Layout
from pipeline.storage import StoragePath, write_text


class StageRecords:
    """`<root>/state/<stage>.json`: what a finished stage was run with, and its summary."""

    def __init__(self, layout: Layout):
        self.dir = layout.state

    def path(self, stage: str) -> StoragePath:
        return self.dir / f"{stage}.json"

    def read(self, stage: str) -> dict | None:
        p = self.path(stage)
        return json.loads(p.read_text()) if p.is_file() else None

    def write(self, stage: str, record: dict) -> None:
        write_text(self.path(stage), json.dumps(record, indent=2, default=str))

    def clear(self, stage: str) -> None:
        self.path(stage).unlink(missing_ok=True)
