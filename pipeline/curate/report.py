"""What curation did, in numbers: the tallies behind `report.json`.

Every row carries, for each step it went through, the UTF-8 bytes of its text after that
step, or -1 once it has been rejected or before it existed (columns `_bytes_<step>`).
Summing those columns over the final rows gives documents and bytes kept after each step
without running the pipeline twice; a `Tally` does the summing batch by batch, each shard
task sums its own rows, and the driver merges the tallies (they are plain JSON).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config.curate import PII_KINDS
from pipeline.curate.langid import LANG_COLUMN
from pipeline.curate.pii import pii_column
from pipeline.curate.reasons import reject_cause
from pipeline.curate.records import BORN, KEPT, KIND_BY, KIND_BY_VALUES, RAW_BYTES, text_bytes

STEP_PREFIX = "_bytes_"


def bytes_column(step: str) -> str:
    return f"{STEP_PREFIX}{step}"


def mark_step(batch: pa.Table, step: str) -> pa.Table:
    """Record, after `step`, each row's text bytes if it is still kept, else -1."""
    kept = pc.equal(batch["reason"], KEPT)
    values = pc.if_else(kept, text_bytes(batch), pa.scalar(-1, pa.int64()))
    return batch.append_column(bytes_column(step), values)


@dataclass
class Tally:
    """Counts per (source, reason), per language, per step and per (source, kind, what gave the kind),
    summed over batches of final rows."""

    steps: list[str]
    counts: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    languages: dict[str, dict[str, int]] = field(default_factory=dict)
    kinds: dict[tuple[str, str, str], dict[str, int]] = field(default_factory=dict)

    def add(self, batch: pa.Table) -> None:
        if len(batch) == 0:
            return
        born = batch[BORN] if BORN in batch.column_names else pa.array(["read"] * len(batch))
        cols = {"rows": pa.array([1] * len(batch), pa.int64()),
                "docs": pc.cast(pc.equal(born, "read"), pa.int64()), "raw_bytes": batch[RAW_BYTES]}
        for step in self.steps:
            b = batch[bytes_column(step)]
            cols[f"docs_{step}"] = pc.cast(pc.greater_equal(b, 0), pa.int64())
            cols[f"bytes_{step}"] = pc.max_element_wise(b, pa.scalar(0, pa.int64()))
        for kind in PII_KINDS:
            if pii_column(kind) in batch.column_names:
                cols[f"pii_{kind}"] = pc.cast(batch[pii_column(kind)], pa.int64())
        table = pa.table({"source": batch["source"], "reason": batch["reason"], **cols})
        names = list(cols)
        grouped = table.group_by(["source", "reason"]).aggregate([(c, "sum") for c in names])
        for row in grouped.to_pylist():
            into = self.counts.setdefault((row["source"], row["reason"]), {})
            for c in names:
                into[c] = into.get(c, 0) + (row[f"{c}_sum"] or 0)
        kind_by = batch[KIND_BY] if KIND_BY in batch.column_names else pa.array(["source"] * len(batch))
        kinds = pa.table({"source": batch["source"], "kind": batch["kind"], "by": kind_by, "docs": cols["docs"],
                          "kept": pc.cast(pc.equal(batch["reason"], KEPT), pa.int64())})
        for row in kinds.group_by(["source", "kind", "by"]).aggregate([("docs", "sum"), ("kept", "sum")]).to_pylist():
            into = self.kinds.setdefault((row["source"], row["kind"], row["by"]), {"docs": 0, "kept": 0})
            into["docs"] += row["docs_sum"] or 0
            into["kept"] += row["kept_sum"] or 0
        if LANG_COLUMN in batch.column_names:
            pairs = Counter(zip(batch[LANG_COLUMN].to_pylist(), batch["reason"].to_pylist()))
            for (lang, reason), n in pairs.items():
                if lang is None:
                    continue
                into = self.languages.setdefault(lang, {"docs": 0, "kept": 0})
                into["docs"] += n
                into["kept"] += n if reason == KEPT else 0

    def merge(self, other: "Tally") -> None:
        for key, c in other.counts.items():
            into = self.counts.setdefault(key, {})
            for k, v in c.items():
                into[k] = into.get(k, 0) + v
        for lang, c in other.languages.items():
            into = self.languages.setdefault(lang, {"docs": 0, "kept": 0})
            into["docs"] += c["docs"]
            into["kept"] += c["kept"]
        for key, c in other.kinds.items():
            into = self.kinds.setdefault(key, {"docs": 0, "kept": 0})
            into["docs"] += c["docs"]
            into["kept"] += c["kept"]

    def to_json(self) -> dict:
        return {"steps": self.steps, "counts": [[s, r, c] for (s, r), c in self.counts.items()],
                "languages": self.languages, "kinds": [[s, k, b, c] for (s, k, b), c in self.kinds.items()]}

    @classmethod
    def from_json(cls, data: dict) -> "Tally":
        return cls(data["steps"], {(s, r): c for s, r, c in data["counts"]}, data["languages"],
                   {(s, k, b): c for s, k, b, c in data.get("kinds", [])})

    def kind_counts(self, source: str | None = None) -> dict[str, dict]:
        """Per kind: documents read, rows kept, and documents by what gave them the kind
        (`source`, `record`, `detected`), most documents first."""
        out: dict[str, dict] = {}
        for (s, kind, by), c in self.kinds.items():
            if source is not None and s != source:
                continue
            into = out.setdefault(kind, {"docs": 0, "kept": 0, "by": {b: 0 for b in KIND_BY_VALUES}})
            into["docs"] += c["docs"]
            into["kept"] += c["kept"]
            into["by"][by] = into["by"].get(by, 0) + c["docs"]
        return dict(sorted(out.items(), key=lambda kv: (-kv[1]["docs"], kv[0])))

    def total(self, key: str, source: str | None = None, reason: str | None = None) -> int:
        return sum(c.get(key, 0) for (s, r), c in self.counts.items()
                   if (source is None or s == source) and (reason is None or r == reason))

    def docs_by_source(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (source, _), c in self.counts.items():
            out[source] = out.get(source, 0) + c["rows"]
        return out


def build_report(tally: Tally, sources: list[dict], output: dict, rejects: dict, seconds: float,
                 **sections) -> dict:
    """The report: per source, per step, per reason (with the setting behind it), PII, languages, kinds
    (documents per kind, and how many of them the detector gave theirs), output, and any extra `sections`
    (dedup, decontamination, mixture, timing, shards). `sources` holds one dict per configured
    source (name, format, kind, path, files, files_ignored); `output`/`rejects` what the writer
    wrote (path, files, docs, bytes, file_bytes)."""
    total = tally.total
    per_source = {}
    last = tally.steps[-1]
    for src in sources:
        name = src["name"]
        per_source[name] = {**{k: v for k, v in src.items() if k != "name"},
                            "docs": total("docs", name), "bytes": total("raw_bytes", name),
                            "kept_docs": total("rows", name, KEPT), "kept_bytes": total(f"bytes_{last}", name),
                            "kinds": {k: c["docs"] for k, c in tally.kind_counts(name).items()}}
    steps = {step: {"docs": total(f"docs_{step}"), "bytes": total(f"bytes_{step}")} for step in tally.steps}
    steps["output"] = {"docs": output["docs"], "bytes": output["bytes"]}
    reasons = sorted({r for (_, r) in tally.counts if r != KEPT})
    return {
        "input": {"docs": total("docs"), "bytes": total("raw_bytes")},
        "sources": per_source,
        "steps": steps,
        "rejects": {r: total("rows", reason=r) for r in reasons},
        "rejects_by_source": {
            s["name"]: {r: n for r in reasons if (n := total("rows", s["name"], r))} for s in sources},
        "pii": {kind: total(f"pii_{kind}") for kind in PII_KINDS},
        "reject_causes": {r: reject_cause(r) for r in reasons},
        "languages": dict(sorted(tally.languages.items(), key=lambda kv: -kv[1]["docs"])),
        "kinds": tally.kind_counts(),
        **sections,
        "output": output,
        "rejected": rejects,
        "seconds": round(seconds, 2),
    }
