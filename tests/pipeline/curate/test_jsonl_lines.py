"""JSONL lines are rows one by one, wherever a read ends: an oversized line is one `too_large` reject
and every line after it is its own row (a line's bytes never run into the next line's)."""
from __future__ import annotations

import gzip
import json
import random
import tracemalloc

import pyarrow.fs as pafs
import pytest

from pipeline.config import SourceConfig
from pipeline.config.curate import ReadConfig
from pipeline.curate import readers, streams
from pipeline.curate.readers import read_files
from pipeline.curate.records import RAW_BYTES, doc_id


class ShortReads:
    """A stream whose `read1` hands out at most the next of `caps` bytes per call (as a decompressing
    or network stream may), while `read` stays a full read: reads end anywhere in a line."""

    def __init__(self, f, caps):
        self._f, self._caps = f, caps

    def read1(self, size: int = -1) -> bytes:
        cap = next(self._caps)
        return streams.read_chunk(self._f, cap if size < 0 else min(size, cap))

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)

    def close(self) -> None:
        self._f.close()


def short_reads(monkeypatch, caps):
    """Every JSONL stream opened from now on reads in pieces of `caps` (an iterator of sizes)."""
    opened = readers.open_stream
    monkeypatch.setattr(readers, "open_stream", lambda fs, path: ShortReads(opened(fs, path), caps))


def read(path, cfg: ReadConfig) -> list[dict]:
    src = SourceConfig(name="s", format="jsonl", path=str(path.parent))
    out = []
    for batch in read_files(src, pafs.LocalFileSystem(), str(path.parent), [(str(path), path.stat().st_size)], cfg):
        out += batch.to_pylist()
    return out


def record(i: int, size: int = 40) -> bytes:
    """A JSONL line of about `size` bytes with id `r{i}`."""
    head = json.dumps({"id": f"r{i}", "text": ""}).encode()
    return json.dumps({"id": f"r{i}", "text": f"{i}:" + "y" * max(0, size - len(head) - 2 - len(str(i)))}).encode()


def line_of(row: dict) -> int:
    return json.loads(row["meta"])["line"]


# ---------------------------------------------------------------- one oversized line


@pytest.mark.parametrize("cap", [7, 64, 1000, 1 << 20])
@pytest.mark.parametrize("at", ["start", "middle", "last"])
def test_oversized_line_is_one_reject_and_every_other_line_its_own_row(tmp_path, monkeypatch, at, cap):
    """cap 1 << 20: the whole file in one read (the big line arrives complete); smaller caps: the big
    line is cut off at a buffer end and skipped, and the lines after it arrive in the reads that end it
    (cap 1000: the last read of the file holds the big line's end and every line after it)."""
    big = json.dumps({"id": "big", "text": "x" * 3000}).encode()
    where = {"start": 0, "middle": 3, "last": 6}[at]
    lines = [record(i) for i in range(6)]
    lines.insert(where, big)
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    short_reads(monkeypatch, iter(lambda: cap, None))

    rows = read(path, ReadConfig(max_doc_bytes=500))

    assert [line_of(r) for r in rows] == list(range(1, 8))
    [reject] = [r for r in rows if r["reason"]]
    assert reject["reason"] == "too_large" and reject["text"] == "" and line_of(reject) == where + 1
    assert reject["id"] == doc_id("s", f"a.jsonl:{where + 1}") and reject[RAW_BYTES] == len(big)
    good = [r for r in rows if not r["reason"]]
    assert [(r["id"], r["text"]) for r in good] == [(f"r{i}", json.loads(record(i))["text"]) for i in range(6)]


def test_issue_case_oversized_line_then_six_lines_in_the_last_buffer(tmp_path):
    """The reported file, scaled down, with the reader's own buffer: a line over max_doc_bytes that
    runs past the first read, then six normal lines, all in the file's last read."""
    big = json.dumps({"id": "big", "text": "x" * 6_000_000}).encode()
    path = tmp_path / "dump.jsonl"
    path.write_bytes(b"\n".join([big] + [record(i, 200) for i in range(6)]) + b"\n")

    rows = read(path, ReadConfig(max_doc_bytes=1_000_000))

    assert [r["reason"] for r in rows] == ["too_large"] + [""] * 6
    assert [r["id"] for r in rows[1:]] == [f"r{i}" for i in range(6)] and rows[0][RAW_BYTES] == len(big)


