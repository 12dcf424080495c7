"""Curation steps that look at text: normalize, PII redaction, quality filters, HTML extraction (no Ray)."""
from __future__ import annotations

import pytest

from pipeline.curate.config import PiiConfig, QualityConfig
from pipeline.curate.filters import QualityFilter, duplicate_line_fraction, quality_reason, symbol_ratio
from pipeline.curate.htmltext import html_to_text
from pipeline.curate.normalize import normalize_batch, normalize_text
from pipeline.curate.pii import EMAIL, PHONE, RedactPII, redact
from pipeline.curate.records import make_batch

PROSE = "The quick brown fox jumps over the lazy dog while the cat watches from the warm window sill. " * 2


def doc(text, kind="web", reason="", id_="d1"):
    return {"id": id_, "text": text, "source": "s", "kind": kind, "meta": "{}", "reason": reason}


# ---------------------------------------------------------------- normalize


def test_normalize_composes_unicode_and_unifies_line_endings():
    assert normalize_text("cafe\u0301\r\nna\u00efve\rend") == "caf\u00e9\nna\u00efve\nend"


def test_normalize_removes_control_characters_but_keeps_tabs_and_newlines():
    assert normalize_text("a\x00b\x07c\x1b[0m\td\x0ce\ufeff\u200bf\n") == "abc[0m\tdef"


def test_normalize_strips_trailing_spaces_and_collapses_blank_runs():
    text = "line one   \n\tindented\t \n\n\n\n\n\nafter five blanks\n\n\nafter two\n\n"
    assert normalize_text(text) == "line one\n\tindented\n\n\nafter five blanks\n\n\nafter two"


def test_normalize_keeps_leading_indentation_and_two_blank_lines():
    code = "def f():\n    return 1\n\n\nclass A:\n    pass"
    assert normalize_text(code) == code


def test_normalize_batch_leaves_rejected_rows_untouched():
    batch = make_batch([doc("a  \r\n"), doc("b  \r\n", reason="binary", id_="d2")])
    assert normalize_batch(batch)["text"].to_pylist() == ["a", "b  \r\n"]


# ---------------------------------------------------------------- PII


@pytest.mark.parametrize("text", [
    "jane.doe@example.com", "j.smith+python@mail.example.org", "support-team@help.example.org",
    "Bob_1987@Example.COM",
])
def test_emails_are_redacted(text):
    out, n_email, n_phone = redact(f"write to {text}, thanks")
    assert out == f"write to {EMAIL}, thanks" and (n_email, n_phone) == (1, 0)


@pytest.mark.parametrize("text", [
    "(555) 555-0142", "555-555-0199", "555.555.0123", "555 555 0188", "1-555-555-0168",
    "+1 555 555 0175", "+1-555-555-0110", "+1 (555) 555-0142", "+44 20 7946 0958",
    "+44 (0)20 7946 0958", "+33 1 99 00 12 34", "+49 30 901820 12",
])
def test_phone_numbers_are_redacted(text):
    out, n_email, n_phone = redact(f"call me on {text} after 5pm.")
    assert out == f"call me on {PHONE} after 5pm." and (n_email, n_phone) == (0, 1)


@pytest.mark.parametrize("text", [
    "Python 3.11.7 and ray 2.60.0", "released 2024-01-15 at 12:30:45", "2023-10-05T12:30:45+00:00",
    "2024.01.15", "192.168.100.200 and 10.0.0.1", "0x7fffffff", "sys.maxsize == 9223372036854775807",
    "1,000,000 rows", "1e-10", "ISBN 978-3-16-148410-0", "range(100, 200)", "pi = 3.14159265358979",
    "x = a @ b", "@property\ndef f(self):", "@dataclass(frozen=True)", "user@localhost",
    "pip install pkg@git+https://github.com/org/repo", "see RFC 2822 section 3.4.1", "5555550199",
    "00:1B:44:11:3A:B7", "2001:db8::ff00:42:8329", "/usr/lib/555-555-0199.so", "v1.2.3-555-555",
    "'+3.140000; -3.140000'", "a = [+1, 2, 3, 4, 5, 6, 7, 8, 9, 10]", "struct.pack('>I', 0xFFFFFFFF)",
])
def test_versions_dates_and_code_are_not_redacted(text):
    assert redact(text) == (text, 0, 0)


