"""Where files live: a local folder or a pyarrow filesystem URI (s3://, gs://, hdfs://, file://),
behind one interface, so that no stage branches on local versus remote.

`resolve(text)` gives a local path as a plain `pathlib.Path` (the fast path, unchanged) and a URI
as a `RemotePath`, which answers the part of pathlib the stages use (`/`, `name`, `parent`,
`exists`, `read_text`, `open`, `glob`, `mkdir`, `unlink`, ...) over a `pyarrow.fs.FileSystem`. The
functions below take either: `filesystem` (the pair Ray Data and pyarrow take), `rmtree`,
`replace`, `atomic_write` / `write_text` (a file appears whole or not at all), `staging_dir` +
`publish_dir` (a folder likewise, as far as the store allows), `local_copy` (a node-local copy for
code that needs real files: memory-mapped token shards, safetensors, tokenizers), `local_output`
(a local folder published at a remote destination when done) and `upload_dir`. docs/storage.md.

S3's endpoint and credentials come from the usual variables (AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION or
AWS_DEFAULT_REGION), read when the path is resolved and kept in the filesystem object: a
`RemotePath` pickled into a Ray task carries them, so a worker started before they were set (or
on a node without them) reaches the same store. `worker_env()` passes them on where only a
string crosses (Ray Train's workers).
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Union
from urllib.parse import urlparse

import pyarrow.fs as pafs

from model import atomic

CREDENTIAL_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                  "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION")
"""The variables the S3 client reads; `worker_env` forwards those that are set."""

@dataclass(frozen=True)
class Stat:
    st_size: int
    st_mtime_ns: int

    @property
    def st_mtime(self) -> float:
        return self.st_mtime_ns / 1e9


class RemotePath:
    """A file or folder on a pyarrow filesystem, named by `scheme://path` (pathlib's subset)."""

    def __init__(self, fs: pafs.FileSystem, path: str, scheme: str):
        self.fs, self.path, self.scheme = fs, path.rstrip("/") or path, scheme

    # ---- names
    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}"

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RemotePath) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: "RemotePath") -> bool:
        return str(self) < str(other)

    def __truediv__(self, other: str | os.PathLike) -> "RemotePath":
        tail = str(other).strip("/")
        return RemotePath(self.fs, f"{self.path}/{tail}" if tail else self.path, self.scheme)

    def joinpath(self, *parts: str) -> "RemotePath":
        out = self
        for part in parts:
            out = out / part
        return out

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def parent(self) -> "RemotePath":
        return RemotePath(self.fs, self.path.rsplit("/", 1)[0] if "/" in self.path else self.path, self.scheme)

    def with_name(self, name: str) -> "RemotePath":
        return self.parent / name

    def relative_to(self, other: "RemotePath") -> Path:
        if not (self.path + "/").startswith(other.path.rstrip("/") + "/") and self.path != other.path:
            raise ValueError(f"{self} is not under {other}")
        return Path(self.path[len(other.path):].lstrip("/"))

    def expanduser(self) -> "RemotePath":
        return self

    def resolve(self) -> "RemotePath":
        return self

    def as_posix(self) -> str:
        return str(self)

    # ---- queries
    def _info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def stat(self) -> Stat:
        info = self._info()
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(str(self))
        return Stat(info.size or 0, info.mtime_ns or 0)

    def iterdir(self) -> Iterator["RemotePath"]:
        for info in sorted(self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True)),
                           key=lambda i: i.path):
            yield RemotePath(self.fs, info.path, self.scheme)

    def glob(self, pattern: str) -> Iterator["RemotePath"]:
        """Matches on the relative path; `**` spans folders (a recursive listing)."""
        recursive = "/" in pattern or "**" in pattern
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=recursive, allow_not_found=True))
        for info in sorted(infos, key=lambda i: i.path):
            rel = info.path[len(self.path):].lstrip("/")
            if fnmatch.fnmatchcase(rel, pattern) or (pattern.startswith("**/") and fnmatch.fnmatchcase(rel, pattern[3:])):
                yield RemotePath(self.fs, info.path, self.scheme)

    def rglob(self, pattern: str) -> Iterator["RemotePath"]:
        return self.glob(f"**/{pattern}")

    # ---- reading and writing
    def open(self, mode: str = "r", encoding: str = "utf-8") -> IO:
        if mode in ("rb", "r"):
            f = self.fs.open_input_file(self.path)  # random access (Parquet footers, np.load)
        elif mode in ("wb", "w"):
            f = self.fs.open_output_stream(self.path, compression=None)
        elif mode in ("ab", "a"):
            f = self.fs.open_append_stream(self.path, compression=None)
        else:
            raise ValueError(f"unsupported mode {mode!r} for {self}")
        return f if "b" in mode else io.TextIOWrapper(f, encoding=encoding)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path, compression=None) as f:
            return f.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        with self.fs.open_output_stream(self.path, compression=None) as f:
            f.write(data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def unlink(self, missing_ok: bool = False) -> None:
        if missing_ok and not self.exists():
            return
        self.fs.delete_file(self.path)


StoragePath = Union[Path, RemotePath]
"""What a layout location is: a local folder, or a folder on a pyarrow filesystem."""


def resolve(path: str | os.PathLike | RemotePath) -> StoragePath:
    """A local path (made absolute) or a URI (`file://` is local; any other scheme pyarrow knows)."""
    if isinstance(path, RemotePath):
        return path
    text = os.fspath(path) if not isinstance(path, str) else path
    if text.startswith("file://"):
        return Path(urlparse(text).path).resolve()
    if "://" not in text:
        return Path(text).expanduser().resolve()
    scheme = text.split("://", 1)[0].lower()
    if scheme in ("s3", "s3a") and "?" not in text:
        return RemotePath(s3_filesystem(), text.split("://", 1)[1], "s3")
    fs, where = pafs.FileSystem.from_uri(text)  # gs://, hdfs://, s3://...?endpoint_override=
    return RemotePath(fs, where, scheme)


def is_remote(path) -> bool:
    return isinstance(path, RemotePath) or (isinstance(path, str) and "://" in path and not path.startswith("file://"))


def s3_filesystem() -> pafs.S3FileSystem:
    """An S3 client from the environment, with its settings explicit so that it pickles whole."""
    env = os.environ
    kwargs: dict = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme)
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        kwargs.update(access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"],
                      session_token=env.get("AWS_SESSION_TOKEN"))
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def worker_env() -> dict[str, str]:
    """The storage variables set here, for the runtime env of Ray workers that resolve URIs."""
    return {k: os.environ[k] for k in CREDENTIAL_ENV if os.environ.get(k)}