def test_oversized_line_is_skipped_without_being_held(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"id": "big", "text": "')
        for _ in range(40):
            f.write(b"x" * 1_000_000)
        f.write(b'"}\n' + record(1) + b"\n")
    (tmp_path / "warm.jsonl").write_bytes(record(0) + b"\n")
    read(tmp_path / "warm.jsonl", ReadConfig())  # the readers' own imports are not the reader's memory
    tracemalloc.start()
    try:
        rows = read(path, ReadConfig(max_doc_bytes=1_000_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r["reason"] for r in rows] == ["too_large", ""] and rows[0][RAW_BYTES] == 40_000_025
    assert peak < 20_000_000  # a few read buffers, not the 40 MB line


def test_truncated_inside_an_oversized_line_is_one_truncated_reject(tmp_path):
    noise = random.Random(0).randbytes(400_000).hex().encode()  # 800 kB of hex: gzip halves it, no more
    data = gzip.compress(b"\n".join([record(1), b'{"text": "' + noise + b'"}', record(2)]) + b"\n")
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])

    rows = read(path, ReadConfig(max_doc_bytes=10_000))

    assert [(r["reason"], line_of(r)) for r in rows] == [("", 1), ("truncated", 2)]
    assert "EOFError" in json.loads(rows[1]["meta"])["error"] and rows[1][RAW_BYTES] > 10_000


# ---------------------------------------------------------------- any lines, any reads


def random_file(rng: random.Random, max_doc: int, buf: int) -> tuple[list[bytes], bytes]:
    """(lines, file bytes): good, oversized, malformed and blank lines of lengths around `buf` and
    `max_doc`, ending in \\n or \\r\\n, the last one with or without its newline."""
    lines = []
    for i in range(rng.randint(0, 12)):
        kind = rng.choices(["good", "malformed", "blank"], [6, 2, 1])[0]
        if kind == "blank":
            lines.append(rng.choice([b"", b" ", b"\t  ", b"\r"]))
            continue
        size = max(1, rng.choice([rng.randint(1, 30), rng.randint(max_doc - 3, max_doc + 3),
                                  rng.randint(buf - 3, buf + 3), rng.randint(1, 4 * max_doc), rng.randint(1, 3 * buf)]))
        if kind == "malformed":
            lines.append((b'{"text": "' + b"m" * size)[:size])
            continue
        text = "é" * rng.randint(0, 3) + "\n"  # multi-byte characters and an escaped newline
        head = json.dumps({"id": f"L{i}", "text": text}, ensure_ascii=False).encode()
        text += "t" * max(0, size - len(head))
        lines.append(json.dumps({"id": f"L{i}", "text": text}, ensure_ascii=False).encode())
    ends = [rng.choice([b"\n", b"\r\n"]) for _ in lines]
    if lines and rng.random() < 0.5:
        ends[-1] = b""
    return lines, b"".join(line + end for line, end in zip(lines, ends))


def check(lines: list[bytes], rows: list[dict], max_doc: int) -> None:
    expected = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not expected:
        assert [r["reason"] for r in rows] == ["empty_file"]
        return
    assert [line_of(r) for r in rows] == [n for n, _ in expected]  # one row per non-blank line, in order
    for (n, line), row in zip(expected, rows):
        if len(line.rstrip(b"\r")) > max_doc:
            assert row["reason"] == "too_large" and row["text"] == "", (n, row["reason"])
        elif line.startswith(b'{"id"'):
            rec = json.loads(line)
            assert (row["reason"], row["id"], row["text"]) == ("", rec["id"], rec["text"])
        else:
            assert (row["reason"], row["text"]) == ("malformed_json", line.rstrip(b"\r").decode())


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_every_non_blank_line_is_exactly_one_row_whatever_the_reads(tmp_path, monkeypatch, compressed):
    rng = random.Random(12 + compressed)
    caps = []
    short_reads(monkeypatch, iter(lambda: caps.pop() if caps else rng.randint(1, 3 * buf), None))
    for case in range(300):
        max_doc, buf = rng.randint(8, 120), rng.randint(1, 150)
        caps[:] = [rng.choice([1, buf - 1, buf, buf + 1, max_doc, max_doc + 1]) or 1 for _ in range(rng.randint(0, 40))]
        lines, data = random_file(rng, max_doc, buf)
        path = tmp_path / f"f{case}.jsonl{'.gz' if compressed else ''}"
        path.write_bytes(gzip.compress(data) if compressed else data)
        rows = read(path, ReadConfig(max_doc_bytes=max_doc))
        try:
            check(lines, rows, max_doc)
        except AssertionError as e:
            raise AssertionError(f"case {case}: max_doc {max_doc}, buf {buf}, file {data!r}") from e
