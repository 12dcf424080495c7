"""The curate stage on Ray Data: sources -> read -> normalize -> quality -> pii -> dedup -> shards.

One lazy dataset flows from the readers to the writer; rejected rows travel with the kept
ones (their `reason` set) so that every input row ends up either in the output or in
`rejects/`, and the report is summed from the same rows the writer writes. The caller
owns Ray (`ray.init`); this module only builds and runs datasets.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import Config, SourceConfig
from pipeline.curate.config import CurateConfig
from pipeline.curate.dedup import exact_dedup, shuffle_partitions
from pipeline.curate.filters import QualityFilter
from pipeline.curate.normalize import normalize_batch
from pipeline.curate.output import replace_dir, staging_dir, write_shards
from pipeline.curate.pii import RedactPII
from pipeline.curate.readers import read_source
from pipeline.curate.records import KEPT, OUTPUT_COLUMNS, REJECT_COLUMNS, CurateError
from pipeline.curate.report import Tally, build_report, mark_step
from pipeline.curate.sources import list_source
from pipeline.layout import Layout

__all__ = ["run_curate", "CurateError", "batch_steps"]



@dataclass(frozen=True)
class Tracked:
    """A batch step followed by the report's bookkeeping for it (`report.mark_step`)."""

    name: str
    fn: Callable[[pa.Table], pa.Table] | None = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.fn is not None:
            batch = self.fn(batch)
        return mark_step(batch, self.name)


def batch_steps(cfg: CurateConfig) -> list[tuple[str, Callable[[pa.Table], pa.Table]]]:
    """The per-batch steps switched on in `cfg`, in order (dedup, which needs a shuffle, comes after)."""
    steps = []
    if cfg.normalize:
        steps.append(("normalize", normalize_batch))
    if cfg.quality.enabled:
        steps.append(("quality", QualityFilter(cfg.quality)))
    if cfg.pii.enabled and (cfg.pii.emails or cfg.pii.phones):
        steps.append(("pii", RedactPII(cfg.pii)))
    return steps


def run_curate(cfg: Config, output_dir: Path, inputs: list[SourceConfig] | None = None) -> dict:
    """Curate `inputs` (default: `cfg.data.sources`) into `output_dir`; returns the report.

    Writes `part-*.parquet` (id, text, source, kind, meta), `rejects/part-*.parquet` (the same
    plus reason) and `report.json`, built in a staging folder and swapped in at the end, so a
    rerun replaces the previous output whole. Raises CurateError for a missing or empty source.
    """
    start = time.perf_counter()
    c = cfg.curate
    sources = list(cfg.data.sources if inputs is None else inputs)
    if not sources:
        raise CurateError("no sources to curate: add some under data.sources")
    layout = Layout(cfg.root)
    files = [list_source(src, layout) for src in sources]  # fails fast, before any Ray work

    parts = [read_source(src, f, c.read) for src, f in zip(sources, files)]
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    steps = ["read"]
    ds = ds.map_batches(Tracked("read"), batch_format="pyarrow")
    for name, fn in batch_steps(c):
        ds = ds.map_batches(Tracked(name, fn), batch_format="pyarrow")
        steps.append(name)
    if c.dedup.exact:
        input_bytes = sum(sum(f.sizes) for f in files)
        ds = exact_dedup(ds, num_partitions=shuffle_partitions(input_bytes, _cluster_cpus()))
        ds = ds.map_batches(Tracked("dedup"), batch_format="pyarrow")
        steps.append("dedup")
    output_dir = Path(output_dir)
    tmp = staging_dir(output_dir)
    try:
        tally = Tally(steps)
        kept, rejected = [], []
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            tally.add(batch)
            keep = pc.equal(batch["reason"], KEPT)
            kept.append(batch.filter(keep).select(OUTPUT_COLUMNS))
            rejected.append(batch.filter(pc.invert(keep)).select(REJECT_COLUMNS))
        # Sorting on the driver makes the shards the same from run to run whatever order the
        # blocks arrive in, and costs no shuffle; it holds the curated corpus in driver memory,
        # which is right up to a few GB. Past that: `ds.sort("id")` and `write_parquet` from
        # the workers (with a filename provider), at the price of a second shuffle.
        output = write_shards(kept, tmp, c.rows_per_shard)
        rejects = write_shards(rejected, tmp / "rejects", c.rows_per_shard)
        output["path"], rejects["path"] = str(output_dir), str(output_dir / "rejects")
        _check_counts(tally, sources, files, output)
        described = [{"name": s.name, "format": s.format, "kind": s.kind, "path": s.path,
                      "files": len(f.paths), "files_ignored": f.ignored} for s, f in zip(sources, files)]
        report = build_report(tally, described, output, rejects, time.perf_counter() - start)
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, output_dir)
    return report


def _check_counts(tally: Tally, sources: list[SourceConfig], files, output: dict) -> None:
    docs = tally.docs_by_source()
    for src, f in zip(sources, files):
        if not docs.get(src.name):
            raise CurateError(f"source {src.name!r} ({src.format}): {len(f.paths)} file(s) under {src.path!r} "
                              f"hold no documents")
    if output["docs"] == 0:
        reasons: dict[str, int] = {}
        for (_, reason), c in tally.counts.items():
            reasons[reason] = reasons.get(reason, 0) + c["docs"]
        summary = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
        raise CurateError(f"curation kept no documents (rejected: {summary}); check curate.quality")


def _cluster_cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 1))
