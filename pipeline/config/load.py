"""Loading a config: YAML, `--set` overrides, typed values from command-line flags, `--root`,
then validation as a whole, with every problem collected into one `ConfigError` that names the
key and what is allowed, so a user fixes them all in one go instead of one per run.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from model.config import PRESETS, ModelConfig
from pipeline.config.base import ConfigError
from pipeline.config.root import Config
from pipeline.config.train import TrainConfig
from pipeline.config.tune import FIXED_TRAIN_KEYS, kind_problem, parse_space
from pipeline.storage import is_remote

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_PRESET = "quickstart"


# ---------------------------------------------------------------- loading


def preset_path(name: str) -> Path:
    return PRESET_DIR / f"{name}.yaml"


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = (),
                root: str | None = None, values: dict[str, Any] | None = None) -> Config:
    """Read a YAML config (default: the quickstart preset), apply `--set` overrides, then `values`
    (dotted key -> typed value, from a command's own flags such as `--vocab-size`), then `--root`.

    Raises ConfigError listing every problem found.
    """
    path = Path(path) if path else preset_path(DEFAULT_PRESET)
    if not path.exists() and not path.suffix and preset_path(str(path)).exists():
        path = preset_path(str(path))  # `--config debug` names a bundled preset
    if not path.is_file():
        presets = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise ConfigError([f"config file {path} does not exist (bundled presets: {presets})"])
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError([yaml_problem(path, e)], source=str(path)) from e
    if not isinstance(raw, dict):
        raise ConfigError([f"{path} must hold a mapping of sections, not {type(raw).__name__}"])
    problems: list[str] = []
    for item in overrides:
        try:
            apply_override(raw, item)
        except ValueError as e:
            problems.append(str(e))
    for key, value in (values or {}).items():
        try:
            set_key(raw, key, value)
        except ValueError as e:
            problems.append(str(e))
    if root:
        raw.setdefault("storage", {})
        if isinstance(raw["storage"], dict):
            raw["storage"]["root"] = str(root)
    if problems:
        raise ConfigError(problems, source=str(path))
    return validate_config(raw, source=str(path))


def yaml_problem(path: Path, error: yaml.YAMLError) -> str:
    """A YAML error as one line: `file:line:column: what is wrong` (PyYAML's own text spans lines
    and names "<unicode string>")."""
    mark = getattr(error, "problem_mark", None)
    what = " ".join(str(getattr(error, "problem", None) or error).split())
    context = getattr(error, "context", None)
    if context:
        what = f"{what} ({' '.join(str(context).split())})"
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    return f"{where}: not valid YAML: {what}"


def validate_config(raw: dict, source: str = "config") -> Config:
    """Validate fields, then checks across sections; every problem of both passes in one error."""
    problems: list[str] = []
    cfg = None
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        problems += _describe(e)
    problems += _cross_checks(_valid_sections(raw, cfg))
    if cfg is not None:  # the space is checked against a config that is valid on its own
        problems += search_space_problems(cfg)
    if problems:
        raise ConfigError(problems, source=source)
    return cfg


def _valid_sections(raw: dict, cfg: Config | None) -> dict[str, BaseModel]:
    """Each section that validates on its own, so cross checks run even when another section is bad."""
    if cfg is not None:
        return {name: getattr(cfg, name) for name in Config.model_fields}
    sections = {}
    for name, field in Config.model_fields.items():
        try:
            sections[name] = field.annotation.model_validate(raw.get(name) or {})
        except (ValidationError, TypeError, AttributeError):
            pass
    return sections


def apply_override(raw: dict, item: str) -> None:
    """Apply one `section.key=value` override in place; the value is parsed as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set {item!r}: expected section.key=value")
    set_key(raw, key.strip(), yaml.safe_load(value) if value.strip() else "")


def set_key(raw: dict, key: str, value: Any) -> None:
    """Set the dotted `key` (`train.lr`, `data.sources.0.path`) of the raw config to `value` in place."""
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ValueError(f"--set {key}: {part!r} is not an index of the list at {'.'.join(parts[:i])}")
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ValueError(f"--set {key}: {'.'.join(parts[:i])} is not a section")
        node = node.setdefault(part, [] if nxt.isdigit() else {})
    leaf = parts[-1]
    if isinstance(node, list):
        if not leaf.isdigit() or int(leaf) >= len(node):
            raise ValueError(f"--set {key}: {leaf!r} is not an index of the list")
        node[int(leaf)] = value
    elif isinstance(node, dict):
        node[leaf] = value
    else:
        raise ValueError(f"--set {key}: {'.'.join(parts[:-1])} is not a section")


def _describe(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = f"unknown key; allowed: {', '.join(_allowed_keys(e['loc']))}"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {e['input']!r})"
        problems.append(f"{loc}: {msg}")
    return problems


def _allowed_keys(loc: tuple) -> list[str]:
    """The field names of the section that holds `loc`."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", None)
        model = args[0] if args and isinstance(args[0], type) else ann
    return list(getattr(model, "model_fields", {}))


def _cross_checks(sections: dict[str, BaseModel]) -> list[str]:
    """Checks across keys and sections, each naming the fix; a check whose sections are invalid is skipped."""
    problems = []
    model, tokenizer, tokenize, train = (sections.get(k) for k in ("model", "tokenizer", "tokenize", "train"))
    storage, tracking = sections.get("storage"), sections.get("tracking")
    if storage is not None and tracking is not None and tracking.enabled and tracking.uri is None \
            and not os.environ.get("MLFLOW_TRACKING_URI") and is_remote(storage.root):
        problems.append(f"storage.root {storage.root} is not a local folder, so MLflow's default SQLite store "
                        "cannot live under it: set tracking.uri or MLFLOW_TRACKING_URI (an MLflow tracking server, or "
                        "sqlite:///LOCAL/PATH) "
                        "or tracking.enabled: false")
    if model is not None and model.preset not in PRESETS:
        problems.append(f"model.preset: unknown preset {model.preset!r}; allowed: {', '.join(PRESETS)}")
    elif model is not None:
        fields = set(ModelConfig.__dataclass_fields__)
        unknown = [k for k in model.overrides if k not in fields]
        for k in unknown:
            problems.append(f"model.{k}: unknown key; allowed: preset, {', '.join(sorted(fields))}")
        if not unknown:
            try:
                mcfg = model.build(vocab_size=tokenizer.vocab_size if tokenizer else None)
                problems += [f"model: {p}" for p in mcfg.problems()]
                if tokenize is not None and tokenize.seq_len > mcfg.max_seq_len:
                    problems.append(
                        f"tokenize.seq_len ({tokenize.seq_len}) exceeds the model's max_seq_len "
                        f"({mcfg.max_seq_len}): lower tokenize.seq_len or set model.max_seq_len")
            except (TypeError, ValueError) as e:
                problems.append(f"model: {e}")
    if train is not None:
        if train.warmup_steps >= train.max_steps:
            problems.append(f"train.warmup_steps ({train.warmup_steps}) must be below train.max_steps "
                            f"({train.max_steps})")
        if train.use_gpu and train.cpus_per_worker < 1:
            problems.append("train.cpus_per_worker must be at least 1 with use_gpu")
    return problems


# ---------------------------------------------------------------- the search space of `tune`


def search_space_problems(cfg: Config) -> list[str]:
    """Every problem of `tune.search_space`, each naming its key: a malformed distribution, a key
    that cannot be searched, a distribution the key's type cannot take, and every value a trial
    could get (the bounds of a range, each listed value) that the config would refuse, checked by
    validating the trial's config (with the trial budget, tune.max_steps) like a user's own. A
    problem of the trial config itself that no searched value avoids is told once."""
    dists, problems = parse_space(cfg.tune.search_space)
    if not dists:
        return problems
    base = cfg.model_dump(mode="json")
    base["tune"] = {}  # the trial's config searches nothing itself
    if cfg.tune.max_steps is not None:
        base["train"]["max_steps"] = cfg.tune.max_steps
    common = _refused(base)
    checked = []
    for dist in dists:
        where = f"tune.search_space.{dist.key}"
        value_type, problem = _searchable(dist.key)
        problem = problem or kind_problem(dist, value_type)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        for value in dist.values:
            raw = copy.deepcopy(base)
            set_key(raw, dist.key, value)
            refused = _refused(raw)
            checked.append(refused)
            problems += [f"{where}: {dist.kind} value {value!r} would give a bad trial config: {p}" for p in refused
                         if p not in common]
    where = "tune.max_steps" if cfg.tune.max_steps is not None else "tune"
    problems += [f"{where}: every trial's config would be refused: {p}" for p in common
                 if checked and all(p in refused for refused in checked)]
    return problems


def _refused(raw: dict) -> list[str]:
    try:
        validate_config(raw)
    except ConfigError as e:
        return e.problems
    return []


def _searchable(key: str) -> tuple[str, str | None]:
    """(the type of the key's values, why the key cannot be searched or None)."""
    section, _, name = key.partition(".")
    if section == "train" and name in TrainConfig.model_fields:
        if name in FIXED_TRAIN_KEYS:
            return "", (f"a trial's resources are fixed for the whole search (they size how many trials run at "
                        f"once): set train.{name} instead of searching it")
        return _value_type(str(TrainConfig.model_fields[name].annotation)), None
    if section == "train":
        return "", f"unknown key; train keys: {', '.join(TrainConfig.model_fields)}"
    if section == "model" and name == "preset":
        return "str", None
    fields = {f.name: f for f in dataclasses.fields(ModelConfig)}
    if section == "model" and name == "vocab_size":
        return "", "the vocabulary size comes from the tokenizer: search tokenizer settings in a new tokenize run"
    if section == "model" and name in fields:
        return _value_type(str(fields[name].type)), None
    if section == "model":
        return "", f"unknown key; model keys: preset, {', '.join(sorted(set(fields) - {'vocab_size'}))}"
    return "", "only keys of the train and model sections can be searched (train.lr, model.preset, ...)"


def _value_type(annotation: str) -> str:
    """int, float, bool, str or other, from a field's annotation (a type or its source text)."""
    text = annotation.replace("typing.", "")
    if "dict" in text or "list" in text or "tuple" in text:
        return "other"
    for word in ("Literal", "float", "bool", "int", "str"):
        if word in text:
            return "str" if word == "Literal" else word
    return "other"


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(copy.deepcopy(cfg.model_dump(mode="json")), sort_keys=False)
