"""Putting a finished output in place."""
from __future__ import annotations

import shutil
from pathlib import Path


def replace_dir(tmp: Path, dest: Path) -> None:
    """Put the finished `tmp` at `dest`, replacing what was there: two renames, so readers never
    see a mix of old and new shards."""
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
