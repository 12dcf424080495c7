"""The field's benchmarks through lm-eval's own task definitions, with data from local files.

lm-eval's tasks for MMLU, GPQA, MATH, ARC and HellaSwag name a Hugging Face Hub data set
(`dataset_path: cais/mmlu`, `dataset_name: anatomy`) and would download it. Here every such
task is built from its own YAML (prompts, metrics, few-shot settings unchanged), and only
where its rows come from is rewritten, before the task is constructed:

1. a local folder (`--data-dir DIR`) holding the data set in one of its own file layouts:
   the Hub repository as downloaded (`DIR/cais/mmlu/anatomy/test-00000-of-00001.parquet`),
   or the original release (`DIR/cais/mmlu/data/test/anatomy_test.csv`); the repository
   folder may also be named by the data set alone (`DIR/mmlu/...`);
2. a Hugging Face hub cache snapshot of that repository (`~/.cache/huggingface/hub`);
3. the `datasets` cache of an earlier `load_dataset` on this machine, read in offline mode.

Nothing is fetched: the Hub stays offline while tasks load, and a task whose files are found
in none of these places stops the run before any model work, with one message that names
every missing file pattern and where it was looked for.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import glob
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from evaluation.tasks import BENCHMARK_SAMPLES
from model.errors import InputError, MissingInput

log = logging.getLogger(__name__)

DATA_EXTENSIONS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
SPLIT_KEYS = ("test_split", "validation_split", "training_split", "fewshot_split")


class MissingBenchmarkData(MissingInput):
    """A benchmark's files are in none of the places searched; the message lists them."""


# ---------------------------------------------------------------- layouts


@dataclasses.dataclass(frozen=True)
class DatasetLayout:
    """One way a data set's files sit in its folder.

    patterns: split -> glob patterns relative to the repository folder, with `{name}` (the
    lm-eval `dataset_name`), `{split}` and `{alias}` (the split as the original release names
    it). `read` turns one file into raw rows and `convert` a raw row into the Hub schema that
    lm-eval's task expects; without them files are read by `datasets` from their extension.
    """

    description: str
    patterns: tuple[str, ...]
    aliases: tuple[tuple[str, str], ...] = ()
    read: Callable[[Path], Iterable[dict]] | None = None
    convert: Callable[[dict, str | None], dict] | None = None

    def alias(self, split: str) -> str:
        return dict(self.aliases).get(split, split)

    def expand(self, name: str | None, split: str) -> list[str]:
        out = []
        for pattern in self.patterns:
            if "{name}" in pattern and not name:
                continue
            out.append(pattern.format(name=name or "", split=split, alias=self.alias(split),
                                      Alias=self.alias(split).capitalize()))
        return out

    def files(self, root: Path, name: str | None, split: str) -> list[Path]:
        """The data files of one split under root (the first pattern that matches wins)."""
        for pattern in self.expand(name, split):
            hits = sorted(Path(p) for p in glob.glob(str(root / pattern)))
            hits = [p for p in hits if p.is_file() and p.suffix in DATA_EXTENSIONS]
            if hits:
                return hits
        return []


def hub_layout(*patterns: str) -> DatasetLayout:
    """The Hub repository's own layout (also the parquet export's `{name}/{split}/0000.parquet`)."""
    extra = ("{name}/{split}-*", "{name}/{split}/*", "{name}/{split}.*")
    return DatasetLayout("the Hugging Face Hub repository", tuple(patterns) + extra)


def _read_csv_rows(columns: tuple[str, ...]) -> Callable[[Path], Iterator[dict]]:
    def read(path: Path) -> Iterator[dict]:
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                if row:
                    yield dict(zip(columns, row))
    return read


def _read_jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _read_json_object(path: Path) -> Iterator[dict]:
    yield json.loads(path.read_text(encoding="utf-8"))


def _mmlu_row(row: dict, name: str | None) -> dict:
    return {"question": row["question"], "subject": name or "", "choices": [row[k] for k in "ABCD"],
            "answer": "ABCD".index(row["answer"].strip())}


def _arc_row(row: dict, name: str | None) -> dict:
    q = row["question"]
    return {"id": row["id"], "question": q["stem"],
            "choices": {"text": [c["text"] for c in q["choices"]], "label": [c["label"] for c in q["choices"]]},
            "answerKey": row["answerKey"]}


