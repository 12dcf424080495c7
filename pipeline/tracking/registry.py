"""The MLflow model registry: versions of the project's model, their aliases and lineage tags, and
`models:/NAME@ALIAS` / `models:/NAME/VERSION` turned into a local checkpoint folder.

A version is a pyfunc model (pyfunc.py) whose one artifact is the checkpoint folder, so that it loads
offline with torch alone. Aliases: `champion` (what serves and what the monitor watches) and
`challenger` (the candidate). Every command that takes a checkpoint resolves a `models:/` URI through
`resolve_checkpoint`, which downloads the version's checkpoint once into `<root>/registry/NAME/VERSION`.
"""
from __future__ import annotations

import contextlib
import logging
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.atomic import publish_dir, staging_dir, write_text
from model.errors import UsageError
from pipeline import console
from pipeline.config import Config
from pipeline.storage import StoragePath, cache_root, is_remote, resolve

MODELS_PREFIX = "models:/"
CHAMPION, CHALLENGER = "champion", "challenger"
CACHE_FOLDER = "registry"
"""Downloaded versions' checkpoints, under the storage root: `registry/NAME/VERSION/`."""
PIP_REQUIREMENTS = ["torch", "safetensors", "tokenizers", "numpy"]
"""What a pyfunc version needs to load, given outright so MLflow infers nothing (over the network)."""
_SOURCE_MARK = ".mlflow-source"
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[^/@]+))$")


@dataclass(frozen=True)
class Version:
    """One registered version, as ownlm reads it."""

    name: str
    number: int
    tags: dict[str, str]
    aliases: tuple[str, ...]
    run_id: str | None
    source: str
    created_ms: int

    @property
    def uri(self) -> str:
        return f"{MODELS_PREFIX}{self.name}/{self.number}"


def is_model_uri(text: str | Path | None) -> bool:
    return isinstance(text, str) and text.startswith(MODELS_PREFIX)


def parse_model_uri(text: str) -> tuple[str, str | None, int | None]:
    """(name, alias, version) of `models:/NAME@ALIAS` or `models:/NAME/VERSION`."""
    m = _URI.match(text)
    if not m:
        raise UsageError(f"{text}: not a registered model URI; write models:/NAME@ALIAS or models:/NAME/VERSION")
    version = m["version"]
    if version is not None and not version.isdigit():
        raise UsageError(f"{text}: a version is a number (models:/{m['name']}/3), or use an alias "
                         f"(models:/{m['name']}@champion)")
    return m["name"], m["alias"], int(version) if version is not None else None


def resolve_checkpoint(cfg: Config, text: str | Path) -> StoragePath:
    """The local checkpoint folder a command's checkpoint argument names: a path as it is, or a
    `models:/NAME@ALIAS` / `models:/NAME/VERSION` URI downloaded (once) into the storage root.

    The one place that understands registry URIs: the CLI calls it for every path flag
    (`--model models:/ownlm@champion`), and a command with a positional checkpoint calls it itself."""
    if not is_model_uri(text):
        return resolve(text) if is_remote(text) else Path(text)  # a storage URI stays one
    name, alias, number = parse_model_uri(str(text))
    registry = Registry(cfg, name)
    version = registry.version(alias=alias, number=number)
    return registry.checkpoint(version)



@contextlib.contextmanager
def quiet_model_logging():
    """MLflow's advice while logging a pyfunc (give an input example, CloudPickle is unsafe) does
    not apply here: the signature is explicit and the model is ownlm's own small class. Its advice
    to type-hint `predict` comes when the class is defined, outside this. `--verbose` keeps them."""
    if console.verbose():
        yield
        return
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    pyfunc_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
            yield
    finally:
        pyfunc_log.setLevel(level)

