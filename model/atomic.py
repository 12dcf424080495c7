"""Putting a finished file or folder in place, so that no reader ever sees half of one.

Every stage builds its output in a temporary sibling and publishes it with `publish_dir`;
small files go through `write_text`. A folder cannot be renamed over a non-empty one, so on
Linux the two are swapped in one `renameat2(RENAME_EXCHANGE)` call: at every instant the
destination holds either the whole old output or the whole new one, even if the process dies
in between. Elsewhere the old folder is first renamed aside, which leaves a window between
two renames; `recover_dir` puts the old folder back if a process died in that window, and
`publish_dir` calls it first, so the old output is never lost.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import shutil
import uuid
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def staging_dir(dest: str | Path) -> Path:
    """An empty folder beside `dest` to build its next version in (`.<name>.tmp`); what a killed
    writer left there is removed first. One writer per destination at a time (the stage records,
    and rank 0 alone writing checkpoints, see to that)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def publish_dir(tmp: str | Path, dest: str | Path) -> Path:
    """Move the finished folder `tmp` to `dest`, replacing what was there atomically."""
    tmp, dest = Path(tmp), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(dest)
    if not dest.exists():
        os.rename(tmp, dest)
        return dest
    if _exchange(tmp, dest):
        shutil.rmtree(tmp, ignore_errors=True)  # now holds the old version
        return dest
    aside = _aside(dest)
    os.rename(dest, aside)
    os.rename(tmp, dest)
    shutil.rmtree(aside, ignore_errors=True)
    return dest


def recover_dir(dest: str | Path) -> None:
    """If a publish died between its two renames, put the old folder back at `dest`."""
    dest = Path(dest)
    aside = _aside(dest)
    if aside.exists() and not dest.exists():
        os.rename(aside, dest)
    elif aside.exists():
        shutil.rmtree(aside, ignore_errors=True)


def discard_dir(tmp: str | Path) -> None:
    """Remove an unfinished staging folder (after a failure)."""
    shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write a small file whole: to a temporary sibling, then renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _aside(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.old"


@functools.cache
def _renameat2():
    """libc's renameat2, where there is one (Linux with glibc 2.28 or later)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step; False where the system or the filesystem cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False  # no exchange on this filesystem or kernel: fall back to two renames
    raise OSError(code, os.strerror(code), str(b))
