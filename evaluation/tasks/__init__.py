"""Bundled lm-eval tasks: YAML templates plus their local data files.

lm-eval reads a local data set through `dataset_path: json` with `data_files`, and those
paths must be absolute, which a packaged file cannot know in advance. So each `*.yaml` here
names its data files relative to this folder, and `include_path()` writes resolved copies
into a private temporary folder that `lm_eval.tasks.TaskManager(include_path=...)` indexes.

`benchmarks/` holds small files written for this project in the schemas and folder layouts of
the benchmark data sets lm-eval's own tasks read (MMLU, ARC, HellaSwag, GPQA, MATH): a data
folder for tests and the demo (`ownlm eval --data-dir bundled --tasks arc_easy,...`); see
evaluation/benchmarks.py.
"""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import yaml

from model.errors import MissingInput

TASKS_DIR = Path(__file__).resolve().parent
BENCHMARK_SAMPLES = TASKS_DIR / "benchmarks"


def _templates() -> list[Path]:
    return sorted(TASKS_DIR.glob("*.yaml"))


def bundled_tasks() -> list[str]:
    """Names of the tasks shipped with ownlm (the `task:` key of each template)."""
    return [yaml.safe_load(p.read_text())["task"] for p in _templates()]


def resolve_template(template: Path, data_dir: Path = TASKS_DIR) -> dict:
    """The task config of one template with every relative data file made absolute."""
    cfg = yaml.safe_load(template.read_text())
    files = (cfg.get("dataset_kwargs") or {}).get("data_files") or {}
    for split, name in files.items():
        path = Path(name)
        if not path.is_absolute():
            path = data_dir / path
        if not path.is_file():
            raise MissingInput(f"task {cfg.get('task')!r}: data file {path} is missing")
        files[split] = str(path)
    return cfg


@functools.cache
def include_path() -> str:
    """A folder holding the resolved YAML of every bundled task (written once per process)."""
    out = Path(tempfile.mkdtemp(prefix="ownlm-tasks-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    for template in _templates():
        cfg = resolve_template(template)
        (out / template.name).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(out)