def test_pii_step_counts_per_row_and_skips_rejected_rows():
    batch = make_batch([
        doc("mail a@example.com or b@example.org, or call 555-555-0199"),
        doc("c@example.com", reason="too_short", id_="d2"),
    ])
    out = RedactPII(PiiConfig())(batch)
    assert out["text"].to_pylist() == [f"mail {EMAIL} or {EMAIL}, or call {PHONE}", "c@example.com"]
    assert out["pii_email"].to_pylist() == [2, 0]
    assert out["pii_phone"].to_pylist() == [1, 0]


def test_pii_step_honours_switches():
    batch = make_batch([doc("a@example.com 555-555-0199")])
    out = RedactPII(PiiConfig(phones=False))(batch)
    assert out["text"].to_pylist() == [f"{EMAIL} 555-555-0199"]


# ---------------------------------------------------------------- quality


CFG = QualityConfig(min_words=5, max_words=50)


def test_quality_keeps_ordinary_prose():
    assert quality_reason(PROSE[:200], "web", CFG) == ""


@pytest.mark.parametrize("text, reason", [
    ("too few words here", "too_short"),
    ("word " * 51, "too_long"),
    ("#### $$$$ %%%% &&&& **** !!!! ???? @@@@", "symbol_ratio"),
    ("buy now and save big\n" * 5 + "unique closing line here", "repeated_lines"),
])
def test_quality_names_the_rule_that_drops(text, reason):
    assert quality_reason(text, "web", CFG) == reason


def test_code_is_spared_prose_rules_and_gets_its_own():
    code = "def f(x):\n    return {x: [x, x]}\n" + "    pass\n" * 10 + "}}\n" * 5
    assert symbol_ratio("{[()]}") == 1.0 and duplicate_line_fraction(code) > 0.3
    assert quality_reason(code, "code", CFG) == ""
    assert quality_reason(code, "web", CFG) == "repeated_lines"
    minified = "var a = 1; " + "x=1;" * 300 + "\nfunction f() { return a; }"
    assert quality_reason(minified, "code", CFG) == "long_lines"
    data = "A = [\n" + "0, 1, 2, 3,\n" * 20 + "]\n" + "= " * 100
    assert quality_reason(data, "code", QualityConfig(min_words=5, max_words=1000)) == "low_alnum"


def test_quality_step_only_judges_kept_rows():
    batch = make_batch([doc("short"), doc("short", reason="malformed_json", id_="d2"), doc(PROSE * 2, id_="d3")])
    assert QualityFilter(CFG)(batch)["reason"].to_pylist() == ["too_short", "malformed_json", "too_long"]


# ---------------------------------------------------------------- HTML


PAGE = """<!DOCTYPE html><html><head><title>A  page</title><style>p {color: red}</style>
<script>var tracking = 1;</script></head><body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<header>Site banner</header>
<h1>Main&nbsp;title</h1>
<p>First paragraph with <b>bold</b>
and a line break<br>here.</p>
<table><tr><td>&nbsp;</td><td>cell&nbsp;text</td></tr></table>
<p><span>&nbsp;&nbsp;&nbsp;&nbsp;&gt;&gt;&gt; indented()</span></p>
<pre>def f():
    return 1</pre>
<footer>Copyright footer</footer>
</body></html>"""


def test_html_keeps_main_text_title_and_indentation():
    title, text = html_to_text(PAGE)
    assert title == "A page"
    assert text == ("Main title\n\nFirst paragraph with bold and a line break\nhere.\n\ncell text\n\n"
                    "    >>> indented()\n\ndef f():\n    return 1")
    for chrome in ("Home", "tracking", "color", "banner", "footer"):
        assert chrome not in text
