"""What curation did, in numbers: `report.json`.

Every row carries, for each step it went through, the UTF-8 bytes of its text after that
step, or -1 once it has been rejected (columns `_bytes_<step>`). Summing those columns
over the final rows gives documents and bytes kept after each step without running the
pipeline twice; `Tally` does the summing batch by batch as the writer streams the rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.curate.records import KEPT, RAW_BYTES, text_bytes

PII_COLUMNS = {"email": "pii_email", "phone": "pii_phone"}


def bytes_column(step: str) -> str:
    return f"_bytes_{step}"


def mark_step(batch: pa.Table, step: str) -> pa.Table:
    """Record, after `step`, each row's text bytes if it is still kept, else -1."""
    kept = pc.equal(batch["reason"], KEPT)
    values = pc.if_else(kept, text_bytes(batch), pa.scalar(-1, pa.int64()))
    return batch.append_column(bytes_column(step), values)


@dataclass
class Tally:
    """Counts per (source, reason), accumulated over batches of final rows."""

    steps: list[str]
    counts: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def add(self, batch: pa.Table) -> None:
        if len(batch) == 0:
            return
        cols = {"docs": pa.array([1] * len(batch), pa.int64()), "raw_bytes": batch[RAW_BYTES]}
        for step in self.steps:
            b = batch[bytes_column(step)]
            cols[f"docs_{step}"] = pc.cast(pc.greater_equal(b, 0), pa.int64())
            cols[f"bytes_{step}"] = pc.max_element_wise(b, pa.scalar(0, pa.int64()))
        for kind, col in PII_COLUMNS.items():
            if col in batch.column_names:
                cols[f"pii_{kind}"] = batch[col]
        table = pa.table({"source": batch["source"], "reason": batch["reason"], **cols})
        names = list(cols)
        grouped = table.group_by(["source", "reason"]).aggregate([(c, "sum") for c in names])
        for row in grouped.to_pylist():
            into = self.counts.setdefault((row["source"], row["reason"]), {})
            for c in names:
                into[c] = into.get(c, 0) + (row[f"{c}_sum"] or 0)

    def docs_by_source(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (source, _), c in self.counts.items():
            out[source] = out.get(source, 0) + c["docs"]
        return out


def build_report(tally: Tally, sources: list[dict], output: dict, rejects: dict, seconds: float) -> dict:
    """The report: per source, per step, per reason, PII, output. `sources` holds one dict per
    configured source (name, format, kind, path, files, files_ignored); `output`/`rejects`
    what the writer wrote (path, shards, docs, bytes, file_bytes)."""
    def total(key: str, source: str | None = None, reason: str | None = None) -> int:
        return sum(c.get(key, 0) for (s, r), c in tally.counts.items()
                   if (source is None or s == source) and (reason is None or r == reason))

    per_source = {}
    for src in sources:
        name = src["name"]
        per_source[name] = {**src, "docs": total("docs", name), "bytes": total("raw_bytes", name),
                            "kept_docs": total("docs", name, KEPT),
                            "kept_bytes": total(f"bytes_{tally.steps[-1]}", name)}
        per_source[name].pop("name")
    steps = {step: {"docs": total(f"docs_{step}"), "bytes": total(f"bytes_{step}")} for step in tally.steps}
    steps["output"] = {"docs": output["docs"], "bytes": output["bytes"]}
    reasons = sorted({r for (_, r) in tally.counts if r != KEPT})
    return {
        "input": {"docs": total("docs"), "bytes": total("raw_bytes")},
        "sources": per_source,
        "steps": steps,
        "rejects": {r: total("docs", reason=r) for r in reasons},
        "rejects_by_source": {
            s["name"]: {r: n for r in reasons if (n := total("docs", s["name"], r))} for s in sources},
        "pii": {kind: total(f"pii_{kind}") for kind in PII_COLUMNS},
        "output": output,
        "rejected": rejects,
        "seconds": round(seconds, 2),
    }