def _math_row(row: dict, name: str | None) -> dict:
    return {k: row[k] for k in ("problem", "level", "type", "solution")}


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A Hub data set that lm-eval tasks read, and the layouts its files may come in."""

    repo: str
    title: str
    layouts: tuple[DatasetLayout, ...]
    example: str
    """One file, relative to the repository folder, shown in the missing-data message."""

    def folders(self, data_dirs: Iterable[Path]) -> list[Path]:
        """Where this data set's repository folder may be: DIR/<org>/<name>, DIR/<name>, hub cache."""
        out = []
        for d in data_dirs:
            out += [Path(d) / self.repo, Path(d) / self.repo.split("/")[-1]]
        return out + hub_snapshots(self.repo)


BENCHMARKS: dict[str, Benchmark] = {b.repo: b for b in [
    Benchmark("cais/mmlu", "MMLU", (
        hub_layout(),
        DatasetLayout("the original release (data.tar)", ("data/{alias}/{name}_{alias}.csv", "{alias}/{name}_{alias}.csv"),
               aliases=(("validation", "val"),),
               read=_read_csv_rows(("question", "A", "B", "C", "D", "answer")), convert=_mmlu_row),
    ), example="{name}/test-00000-of-00001.parquet"),
    Benchmark("allenai/ai2_arc", "ARC", (
        hub_layout(),
        DatasetLayout("the original release (ARC-V1-Feb2018)", (
            "ARC-V1-Feb2018-2/{name}/{name}-{Alias}.jsonl", "{name}/{name}-{Alias}.jsonl"),
            aliases=(("validation", "dev"),), read=_read_jsonl, convert=_arc_row),
    ), example="{name}/test-00000-of-00001.parquet"),
    Benchmark("Rowan/hellaswag", "HellaSwag", (
        hub_layout("data/{split}-*", "{split}-*"),
        DatasetLayout("the original release (github rowanz/hellaswag)", ("data/hellaswag_{alias}.jsonl",
                                                                   "hellaswag_{alias}.jsonl"),
               aliases=(("validation", "val"),)),
    ), example="data/validation-00000-of-00001.parquet"),
    Benchmark("Idavidrein/gpqa", "GPQA", (
        DatasetLayout("the Hugging Face Hub repository", ("{name}.csv",)),
        DatasetLayout("the original release (dataset.zip)", ("dataset/{name}.csv",)),
    ), example="{name}.csv"),
    Benchmark("EleutherAI/hendrycks_math", "MATH", (
        hub_layout(),
        DatasetLayout("the original release (MATH.tar)", ("MATH/{split}/{name}/*.json", "{split}/{name}/*.json"),
               read=_read_json_object, convert=_math_row),
    ), example="{name}/test-00000-of-00001.parquet"),
    Benchmark("HuggingFaceH4/MATH-500", "MATH-500", (
        hub_layout("{split}.jsonl", "{split}-*"),
    ), example="test.jsonl"),
]}


def hub_snapshots(repo: str) -> list[Path]:
    """Snapshot folders of a data set repository in the local Hugging Face hub cache."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover - huggingface_hub comes with datasets
        return []
    base = Path(HF_HUB_CACHE) / f"datasets--{repo.replace('/', '--')}" / "snapshots"
    return sorted(p for p in base.glob("*") if p.is_dir()) if base.is_dir() else []


# ---------------------------------------------------------------- finding a task's files


@dataclasses.dataclass
class Found:
    """Where one task's splits were found."""

    layout: DatasetLayout
    files: dict[str, list[Path]]  # split -> files
    name: str | None

    @property
    def builder(self) -> str:
        kinds = {DATA_EXTENSIONS[f.suffix] for fs in self.files.values() for f in fs}
        if len(kinds) != 1:
            raise InputError(f"mixed file types for one data set: {sorted(kinds)}")
        return kinds.pop()


def task_splits(cfg: dict) -> tuple[str, list[str]]:
    """(the split lm-eval scores, every split the config names)."""
    named = [cfg[k] for k in SPLIT_KEYS if cfg.get(k)]
    scored = cfg.get("test_split") or cfg.get("validation_split")
    if not scored:
        raise InputError(f"task {cfg.get('task')!r} names neither a test nor a validation split")
    return scored, list(dict.fromkeys(named))


