"""Listing a source's files (folders, files, globs) and `--input` paths with their format and kind."""
from __future__ import annotations

import pytest
from curate_inputs import source

from pipeline.curate.records import CurateError
from pipeline.curate.sources import infer_source, list_source
from pipeline.stages import layout_for


def test_listing_folder_file_and_glob(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for rel in ("d/a.txt", "d/sub/b.md", "d/c.html", "d/.hidden.txt", "d/sub/x.jsonl", "d/sub/y.jsonl.zst"):
        (tmp_path / rel).write_text("x")
    layout = layout_for(tmp_path)
    files = list_source(source("{root}/d"), layout)
    assert [files.rel(p) for p in files.paths] == ["a.txt", "sub/b.md"] and files.ignored == 4
    assert [files.rel(p) for p in list_source(source("{root}/d/c.html", "html"), layout).paths] == ["c.html"]
    sub = list_source(source("{root}/d/sub", "jsonl"), layout)
    assert [sub.rel(p) for p in sub.paths] == ["x.jsonl", "y.jsonl.zst"]
    assert len(list_source(source("{root}/d/**/*.txt"), layout).paths) == 1  # hidden files only if named


@pytest.mark.parametrize("path, fmt, message", [
    ("{root}/nowhere", "text", "source 'src' (text): path '{root}/nowhere' (= ROOT/nowhere) does not exist"),
    ("{root}/d/*.parquet", "parquet", "matches no files"),
    ("{root}/gone/*.jsonl", "jsonl", "does not exist"),
    ("{root}/d", "pdf", "is a folder with no files with extension .pdf"),
])
def test_listing_errors_name_the_source_and_path(tmp_path, path, fmt, message):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("x")
    with pytest.raises(CurateError) as err:
        list_source(source(path, fmt), layout_for(tmp_path))
    assert message.replace("ROOT", str(tmp_path)) in str(err.value)


def test_input_paths_get_their_format_from_the_extension_and_kind_auto(tmp_path):
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt").write_text("x")
    (tmp_path / "books" / "b.md").write_text("x")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x")
    (tmp_path / "src" / "b.json").write_text("x")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.html").write_text("x")
    (tmp_path / "site" / "b.py").write_text("x")
    got = [(s.format, s.kind) for s in (
        infer_source("/data/crawl/CC-MAIN-1.warc.gz"), infer_source("/data/web.jsonl.zst"),
        infer_source("/data/papers/x.pdf"), infer_source(str(tmp_path / "books")), infer_source(str(tmp_path / "src")),
        infer_source(str(tmp_path / "site")), infer_source("s3://bucket/fineweb/*.parquet"),
        infer_source("/data/tool.py"))]
    # A folder of one data format is that format; a mixed folder (or code) is auto: each file in its own.
    assert got == [("warc", "auto"), ("jsonl", "auto"), ("pdf", "auto"), ("text", "auto"), ("auto", "auto"),
                   ("auto", "auto"), ("parquet", "auto"), ("auto", "auto")]
    assert infer_source("/x/books", {"books"}).name == "books-2"
    (tmp_path / "books" / ".DS_Store").write_bytes(b"\x00")  # hidden files do not make a folder "mixed"
    assert infer_source(f"file://{tmp_path / 'books'}").format == "text"


@pytest.mark.parametrize("files", [["a.jsonl"], ["a.txt", "sub/b.txt", "c.md"]])
def test_a_source_whose_every_file_is_empty_fails_at_listing(tmp_path, files):
    for rel in files:
        (tmp_path / "d" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / rel).write_bytes(b"")
    target = "{root}/d/a.jsonl" if len(files) == 1 else "{root}/d"
    with pytest.raises(CurateError) as err:
        list_source(source(target, "jsonl" if len(files) == 1 else "text"), layout_for(tmp_path))
    assert "source 'src'" in str(err.value) and "holds no documents" in str(err.value)
    assert ("its one file is empty (0 bytes: a.jsonl)" if len(files) == 1 else
            "all its 3 files are empty (0 bytes: a.txt, c.md, sub/b.txt)") in str(err.value)
    (tmp_path / "d" / files[0]).write_text("x")  # one file with bytes: the source is read
    assert len(list_source(source(target, "jsonl" if len(files) == 1 else "text"), layout_for(tmp_path)).paths) \
        == len(files)
