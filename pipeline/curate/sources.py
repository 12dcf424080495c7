"""Finding a source's files: a file, a folder or a glob, on any filesystem pyarrow can open.

Listing happens on the driver, before any Ray work, so that a missing path or a source
that matches nothing fails at once with a message naming the source and the path.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pyarrow.fs as pafs

from pipeline.config import SOURCE_FORMATS, SourceConfig
from pipeline.curate.records import CurateError
from pipeline.layout import Layout

# Files a folder listing takes, per format (a file or glob named in the config is taken as is).
# Code takes every file: the code reader itself decides what to skip, and says why.
_JSONL = tuple(f"{ext}{z}" for ext in (".jsonl", ".ndjson", ".json") for z in ("", ".gz", ".zst", ".zstd", ".bz2"))
EXTENSIONS = {
    "jsonl": _JSONL,
    "parquet": (".parquet",),
    "warc": (".warc", ".warc.gz"),
    "html": (".html", ".htm", ".xhtml"),
    "text": (".txt", ".md", ".markdown", ".rst", ".text"),
    "pdf": (".pdf",),
    "code": None,
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
    """The files of one configured source, sorted; CurateError if there are none."""
    location = layout.expand(src.path)
    if "://" in location:
        fs, path = pafs.FileSystem.from_uri(location)
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
        return _files(fs, base, infos, ignored=0)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise CurateError(f"{where} does not exist")
    if info.type == pafs.FileType.File:
        return _files(fs, path.rsplit("/", 1)[0], [info], ignored=0)
    infos = _walk(fs, path, where)
    taken = [i for i in infos if _takes(src.format, i.path[len(path):])]
    if not taken:
        exts = EXTENSIONS[src.format]
        wanted = f" with extension {', '.join(exts)}" if exts else ""
        raise CurateError(f"{where} is a folder with no files{wanted}")
    return _files(fs, path, taken, ignored=len(infos) - len(taken))


def _files(fs, base: str, infos, ignored: int) -> SourceFiles:
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

INPUT_KINDS = {"jsonl": "web", "parquet": "web", "warc": "web", "html": "web", "text": "prose", "pdf": "paper",
               "code": "code"}
"""The kind a bare `--input PATH` of each format gets."""
_FORMAT_BY_SUFFIX = [(EXTENSIONS[fmt], fmt, INPUT_KINDS[fmt]) for fmt in SOURCE_FORMATS if EXTENSIONS[fmt]]


def infer_source(path: str, taken_names: set[str] = frozenset()) -> SourceConfig:
    """A source for a bare `--input PATH`: format and kind from the extension (of the path, the glob,
    or the files a folder holds), name from the last path part. A folder of mixed files is code."""
    lowered = path.lower().rstrip("/")
    fmt, kind = _by_suffix(lowered)
    if fmt is None:
        files = _folder_files(path)
        counts: dict[tuple[str, str], int] = {}
        for rel in files:
            found = _by_suffix(rel.lower())
            if found[0]:
                counts[found] = counts.get(found, 0) + 1
        best = max(counts, key=counts.get) if counts else None
        # A folder whose (visible) files are all one data format is that format; anything else is a source tree.
        if best and counts[best] == len(files):
            fmt, kind = best
    if fmt is None:
        fmt, kind = "code", "code"
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", lowered.rsplit("/", 1)[-1].split("*")[0]).strip("-.") or "input"
    name, i = base, 2
    while name in taken_names:
        name, i = f"{base}-{i}", i + 1
    return SourceConfig(name=name, kind=kind, format=fmt, path=path)


def _folder_files(path: str) -> list[str]:
    """Visible files under `path` (relative), if it is a folder on a filesystem pyarrow can open."""
    try:
        if "://" in path:
            fs, root = pafs.FileSystem.from_uri(path)
        else:
            fs, root = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))
        if fs.get_file_info(root).type != pafs.FileType.Directory:
            return []
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except (OSError, ValueError):
        return []
    rels = [i.path[len(root.rstrip("/")) + 1:] for i in infos if i.type == pafs.FileType.File]
    return [rel for rel in rels if not _hidden(rel)]


def _by_suffix(lowered: str) -> tuple[str | None, str | None]:
    for suffixes, fmt, kind in _FORMAT_BY_SUFFIX:
        if lowered.endswith(suffixes):
            return fmt, kind
    return None, None
