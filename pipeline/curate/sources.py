"""Finding a source's files: a file, a folder or a glob, on any filesystem pyarrow can open.

Listing happens on the driver, before any Ray work, so that a missing path or a source
that matches nothing fails at once with a message naming the source and the path.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pyarrow.fs as pafs

from pipeline import storage
from pipeline.config import SOURCE_FORMATS, SourceConfig
from pipeline.config.data import AUTO
from pipeline.curate.records import CurateError
from pipeline.layout import Layout

# Files a folder listing takes, per format (a file or glob named in the config is taken as is).
# Code and auto take every file: their readers decide what to skip, and say why.
_JSONL = tuple(f"{ext}{z}" for ext in (".jsonl", ".ndjson", ".json") for z in ("", ".gz", ".zst", ".zstd", ".bz2"))
EXTENSIONS = {
    "jsonl": _JSONL,
    "parquet": (".parquet",),
    "warc": (".warc", ".warc.gz"),
    "html": (".html", ".htm", ".xhtml"),
    "text": (".txt", ".md", ".markdown", ".rst", ".text"),
    "pdf": (".pdf",),
    "code": None,
    "auto": None,
}
assert set(EXTENSIONS) == set(SOURCE_FORMATS), "one extension list per source format (pipeline/config/data.py)"
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class SourceFiles:
    """A source's files: absolute paths on `filesystem`, their sizes, and the folder that
    relative paths (kept in `meta`, and in ids) are measured from."""

    filesystem: pafs.FileSystem
    base: str
    paths: list[str]
    sizes: list[int]
    ignored: int
    """Files under a listed folder that were not taken: hidden names, other extensions."""
    mtimes: list[float] | None = None
    """Modification times (seconds), where the filesystem reports them: part of the resume fingerprint."""

    def rel(self, path: str) -> str:
        return relative(path, self.base)


def relative(path: str, base: str) -> str:
    prefix = base.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path.rsplit("/", 1)[-1]


def list_source(src: SourceConfig, layout: Layout) -> SourceFiles:
    """The files of one configured source, sorted; CurateError if there are none, or if every one is empty."""
    location = layout.expand(src.path)
    if "://" in location:
        fs, path = storage.filesystem(location)  # explicit credentials: they travel to the tasks
    else:
        fs, path = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location))
    where = f"source {src.name!r} ({src.format}): path {src.path!r}" + (
        f" (= {location})" if location != src.path else "")
    match = _GLOB_CHARS.search(path)
    if match:
        base = path[: match.start()].rsplit("/", 1)[0] or "/"
        pattern = _glob_regex(path)
        if not _exists(fs, base):
            raise CurateError(f"{where} matches no files: {base} does not exist")
        named_hidden = "/." in path  # like a shell, `*` does not match hidden names
        infos = [i for i in _walk(fs, base, where) if pattern.fullmatch(i.path)
                 and (named_hidden or not _hidden(i.path[len(base):]))]
        if not infos:
            raise CurateError(f"{where} matches no files")
        return _files(fs, base, infos, ignored=0, where=where)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise CurateError(f"{where} does not exist")
    if info.type == pafs.FileType.File:
        return _files(fs, path.rsplit("/", 1)[0], [info], ignored=0, where=where)
    infos = _walk(fs, path, where)
    taken = [i for i in infos if _takes(src.format, i.path[len(path):])]
    if not taken:
        exts = EXTENSIONS[src.format]
        wanted = f" with extension {', '.join(exts)}" if exts else ""
        raise CurateError(f"{where} is a folder with no files{wanted}")
    return _files(fs, path, taken, ignored=len(infos) - len(taken), where=where)


def _files(fs, base: str, infos, ignored: int, where: str) -> SourceFiles:
    """The listing; a source whose every file is empty (0 bytes) has no document: an error now,
    before any file is read."""
    if all(i.size == 0 for i in infos):
        names = [relative(i.path, base) for i in sorted(infos, key=lambda i: i.path)]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        files = "its one file is" if len(names) == 1 else f"all its {len(names)} files are"
        raise CurateError(f"{where} holds no documents: {files} empty (0 bytes: {shown})")
    infos = sorted(infos, key=lambda i: i.path)
    mtimes = [i.mtime.timestamp() if i.mtime is not None else 0.0 for i in infos]
    return SourceFiles(fs, base, [i.path for i in infos], [i.size for i in infos], ignored, mtimes)


def _walk(fs: pafs.FileSystem, base: str, where: str) -> list[pafs.FileInfo]:
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except OSError as e:
        raise CurateError(f"{where}: cannot list {base}: {e}") from e
    return [i for i in infos if i.type == pafs.FileType.File]


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _takes(fmt: str, rel: str) -> bool:
    """Whether a folder listing takes the file at `rel`: no hidden parts, a known extension."""
    if _hidden(rel):
        return False
    exts = EXTENSIONS[fmt]
    return exts is None or rel.lower().endswith(exts)


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/") if part)


def _glob_regex(pattern: str) -> re.Pattern:
    """`*` and `?` stay within one path segment, `**/` spans any number of them."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape("["))
                i += 1
            else:
                out.append("[" + pattern[i + 1:end].replace("!", "^", 1) + "]")
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


# ---------------------------------------------------------------- `ownlm curate --input PATH`

DATA_FORMATS = tuple(fmt for fmt in SOURCE_FORMATS if EXTENSIONS[fmt])
"""Formats named by a file's extension (the others, code and auto, take any file)."""


def format_by_name(lowered: str) -> str | None:
    """The format a (lowercased) file name's extension names, or None."""
    for fmt in DATA_FORMATS:
        if lowered.endswith(EXTENSIONS[fmt]):
            return fmt
    return None


def infer_source(path: str, taken_names: set[str] = frozenset()) -> SourceConfig:
    """A source for a bare `--input PATH`: the format from the extension (of the path, the glob, or
    the files a folder holds: one format when they all share it, else `auto`, each file in its own),
    kind `auto` (each document's from its record, its file name or its content), name from the last
    path part."""
    lowered = path.lower().rstrip("/")
    fmt = format_by_name(lowered)
    if fmt is None:
        found = {format_by_name(rel.lower()) for rel in _folder_files(path)}
        # A folder whose (visible) files are all one data format is that format; anything else is auto.
        if len(found) == 1 and None not in found:
            fmt = found.pop()
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", lowered.rsplit("/", 1)[-1].split("*")[0]).strip("-.") or "input"
    name, i = base, 2
    while name in taken_names:
        name, i = f"{base}-{i}", i + 1
    return SourceConfig(name=name, kind=AUTO, format=fmt or AUTO, path=path)


def _folder_files(path: str) -> list[str]:
    """Visible files under `path` (relative), if it is a folder on a filesystem pyarrow can open."""
    try:
        if "://" in path:
            fs, root = storage.filesystem(path)
        else:
            fs, root = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))
        if fs.get_file_info(root).type != pafs.FileType.Directory:
            return []
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except (OSError, ValueError):
        return []
    rels = [i.path[len(root.rstrip("/")) + 1:] for i in infos if i.type == pafs.FileType.File]
    return [rel for rel in rels if not _hidden(rel)]
