"""Normalization: Unicode, line endings, control characters, whitespace, mojibake repair."""
from __future__ import annotations

from curate_texts import doc

from pipeline.curate.normalize import looks_damaged, normalize_batch, normalize_text
from pipeline.curate.records import make_batch


def test_normalize_composes_unicode_and_unifies_line_endings():
    assert normalize_text("cafe\u0301\r\nna\u00efve\rend") == "caf\u00e9\nna\u00efve\nend"


def test_normalize_repairs_mojibake_with_ftfy_and_leaves_good_text_alone():
    assert normalize_text("The caf\u00c3\u00a9 served cr\u00c3\u00a8me br\u00c3\u00bbl\u00c3\u00a9e") == \
        "The caf\u00e9 served cr\u00e8me br\u00fbl\u00e9e"
    assert normalize_text("\u00e2\u20ac\u0153quoted\u00e2\u20ac\u009d") == "\u201cquoted\u201d"
    good = "na\u00efve r\u00e9sum\u00e9 \u201cok\u201d \u2013 fine \u00a9 2024, 20 \u00b0C"
    assert not looks_damaged(good) and normalize_text(good) == good
    assert normalize_text("caf\u00c3\u00a9", repair=False) == "caf\u00c3\u00a9"


def test_normalize_removes_terminal_escapes_and_control_characters():
    assert normalize_text("\x1b[31mred\x1b[0m text") == "red text"
    assert normalize_text("a\x00b\x07c\td\x0ce\ufeff\u200bf\n") == "abc\tdef"


def test_normalize_strips_trailing_spaces_and_collapses_blank_runs():
    text = "line one   \n\tindented\t \n\n\n\n\n\nafter five blanks\n\n\nafter two\n\n"
    assert normalize_text(text) == "line one\n\tindented\n\n\nafter five blanks\n\n\nafter two"


def test_normalize_keeps_code_indentation_and_two_blank_lines():
    code = "def f():\n    return 1\n\n\nclass A:\n    pass"
    assert normalize_text(code) == code


def test_normalize_batch_leaves_rejected_rows_untouched():
    batch = make_batch([doc("a  \r\n"), doc("b  \r\n", reason="binary", id_="d2")])
    assert normalize_batch(batch)["text"].to_pylist() == ["a", "b  \r\n"]
