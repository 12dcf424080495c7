"""The stage registry: every stage of the pipeline, in the order `ownlm run` runs them.

This tuple is the only list of stage names. The `ownlm` command builds one subcommand per
entry, `ownlm run` runs them in this order, `--from` offers their names, the fingerprints
follow their `upstream` and `sections`, and the storage layout is the union of their
`locations`. Adding a stage is its module (exporting `STAGE`) plus one line here
(docs/architecture.md, "Adding a stage").
"""
from __future__ import annotations

from pathlib import Path

from pipeline import evaluate, generate
from pipeline.curate import stage as curate
from pipeline.finetune import stage as finetune
from pipeline.layout import Layout, Location
from pipeline.registry import stage as register
from pipeline.sample import stage as sample
from pipeline.stage import Stage
from pipeline.storage import StoragePath, is_remote, resolve
from pipeline.tokenize import pack, tokenizer
from pipeline.train import stage as train
from pipeline.tune import stage as tune

STAGES: tuple[Stage, ...] = (
    sample.STAGE,
    curate.STAGE,
    tokenizer.STAGE,
    pack.STAGE,
    tune.STAGE,
    train.STAGE,
    finetune.STAGE,
    evaluate.STAGE,
    generate.STAGE,
    register.STAGE,
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
NAMES: tuple[str, ...] = tuple(BY_NAME)
LOCATIONS: tuple[Location, ...] = tuple(loc for s in STAGES for loc in s.locations)


def layout_for(root: str | StoragePath) -> Layout:
    """The storage layout under `root` (a folder or a storage URI): every registered stage's locations."""
    return Layout(resolve(root) if is_remote(root) else Path(root), LOCATIONS)


def problems(stages: tuple[Stage, ...] = STAGES) -> list[str]:
    """What is inconsistent in a registry (empty when it can run)."""
    out, seen = [], []
    names = [s.name for s in stages]
    locations = [loc.name for s in stages for loc in s.locations]
    out += [f"stage {n!r} is registered twice" for n in sorted({n for n in names if names.count(n) > 1})]
    out += [f"location {n!r} is declared twice" for n in sorted({n for n in locations if locations.count(n) > 1})]
    for s in stages:
        out += [f"stage {s.name!r}: upstream {u!r} is not a stage before it" for u in s.upstream if u not in seen]
        out += [f"stage {s.name!r}: output in unknown location {loc!r}" for loc, _ in s.outputs if loc not in locations]
        out += [f"stage {s.name!r}: {f.flag} moves unknown location {f.location!r}" for f in s.path_flags
                if f.location not in locations]
        seen.append(s.name)
    return out


_PROBLEMS = problems()
if _PROBLEMS:  # a broken registry is a bug of ours: fail at import, naming every problem
    raise RuntimeError("stage registry: " + "; ".join(_PROBLEMS))