class Registry:
    """The registered model `name` (default: the config's `model_name`) in the config's MLflow store."""

    def __init__(self, cfg: Config, name: str | None = None):
        from mlflow import MlflowClient

        self.cfg = cfg
        self.name = name or cfg.model_name
        self.client = MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)

    # ---- reading

    def exists(self) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
            return True
        except MlflowException:
            return False

    def versions(self) -> list[Version]:
        """Every version, oldest first, with its aliases."""
        if not self.exists():
            return []
        # A search does not fill in aliases: the registered model holds them.
        aliases: dict[int, list[str]] = {}
        for alias, number in (self.client.get_registered_model(self.name).aliases or {}).items():
            aliases.setdefault(int(number), []).append(alias)
        found = self.client.search_model_versions(f"name='{self.name}'")
        return sorted((self._version(v, aliases.get(int(v.version), ())) for v in found), key=lambda v: v.number)

    def version(self, *, alias: str | None = None, number: int | None = None) -> Version:
        """The version an alias points at, or by number; a UsageError names what exists instead."""
        from mlflow.exceptions import MlflowException

        if not self.exists():
            known = ", ".join(m.name for m in self.client.search_registered_models()) or "none"
            raise UsageError(f"no registered model {self.name!r} in {self.cfg.tracking_uri} (registered: {known})")
        try:
            if alias is not None:
                return self._version(self.client.get_model_version_by_alias(self.name, alias))
            return self._version(self.client.get_model_version(self.name, str(number)))
        except MlflowException:
            versions = self.versions()
            aliases = sorted({a for v in versions for a in v.aliases})
            what = f"alias {alias!r}" if alias is not None else f"version {number}"
            raise UsageError(f"model {self.name!r} has no {what} (versions: "
                             f"{', '.join(str(v.number) for v in versions) or 'none'}; aliases: "
                             f"{', '.join(aliases) or 'none'})") from None

    def alias(self, alias: str) -> Version | None:
        """The version `alias` points at, or None."""
        return next((v for v in self.versions() if alias in v.aliases), None)

    def parent_run(self, run_id: str) -> str | None:
        """The run a run is nested in (a stage's `ownlm run`), if any."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).data.tags.get("mlflow.parentRunId")
        except MlflowException:
            return None

    def _version(self, mv, aliases=None) -> Version:
        return Version(name=mv.name, number=int(mv.version), tags=dict(mv.tags or {}),
                       aliases=tuple(sorted(aliases if aliases is not None else getattr(mv, "aliases", None) or ())),
                       run_id=mv.run_id, source=mv.source,
                       created_ms=int(mv.creation_timestamp or 0))

    # ---- writing

    def register(self, checkpoint: Path, tags: dict[str, Any], config_text: str) -> Version:
        """A new version of the checkpoint folder, logged as a pyfunc model in the active run."""
        import mlflow

        from pipeline.tracking.pyfunc import (
            CHECKPOINT_ARTIFACT,
            CheckpointModel,
            signature,
        )

        if mlflow.active_run() is None:
            raise RuntimeError("Registry.register needs an active run (open one with Tracker.run)")
        folder = staging_dir(self._cache / ".register")
        try:
            (folder / "config.yaml").write_text(config_text)
            with quiet_model_logging():
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=CheckpointModel(),
                    artifacts={CHECKPOINT_ARTIFACT: str(checkpoint), "config": str(folder / "config.yaml")},
                    pip_requirements=PIP_REQUIREMENTS, signature=signature())
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        mv = mlflow.register_model(info.model_uri, self.name, tags={k: str(v) for k, v in tags.items()})
        return self._version(self.client.get_model_version(self.name, mv.version))

    def set_alias(self, alias: str, version: Version) -> None:
        self.client.set_registered_model_alias(self.name, alias, str(version.number))

    def delete_alias(self, alias: str) -> None:
        self.client.delete_registered_model_alias(self.name, alias)

    def set_tags(self, version: Version, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, str(version.number), key, str(value))

    # ---- files

    @property
    def _cache(self) -> Path:
        """Local files (models load from them): under a local root, else in this node's cache."""
        return (self.cfg.root if isinstance(self.cfg.root, Path) else cache_root()) / CACHE_FOLDER

    def checkpoint(self, version: Version) -> Path:
        """The version's checkpoint folder, downloaded once into `<root>/registry/NAME/VERSION`
        (again if the store now holds another model under that number)."""
        dest = self._cache / self.name / str(version.number)
        mark = dest / _SOURCE_MARK
        if mark.is_file() and mark.read_text() == version.source:
            return dest
        import mlflow

        tmp = staging_dir(dest)
        download = staging_dir(dest.parent / f"{version.number}-download")
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.uri, dst_path=str(download),
                                                             tracking_uri=self.cfg.tracking_uri,
                                                             registry_uri=self.cfg.tracking_uri))
            ckpt = _checkpoint_in(local)
            for item in ckpt.iterdir():
                shutil.move(str(item), tmp / item.name)
            write_text(tmp / _SOURCE_MARK, version.source)
            publish_dir(tmp, dest)
        finally:
            shutil.rmtree(download, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def run_json(self, run_id: str, path: str, dst: Path) -> dict | None:
        """A JSON artifact of a run (a promotion's decision or drift reference), downloaded into the
        folder dst; None when the run has no such file."""
        import json

        import mlflow
        from mlflow.exceptions import MlflowException

        dst.mkdir(parents=True, exist_ok=True)
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(dst),
                                                        tracking_uri=self.cfg.tracking_uri)
        except (MlflowException, OSError):
            return None
        return json.loads(Path(local).read_text())


def _checkpoint_in(model_dir: Path) -> Path:
    """Where the pyfunc model keeps its checkpoint artifact (the MLmodel file says)."""
    from mlflow.models import Model

    from pipeline.tracking.pyfunc import CHECKPOINT_ARTIFACT

    flavor = Model.load(str(model_dir)).flavors.get("python_function", {})
    entry = (flavor.get("artifacts") or {}).get(CHECKPOINT_ARTIFACT)
    if not entry:
        raise UsageError(f"{model_dir} is a registered model without an ownlm checkpoint artifact")
    return model_dir / entry["path"]
