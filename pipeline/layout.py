"""Where each stage's files live under the storage root (one place, so no stage guesses).

The locations are declared by the stages that write them (`Stage.locations`, collected by
pipeline/stages.py into `LOCATIONS`); a layout maps each to a folder under the root, or to a
folder the user named: a command given explicit paths (`ownlm tokenize --input DIR --output
DIR`) moves single locations with `with_paths`, and everything else stays under the root.
The root and every moved location may be a local folder or a storage URI (pipeline/storage.py):
a location is then a `RemotePath`, which the stages use as they use a `Path`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pipeline.storage import StoragePath, resolve


@dataclass(frozen=True)
class Location:
    """A folder a stage writes: its name in the layout (`layout.tokens`), its folder under the root,
    and what it holds."""

    name: str
    folder: str
    holds: str


@dataclass(frozen=True)
class Layout:
    root: StoragePath
    locations: tuple[Location, ...]
    overrides: tuple[tuple[str, StoragePath], ...] = ()

    def with_paths(self, **paths: str | Path | None) -> "Layout":
        """A layout with some locations moved (None leaves a location where it is)."""
        unknown = [k for k in paths if k not in self._folders]
        if unknown:
            raise KeyError(f"unknown layout location(s): {', '.join(unknown)}")
        moved = dict(self.overrides)
        moved.update({k: resolve(v) for k, v in paths.items() if v is not None})
        return dataclasses.replace(self, overrides=tuple(sorted(moved.items(), key=lambda kv: kv[0])))

    @property
    def _folders(self) -> dict[str, str]:
        return {loc.name: loc.folder for loc in self.locations}

    def path(self, name: str) -> StoragePath:
        """The folder of location `name` (moved by `with_paths`, else under the root)."""
        moved = dict(self.overrides).get(name)
        if moved is not None:
            return moved
        try:
            return self.root / self._folders[name]
        except KeyError:
            raise AttributeError(f"no layout location {name!r}; known: {', '.join(self._folders)}") from None

    def __getattr__(self, name: str) -> StoragePath:
        # `layout.tokens` reads better than `layout.path("tokens")` at the many call sites.
        if name.startswith("_") or name in ("root", "locations", "overrides"):
            raise AttributeError(name)
        return self.path(name)

    @property
    def state(self) -> StoragePath:
        """One JSON per finished stage: its fingerprint and summary, for skipping reruns."""
        return self.root / "state"

    def expand(self, path: str) -> str:
        """Expand `{root}` and `{<location>}` (such as `{sample}`) in a configured path."""
        path = path.replace("{root}", str(self.root))
        for name in self._folders:
            path = path.replace("{" + name + "}", str(self.path(name)))
        return path
