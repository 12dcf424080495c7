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


def test_input_paths_get_format_and_kind_from_their_extension(tmp_path):
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt").write_text("x")
    (tmp_path / "books" / "b.md").write_text("x")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x")
    (tmp_path / "src" / "b.json").write_text("x")
    got = [(s.format, s.kind) for s in (
        infer_source("/data/crawl/CC-MAIN-1.warc.gz"), infer_source("/data/web.jsonl.zst"),
        infer_source("/data/papers/x.pdf"), infer_source(str(tmp_path / "books")), infer_source(str(tmp_path / "src")),
        infer_source("s3://bucket/fineweb/*.parquet"))]
    assert got == [("warc", "web"), ("jsonl", "web"), ("pdf", "paper"), ("text", "prose"), ("code", "code"),
                   ("parquet", "web")]
    assert infer_source("/x/books", {"books"}).name == "books-2"
    (tmp_path / "books" / ".DS_Store").write_bytes(b"\x00")  # hidden files do not make a folder "mixed"
    assert infer_source(f"file://{tmp_path / 'books'}").format == "text"