def find_files(bench: Benchmark, name: str | None, splits: list[str], required: str,
               data_dirs: Iterable[Path]) -> Found | None:
    """The first folder and layout that hold the required split (plus whichever others exist)."""
    for folder in bench.folders(data_dirs):
        if not folder.is_dir():
            continue
        for layout in bench.layouts:
            files = {s: layout.files(folder, name, s) for s in splits}
            if files.get(required):
                return Found(layout, {s: f for s, f in files.items() if f}, name)
    return None


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Hugging Face Hub and `datasets` in offline mode (env and the already-imported constants)."""
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    patched = []
    for module, attr in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE")):
        with contextlib.suppress(ImportError, AttributeError):
            mod = __import__(module, fromlist=[attr])
            patched.append((mod, attr, getattr(mod, attr)))
            setattr(mod, attr, True)
    os.environ.update({k: "1" for k in saved_env})
    try:
        yield
    finally:
        for mod, attr, value in patched:
            setattr(mod, attr, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def in_datasets_cache(repo: str, name: str | None) -> bool:
    """Whether `datasets` can load this data set from its own cache without the network."""
    import datasets

    cached = Path(datasets.config.HF_DATASETS_CACHE) / repo.replace("/", "___")
    if not cached.is_dir():  # what `datasets` writes for a data set it has loaded before
        return False
    with hub_offline(), contextlib.suppress(Exception):
        datasets.load_dataset(repo, name)
        return True
    return False


# ---------------------------------------------------------------- rewriting task configs


def load_converted(found: Found, **_metadata) -> "datasets.DatasetDict":
    """A DatasetDict from a layout whose rows need converting to the Hub schema.

    lm-eval calls a task's `custom_dataset` with the task's metadata as keyword arguments."""
    import datasets

    layout = found.layout
    splits = {}
    for split, files in found.files.items():
        rows = [layout.convert(raw, found.name) for f in files for raw in layout.read(f)]
        splits[split] = datasets.Dataset.from_list(rows)
    return datasets.DatasetDict(splits)


def rewrite_config(cfg: dict, data_dirs: list[Path]) -> dict:
    """A task config whose rows come from local files (unchanged when it reads no known data set,
    or when its files are absent and `datasets`' offline cache will serve it)."""
    bench = BENCHMARKS.get(cfg.get("dataset_path"))
    if bench is None or not isinstance(cfg.get("task"), str):
        return cfg
    scored, splits = task_splits(cfg)
    name = cfg.get("dataset_name")
    found = find_files(bench, name, splits, scored, data_dirs)
    if found is None:
        return cfg
    cfg = dict(cfg)
    for key in SPLIT_KEYS:  # splits the folder lacks (a train split for few-shot, say) are dropped
        if cfg.get(key) and cfg[key] not in found.files:
            cfg[key] = None
    if found.layout.convert is not None:
        import functools

        cfg["custom_dataset"] = functools.partial(load_converted, found)
        cfg["dataset_kwargs"] = {}
    else:
        cfg["dataset_path"] = found.builder
        cfg["dataset_name"] = None
        cfg["dataset_kwargs"] = {"data_files": {s: [str(f) for f in fs] for s, fs in found.files.items()}}
    log.info("%s: %s from %s", cfg["task"], bench.title, ", ".join(str(f) for fs in found.files.values() for f in fs[:1]))
    return cfg


def check_available(configs: list[dict], data_dirs: list[Path]) -> None:
    """Raise MissingBenchmarkData naming every task whose data is nowhere to be found."""
    missing: dict[str, list[tuple[str, str, str | None]]] = {}
    for cfg in configs:
        bench = BENCHMARKS.get(cfg.get("dataset_path"))
        if bench is None:
            continue
        scored, splits = task_splits(cfg)
        name = cfg.get("dataset_name")
        if find_files(bench, name, splits, scored, data_dirs) is None and not in_datasets_cache(bench.repo, name):
            missing.setdefault(bench.repo, []).append((cfg["task"], scored, name))
    if missing:
        raise MissingBenchmarkData(missing_message(missing, data_dirs))


def missing_message(missing: dict[str, list[tuple[str, str, str | None]]], data_dirs: list[Path]) -> str:
    lines = ["benchmark data not found (nothing is downloaded; put the files in a folder and pass --data-dir):"]
    for repo, tasks in missing.items():
        bench = BENCHMARKS[repo]
        where = ", ".join(str(p) for p in bench.folders(data_dirs)) or "(no --data-dir given)"
        lines.append(f"  {bench.title} ({repo}) for {len(tasks)} task(s); looked in: {where}, "
                     "and the `datasets` cache")
        shown = tasks[:8]
        for task, split, name in shown:
            options = " or ".join(f"{p}" for layout in bench.layouts for p in layout.expand(name, split)[:1])
            lines.append(f"    - {task}: {split} split, e.g. {options}")
        if len(tasks) > len(shown):
            lines.append(f"    - ... and {len(tasks) - len(shown)} more task(s) of {bench.title}")
        example = bench.example.format(name=tasks[0][2] or "")
        lines.append(f"    on a connected machine: `huggingface-cli download {repo} --repo-type dataset "
                     f"--local-dir DATA_DIR/{repo}` (gives DATA_DIR/{repo}/{example}), then copy DATA_DIR here")
    return "\n".join(lines)


# ---------------------------------------------------------------- lm-eval task manager


def leaf_configs(manager, names: list[str]) -> list[dict]:
    """The (include-resolved, functions unresolved) configs of every task a list of names
    expands to: groups and tags are walked down to their tasks."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    index = manager.task_index
    out, seen = [], set()

    def visit(item, overrides: dict):
        if isinstance(item, dict):
            if "group" in item and item["group"] not in index:
                for child in item.get("task") or []:
                    visit(child, overrides)
                return
            name = item.get("task") if "task" in item else item.get("group")
            overrides = {**overrides, **{k: v for k, v in item.items() if k not in ("task", "group")}}
            item = name
        if not isinstance(item, str) or item in seen:
            return
        seen.add(item)
        entry = index.get(item)
        if entry is None:
            if Path(item).is_file():
                cfg = load_yaml(item, resolve_func=False)
                out.append({**cfg, **overrides})
            return
        if entry.kind == Kind.TAG:
            for child in sorted(entry.tags):
                visit(child, overrides)
        elif entry.kind == Kind.GROUP:
            cfg = entry.cfg or load_yaml(entry.yaml_path, resolve_func=False)
            group_overrides = {k: v for k, v in cfg.items()
                               if k not in ("group", "task", "aggregate_metric_list", "metadata", "tag", "group_alias")}
            for child in cfg.get("task") or []:
                visit(child, {**group_overrides, **overrides})
        elif entry.kind == Kind.TASK:
            cfg = entry.cfg or load_yaml(entry.yaml_path, resolve_func=False)
            out.append({**cfg, **overrides, "task": item})

    for name in names:
        visit(name, {})
    return out


def offline_task_manager_class(data_dirs: list[Path], extra_include: list[str] = (), tasks_hint: list[str] = ()):
    """A subclass of lm-eval's TaskManager whose tasks read known benchmarks from local files,
    which also indexes `extra_include` and checks, before loading any task, that every
    requested benchmark's data is there (MissingBenchmarkData otherwise). It takes
    TaskManager's own arguments, so it can stand in for it inside lm-eval's command line.

    With `tasks_hint` (the task names about to be run), it first indexes only lm-eval's folders
    for those benchmarks (a fraction of a second) and indexes lm-eval's ~15k task configs
    (about 10 s) only when a name is not found that way."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._factory import TaskFactory

    class OfflineTaskFactory(TaskFactory):
        def _load_full_config(self, entry, overrides=None):
            return rewrite_config(super()._load_full_config(entry, overrides), data_dirs)

    class OfflineTaskManager(TaskManager):
        def __init__(self, *args, include_path=None, include_defaults: bool = True, **kwargs):
            paths = include_path if isinstance(include_path, (list, tuple)) else [include_path] if include_path else []
            paths = [*extra_include, *paths]
            hint = list(tasks_hint)
            if include_defaults and hint:
                super().__init__(*args, include_path=[*paths, *lm_eval_task_folders(hint)], include_defaults=False,
                                 **kwargs)
                include_defaults = not all(t in self.all_tasks or Path(t).is_file() for t in hint)
            if include_defaults or not hint:
                super().__init__(*args, include_path=paths or None, include_defaults=include_defaults, **kwargs)
            self._factory = OfflineTaskFactory(meta=self.metadata)

        def load(self, task_list):
            names = [t for t in (task_list if isinstance(task_list, list) else [task_list]) if isinstance(t, str)]
            check_available(leaf_configs(self, names), data_dirs)
            return super().load(task_list)

    return OfflineTaskManager


def lm_eval_task_folders(names: list[str]) -> list[str]:
    """lm-eval's own folders that define these benchmarks, so that indexing them takes a
    fraction of a second instead of the ~10 s of all ~15k task configs."""
    import lm_eval.tasks

    root = Path(lm_eval.tasks.__file__).parent
    folders = {"mmlu": "mmlu", "arc_": "arc", "ai2_arc": "arc", "hellaswag": "hellaswag", "gpqa": "gpqa",
               "hendrycks_math": "hendrycks_math", "minerva_math": "minerva_math"}
    picked = {folder for name in names for prefix, folder in folders.items() if name.startswith(prefix)}
    return [str(root / f) for f in sorted(picked) if (root / f).is_dir()]


def resolve_data_dir(value: str | os.PathLike | None) -> Path | None:
    """`bundled` names the small sample files shipped with ownlm (evaluation/tasks/benchmarks)."""
    if value is None or str(value) == "":
        return None
    if str(value) == "bundled":
        return BENCHMARK_SAMPLES
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise MissingBenchmarkData(f"--data-dir {path} is not a folder")
    return path
