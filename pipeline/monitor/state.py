"""What earlier monitor cycles have seen: `<root>/monitor/state.json`, the watched files by path (or
URI) with the size and modification time they had, so that a file is new once (and again if it
changes). The root and the watched paths may be local or on a store (pipeline/storage.py)."""
from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field

from model.errors import UsageError
from pipeline import storage
from pipeline.storage import StoragePath

STATE_FILE = "state.json"


def watched_files(patterns: list[str]) -> list[StoragePath]:
    """Every file the watch list names: files, folders (walked) and globs, local or at a URI
    (s3://bucket/inbox/, s3://bucket/inbox/*.jsonl). A plain path that does not exist is a config
    mistake; a glob that matches nothing yet is not."""
    found: set[StoragePath] = set()
    for pattern in patterns:
        if glob.has_magic(pattern):
            try:
                matches = storage.glob(pattern)
            except ValueError as e:
                raise UsageError(f"monitor.watch: {e}") from None
        else:
            path = storage.resolve(pattern)
            if not path.exists():
                raise UsageError(f"monitor.watch: {pattern} does not exist (give a file, a folder or a glob)")
            matches = [path]
        for match in matches:
            if match.is_dir():
                found.update(p for p in match.rglob("*") if not p.name.startswith(".") and p.is_file())
            elif match.is_file():
                found.add(match)
    return sorted(found, key=str)


def _signature(path: StoragePath) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


@dataclass
class MonitorState:
    path: StoragePath
    seen: dict[str, list[int]] = field(default_factory=dict)
    cycles: int = 0

    @classmethod
    def load(cls, folder: StoragePath) -> MonitorState:
        path = folder / STATE_FILE
        if not path.is_file():
            return cls(path)
        data = json.loads(path.read_text())
        return cls(path, seen=data.get("seen", {}), cycles=int(data.get("cycles", 0)))

    def new_files(self, files: list[StoragePath]) -> list[StoragePath]:
        return [f for f in files if self.seen.get(str(f)) != _signature(f)]

    def mark_seen(self, files: list[StoragePath]) -> None:
        self.seen.update({str(f): _signature(f) for f in files if f.exists()})

    def save(self) -> None:
        storage.write_text(self.path, json.dumps({"cycles": self.cycles, "seen": self.seen}, indent=2))
