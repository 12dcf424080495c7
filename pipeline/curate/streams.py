"""Opening input files with their compression, so that a cut-short file is an error, not silence.

pyarrow's own gzip and zstd streams stop quietly at the end of a truncated file: the rest of
the file would vanish without a word. Python's gzip and bz2 raise `EOFError` there, and the
zstd reader below does the same, so a reader can count what it lost (`truncated`).
"""
from __future__ import annotations

import bz2
import gzip
import io

import pyarrow.fs as pafs

READ_ERRORS = (EOFError, OSError, ValueError)
"""What reading a damaged file raises: EOFError (truncated stream), OSError (gzip.BadGzipFile, an
unreadable file), ValueError (zstandard.ZstdError derives from it)."""


def open_stream(fs: pafs.FileSystem, path: str):
    """A binary file object over `path`, decompressed by its extension (.gz, .zst, .bz2)."""
    raw = fs.open_input_stream(path, compression=None)  # pyarrow would decompress (quietly) by default
    lowered = path.lower()
    if lowered.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if lowered.endswith((".zst", ".zstd")):
        return ZstdReader(raw)
    if lowered.endswith(".bz2"):
        return bz2.BZ2File(raw, mode="rb")
    return raw


def read_chunk(f, size: int) -> bytes:
    """Up to `size` bytes, or fewer: `read1` on the decompressing streams returns the bytes already
    decompressed, so that the error a truncated file raises arrives only after every byte before
    the cut was handed out (a plain `read(size)` would discard the last partial chunk)."""
    read1 = getattr(f, "read1", None)
    return read1(size) if read1 is not None else f.read(size)


class ZstdReader(io.RawIOBase):
    """A zstd stream (one or more frames) that raises EOFError when the input ends inside a frame."""

    CHUNK = 1 << 20

    def __init__(self, raw):
        import zstandard

        self._zstd = zstandard
        self._raw = raw
        self._dobj = zstandard.ZstdDecompressor().decompressobj()
        self._buffer = b""
        self._in_frame = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = self._raw.read(self.CHUNK)
            if not chunk:
                if self._in_frame and not self._buffer:  # what was decompressed went out first
                    raise EOFError("zstd stream ended inside a frame (truncated file)")
                break
            self._feed(chunk)
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def _feed(self, data: bytes) -> None:
        while data:
            self._in_frame = True
            try:
                self._buffer += self._dobj.decompress(data)
            except self._zstd.ZstdError as e:
                raise OSError(f"zstd: {e}") from e
            if not self._dobj.eof:
                return
            self._in_frame = False
            data = self._dobj.unused_data
            self._dobj = self._zstd.ZstdDecompressor().decompressobj()

    def close(self) -> None:
        self._raw.close()
        super().close()


class PositionTracking(io.RawIOBase):
    """A forward-only stream that knows its position (`tell`), which FastWARC asks every stream for
    (pyarrow's compressed and remote streams cannot tell). A read error (a truncated compressed
    file) ends the stream there and is kept in `error`, so that a parser reading ahead in big
    buffers still sees every byte before the cut."""

    def __init__(self, raw):
        self._raw = raw
        self._pos = 0
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.error is not None:
            return b""
        try:
            data = read_chunk(self._raw, size if size >= 0 else 1 << 20)
        except READ_ERRORS as e:
            self.error, data = e, b""
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._raw.close()
        super().close()