def filesystem(path: StoragePath | str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path on it): what pyarrow and Ray Data's readers and writers take."""
    path = resolve(path)
    if isinstance(path, RemotePath):
        return path.fs, path.path
    return pafs.LocalFileSystem(), str(path)


def glob(pattern: str) -> list[StoragePath]:
    """The files and folders a glob names, local (`glob.glob`, `**` recursive) or at a URI
    (s3://bucket/inbox/*.jsonl: the folder before the first wildcard is listed and its entries
    matched, `*` spanning folders as `RemotePath.glob` does); sorted by name."""
    import glob as _glob

    if not is_remote(pattern):
        text = pattern.removeprefix("file://") if pattern.startswith("file://") else os.path.expanduser(pattern)
        return sorted((Path(p).resolve() for p in _glob.glob(text, recursive=True)), key=str)
    scheme, rest = pattern.split("://", 1)
    parts = rest.split("/")
    first = next((i for i, part in enumerate(parts) if _glob.has_magic(part)), len(parts))
    if first == 0:
        raise ValueError(f"{pattern}: a wildcard in the bucket name cannot be listed; put it after the bucket")
    base = resolve(f"{scheme}://{'/'.join(parts[:first])}")
    if first == len(parts):
        return [base] if base.exists() else []
    return sorted(base.glob("/".join(parts[first:])), key=str)


def exists(path: StoragePath | str) -> bool:
    return resolve(path).exists()


