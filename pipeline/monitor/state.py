"""What earlier monitor cycles have seen: `<root>/monitor/state.json`, the watched files by path with
the size and modification time they had, so that a file is new once (and again if it changes)."""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from model.atomic import write_text
from model.errors import UsageError

STATE_FILE = "state.json"


def watched_files(patterns: list[str]) -> list[Path]:
    """Every file the watch list names: files, folders (walked) and globs. A plain path that does not
    exist is a config mistake; a glob that matches nothing yet is not."""
    found: set[Path] = set()
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if glob.has_magic(expanded):
            matches = [Path(p) for p in glob.glob(expanded, recursive=True)]
        elif os.path.exists(expanded):
            matches = [Path(expanded)]
        else:
            raise UsageError(f"monitor.watch: {pattern} does not exist (give a file, a folder or a glob)")
        for match in matches:
            if match.is_dir():
                found.update(p for p in match.rglob("*") if p.is_file() and not p.name.startswith("."))
            elif match.is_file():
                found.add(match)
    return sorted(p.resolve() for p in found)


def _signature(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


@dataclass
class MonitorState:
    path: Path
    seen: dict[str, list[int]] = field(default_factory=dict)
    cycles: int = 0

    @classmethod
    def load(cls, folder: Path) -> MonitorState:
        path = folder / STATE_FILE
        if not path.is_file():
            return cls(path)
        data = json.loads(path.read_text())
        return cls(path, seen=data.get("seen", {}), cycles=int(data.get("cycles", 0)))

    def new_files(self, files: list[Path]) -> list[Path]:
        return [f for f in files if self.seen.get(str(f)) != _signature(f)]

    def mark_seen(self, files: list[Path]) -> None:
        self.seen.update({str(f): _signature(f) for f in files if f.exists()})

    def save(self) -> None:
        write_text(self.path, json.dumps({"cycles": self.cycles, "seen": self.seen}, indent=2))