def rmtree(path: StoragePath) -> None:
    """Remove a folder and everything under it; nothing there is fine."""
    if isinstance(path, RemotePath):
        info = path._info()
        if info.type == pafs.FileType.Directory:
            path.fs.delete_dir(path.path)
        elif info.type == pafs.FileType.File:
            path.fs.delete_file(path.path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def replace(src: StoragePath, dest: StoragePath) -> None:
    """Move the file `src` over `dest` on the same store (a rename, or copy-then-delete on S3)."""
    if isinstance(src, RemotePath):
        src.fs.move(src.path, dest.path)
    else:
        os.replace(src, dest)


@contextlib.contextmanager
def atomic_write(path: StoragePath, mode: str = "wb") -> Iterator[IO]:
    """A file opened for writing that appears at `path` whole when the block ends, and not at all
    if it raises: written to a temporary sibling, then moved into place (a rename; on S3 a
    server-side copy and delete). Even where an upload becomes visible only once complete, the
    temporary name is needed: pyarrow cannot abort an upload, and a stream closed after a failure
    would complete it with half the data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fs, where = filesystem(path)
    tmp = f"{where.rsplit('/', 1)[0]}/.{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        # pyarrow's own stream, local or remote: Parquet and numpy write to it without Python in between.
        stream = fs.open_output_stream(tmp, compression=None)
        with stream if "b" in mode else io.TextIOWrapper(stream, encoding="utf-8") as f:
            yield f
        fs.move(tmp, where)
    finally:
        if fs.get_file_info(tmp).type != pafs.FileType.NotFound:
            fs.delete_file(tmp)


def write_text(path: StoragePath, text: str) -> StoragePath:
    """A small file written whole (see `atomic_write`)."""
    if isinstance(path, Path):
        return atomic.write_text(path, text)
    with atomic_write(path, "wb") as f:
        f.write(text.encode())
    return path


def write_bytes(path: StoragePath, data: bytes) -> StoragePath:
    with atomic_write(path, "wb") as f:
        f.write(data)
    return path


# ---------------------------------------------------------------- folders


def staging_dir(dest: StoragePath) -> StoragePath:
    """An empty folder beside `dest` (`.<name>.tmp`) to build its next version in."""
    if isinstance(dest, Path):
        return atomic.staging_dir(dest)
    tmp = dest.with_name(f".{dest.name}.tmp")
    rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def discard_dir(tmp: StoragePath) -> None:
    if isinstance(tmp, Path):
        atomic.discard_dir(tmp)
    else:
        rmtree(tmp)


def publish_dir(tmp: StoragePath, dest: StoragePath) -> StoragePath:
    """Put the finished folder `tmp` at `dest`, replacing what was there.

    Locally one atomic exchange (model/atomic.py). A store without folder renames moves file by
    file (on S3 a server-side copy and delete each), so the folder's top-level JSON files count as
    its markers (a stage's `report.json`, `manifest.json`, `config.json`, `tokenizer.json`, which
    the runner checks before trusting an output): the old folder loses its markers first and the
    new one gets them last, so at no instant does a marker stand beside half a folder."""
    if isinstance(tmp, Path) and isinstance(dest, Path):
        return atomic.publish_dir(tmp, dest)
    if dest.exists():
        for old in _files_markers_first(dest):
            dest.fs.delete_file(old)
        rmtree(dest)
    for src in reversed(_files_markers_first(tmp)):
        rel = src[len(tmp.path):].lstrip("/")
        if "/" in rel:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        tmp.fs.move(src, (dest / rel).path)
    rmtree(tmp)
    return dest


def _files_markers_first(folder: RemotePath) -> list[str]:
    """Every file under `folder`: its markers (top-level JSON files) first, then the rest."""
    infos = folder.fs.get_file_info(pafs.FileSelector(folder.path, recursive=True))
    files = [i.path for i in infos if i.type == pafs.FileType.File]
    return sorted(files, key=lambda p: (not _is_marker(p[len(folder.path):].strip("/")), p))


def _is_marker(rel: str) -> bool:
    return "/" not in rel and rel.endswith(".json")


@contextlib.contextmanager
def local_output(dest: StoragePath) -> Iterator[Path]:
    """A local folder to write `dest`'s next version in, for code that writes real files
    (safetensors, a tokenizer's save): `dest` itself when local (the caller publishes it as it
    always did); for a remote `dest`, a temporary folder uploaded and published when the block
    ends, and dropped if it raises."""
    if isinstance(dest, Path):
        yield dest
        return
    with tempfile.TemporaryDirectory(prefix="ownlm-out-") as tmp:
        local = Path(tmp) / dest.name
        yield local
        upload_dir(local, dest)


def upload_dir(local: Path, dest: StoragePath) -> StoragePath:
    """Copy the local folder `local` to `dest` through a staging folder, then publish it."""
    if isinstance(dest, Path):
        tmp = atomic.staging_dir(dest)
        shutil.copytree(local, tmp, dirs_exist_ok=True)
        return atomic.publish_dir(tmp, dest)
    tmp = staging_dir(dest)
    try:
        pafs.copy_files(str(local), tmp.path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=tmp.fs)
    except BaseException:
        rmtree(tmp)
        raise
    return publish_dir(tmp, dest)


def cache_root() -> Path:
    """This node's cache of remote files (`OWNLM_CACHE`, else the system temporary folder)."""
    return Path(os.environ.get("OWNLM_CACHE") or Path(tempfile.gettempdir()) / "ownlm-storage-cache")


def local_copy(path: StoragePath | str, include: tuple[str, ...] | None = None) -> Path:
    """A local file or folder with `path`'s contents: `path` itself when local; for a remote one a
    copy in this node's cache, downloaded once and reused while the remote listing (names, sizes,
    times) is unchanged. `include` (a folder's top-level file names) copies only those files: a
    checkpoint's config and tokenizer without its weights, for code that reads no more."""
    path = resolve(path)
    if isinstance(path, Path):
        return path
    info = path._info()
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{path} does not exist")
    is_dir = info.type == pafs.FileType.Directory
    infos = (path.fs.get_file_info(pafs.FileSelector(path.path, recursive=True)) if is_dir else [info])
    listing = sorted((i.path, i.size, i.mtime_ns) for i in infos if i.type == pafs.FileType.File
                     and (include is None or not is_dir or i.path[len(path.path):].strip("/") in include))
    key = hashlib.sha256(repr((str(path), listing)).encode()).hexdigest()[:24]
    target = cache_root() / key / path.name
    if target.exists():
        return target
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent.parent))
    try:
        if is_dir:
            (tmp / path.name).mkdir()
        for remote, _, _ in listing:
            rel = remote[len(path.path):].lstrip("/") if is_dir else ""
            local = tmp / path.name / rel if rel else tmp / path.name
            local.parent.mkdir(parents=True, exist_ok=True)  # pyarrow's copy_files does not, from S3
            with path.fs.open_input_stream(remote, compression=None) as src, open(local, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        try:
            os.rename(tmp, target.parent)  # whole or not at all; a concurrent copy may have won
        except OSError:
            if not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def copy_file(src: StoragePath, dest: StoragePath) -> StoragePath:
    """Copy one file, on or between stores, written whole at `dest`."""
    if isinstance(src, Path) and isinstance(dest, Path):
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return dest
    with (src.open("rb") if isinstance(src, RemotePath) else open(src, "rb")) as f, atomic_write(dest) as out:
        shutil.copyfileobj(f, out, 1 << 20)
    return dest


# ---------------------------------------------------------------- Parquet


def read_table(path: StoragePath | str, **kwargs):
    """`pyarrow.parquet.read_table` on a local or remote file (the filesystem travels with the path)."""
    import pyarrow.parquet as pq

    fs, where = filesystem(path)
    return pq.read_table(where, filesystem=fs, **kwargs)


def write_table(table, path: StoragePath, **kwargs) -> None:
    """`pyarrow.parquet.write_table`, the file appearing whole (see `atomic_write`)."""
    import pyarrow.parquet as pq

    with atomic_write(path) as f:
        pq.write_table(table, f, **kwargs)


def on_one_filesystem(paths: list[StoragePath]) -> tuple[pafs.FileSystem, list[str]]:
    """(filesystem, paths on it) for files of one store, as Ray Data's and pyarrow's readers take them."""
    pairs = [filesystem(p) for p in paths]
    if not pairs:
        return pafs.LocalFileSystem(), []
    return pairs[0][0], [where for _, where in pairs]
