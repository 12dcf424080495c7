"""Curation steps that look at text: normalize, split, language, PII, quality rules, HTML (no Ray)."""
from __future__ import annotations

import json

import pytest

from pipeline.curate.config import (C4Config, CodeRulesConfig, FineWebConfig, GopherQualityConfig,
                                    GopherRepetitionConfig, LanguageConfig, PiiConfig, QualityConfig, SplitConfig)
from pipeline.curate.gopher import duplicated_ngram_chars, gopher_quality, gopher_repetition, top_ngram_chars
from pipeline.curate.htmltext import extract, html_to_text
from pipeline.curate.langid import IdentifyLanguage, detect
from pipeline.curate.normalize import looks_damaged, normalize_batch, normalize_text
from pipeline.curate.pii import EMAIL, PHONE, RedactPII, redact
from pipeline.curate.quality import QualityFilter, code_reason
from pipeline.curate.records import make_batch
from pipeline.curate.split import SplitLong, split_text
from pipeline.curate.textstats import TextView
from pipeline.curate.webrules import c4_clean, fineweb

PROSE = ("The quick brown fox jumps over the lazy dog while the cat watches from the warm window sill. "
         "It is a quiet afternoon and nothing much happens in the small house at the end of the road. ")
ARTICLE = """The city council met on Tuesday evening to discuss the new budget for the public library.
Several residents spoke in favour of longer opening hours, and a few asked about the cost.

The head librarian explained that volunteers would staff the branches on weekends. She added that
the plan had worked well in two nearby towns, where visits rose by a third within a year.

Not everyone was convinced. One member of the council asked whether the savings were real, and
another wanted to know what would happen if the volunteers stopped coming after the first months.

After a long debate, the council voted to approve the plan for one year. It will review the numbers
next spring and decide then whether to keep the new hours, change them, or return to the old ones.

The library will publish its first report in March. Readers can send questions to the council by
post, and the next public meeting will take place in the town hall at the end of the month."""


def doc(text, kind="web", reason="", id_="d1", meta="{}"):
    return {"id": id_, "text": text, "source": "s", "kind": kind, "meta": meta, "reason": reason}


# ---------------------------------------------------------------- normalize


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


# ---------------------------------------------------------------- split


def test_split_cuts_at_paragraphs_then_lines_then_spaces():
    paragraphs = ["p%d " % i + "word " * 40 for i in range(10)]  # ~200 characters each
    pieces = split_text("\n\n".join(p.strip() for p in paragraphs), 1000)
    assert all(len(p) <= 1000 for p in pieces) and len(pieces) == 3
    assert all(p.startswith("p") for p in pieces)  # each piece starts at a paragraph
    assert "\n\n".join(pieces).split() == "\n\n".join(paragraphs).split()
    one_line = "word " * 700
    assert all(len(p) <= 1000 for p in split_text(one_line, 1000))
    assert split_text("x" * 2500, 1000) == ["x" * 1000, "x" * 1000, "x" * 500]


def test_split_step_makes_rows_with_part_ids_and_keeps_short_ones():
    from pipeline.curate.records import RAW_BYTES, BORN, set_column

    long = "\n\n".join(["para %d " % i + "text " * 300 for i in range(4)])
    batch = make_batch([doc(long, id_="big"), doc("short one", id_="small"), doc(long, reason="binary", id_="bad")])
    batch = set_column(set_column(batch, RAW_BYTES, [len(long), 9, 5]), BORN, ["read"] * 3)
    out = SplitLong(SplitConfig(max_chars=3100))(batch).to_pylist()  # two paragraphs a piece
    assert [r["id"] for r in out] == ["big#0", "big#1", "small", "bad"]
    assert json.loads(out[1]["meta"]) == {"part": 1, "parts": 2, "parent": "big"}
    assert [r[RAW_BYTES] for r in out] == [len(long), 0, 9, 5]  # input bytes counted once
    assert [r[BORN] for r in out] == ["read", "split", "read", "read"]


# ---------------------------------------------------------------- language


def test_language_is_detected_among_configured_languages_and_filtered():
    cfg = LanguageConfig(languages=["en", "de", "fr"], keep=["en"])
    assert detect(PROSE, cfg)[0] == "en"
    german = "Der schnelle braune Fuchs springt über den faulen Hund, während die Katze vom Fenster aus zusieht."
    french = "Le renard brun rapide saute par-dessus le chien paresseux pendant que le chat regarde par la fenêtre."
    assert detect(german, cfg)[0] == "de" and detect(french, cfg)[0] == "fr"
    batch = make_batch([doc(PROSE), doc(german, id_="d2"), doc("def f(): pass", kind="code", id_="d3"),
                        doc(german, reason="too_short", id_="d4")])
    out = IdentifyLanguage(cfg)(batch)
    assert out["reason"].to_pylist() == ["", "language", "", "too_short"]
    assert out["_lang"].to_pylist() == ["en", "de", None, None]
    assert json.loads(out["meta"][1].as_py())["lang"] == "de"


def test_language_below_confidence_is_unknown():
    cfg = LanguageConfig(languages=["en", "de"], keep=["en"], min_confidence=0.99)
    assert detect("ok", cfg)[0] == "unknown" and detect("", cfg) == ("unknown", 0.0)


def test_language_config_rejects_unknown_codes_and_unreachable_keep():
    from pydantic import ValidationError

    from pipeline.curate.config import CurateConfig

    with pytest.raises(ValidationError, match="unknown ISO 639-1 code"):
        CurateConfig.model_validate({"language": {"languages": ["en", "xx"]}})
    with pytest.raises(ValidationError, match="not in language.languages"):
        CurateConfig.model_validate({"language": {"languages": ["en", "de"], "keep": ["fr"]}})


# ---------------------------------------------------------------- PII


@pytest.mark.parametrize("text, kind", [
    ("jane.doe@example.com", "email"), ("j.smith+python@mail.example.org", "email"),
    ("(555) 555-0142", "phone"), ("555-555-0199", "phone"), ("+1 555 555 0175", "phone"),
    ("+44 (0)20 7946 0958", "phone"), ("+33 1 99 00 12 34", "phone"),
    ("8.8.4.4", "ip_address"), ("2606:4700:4700::1111", "ip_address"),
    ("4111 1111 1111 1111", "credit_card"), ("5555-5555-5555-4444", "credit_card"), ("378282246310005", "credit_card"),
    ("GB82 WEST 1234 5698 7654 32", "iban"), ("DE89370400440532013000", "iban"),
    ("078-05-1120", "us_ssn"), ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
    ("AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", "api_key"), ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "api_key"),
])
def test_each_kind_is_redacted_with_its_typed_placeholder(text, kind):
    out, counts = redact(f"see {text} here")
    assert out == f"see <{kind.upper()}> here" and counts == {kind: 1}


def test_secrets_keep_their_context():
    out, counts = redact("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
                         "Authorization: Bearer abcdefghijklmnop1234567890\n"
                         "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0")
    assert out == ("aws_secret_access_key = <AWS_SECRET_KEY>\nAuthorization: Bearer <BEARER_TOKEN>\n"
                   "token <BEARER_TOKEN>")
    assert counts == {"aws_secret_key": 1, "bearer_token": 2}
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nQUJD\n-----END OPENSSH PRIVATE KEY-----"
    assert redact(f"my key:\n{key}\nthanks") == ("my key:\n<PRIVATE_KEY>\nthanks", {"private_key": 1})


@pytest.mark.parametrize("text", [
    "Python 3.11.7 and ray 2.60.0", "released 2024-01-15 at 12:30:45", "2023-10-05T12:30:45+00:00",
    "2024.01.15", "192.168.100.200 and 10.0.0.1", "127.0.0.1:8080", "0x7fffffff",
    "sys.maxsize == 9223372036854775807", "1,000,000 rows", "1e-10", "ISBN 978-3-16-148410-0", "range(100, 200)",
    "pi = 3.14159265358979", "x = a @ b", "@property\ndef f(self):", "user@localhost",
    "pip install pkg@git+https://github.com/org/repo", "see RFC 2822 section 3.4.1", "5555550199",
    "00:1B:44:11:3A:B7", "2001:db8::ff00:42:8329", "fe80::1", "::1", "a[1::2] + b[10::20]",
    "/usr/lib/555-555-0199.so", "v1.2.3-555-555", "'+3.140000; -3.140000'", "a = [+1, 2, 3, 4, 5, 6, 7, 8, 9, 10]",
    "OID 1.2.840.113549.1.1.1", "uuid 123e4567-e89b-12d3-a456-426614174000", "4111111111111112 (bad Luhn)",
    "GB82 WEST 1234 5698 7654 33 (bad checksum)", "000-12-3456", "666-12-3456", "the bearer of bad news",
    "AKIA is a key prefix", "version 1.2.3.4.5", "https://tools.ietf.org/html/rfc7231#section-7.1.1.1",
    "the HTML 5 spec, section 8.2.4.36, says", "Version 4.1.2.3 fixed it", "see §12.3.4.5",
])
def test_versions_dates_private_ips_and_code_are_not_redacted(text):
    assert redact(text) == (text, {})


def test_pii_step_counts_per_row_per_kind_and_skips_rejected_rows():
    batch = make_batch([
        doc("mail a@example.com or b@example.org, call 555-555-0199, card 4111 1111 1111 1111"),
        doc("c@example.com", reason="too_short", id_="d2"),
    ])
    out = RedactPII(PiiConfig())(batch)
    assert out["text"].to_pylist() == [f"mail {EMAIL} or {EMAIL}, call {PHONE}, card <CREDIT_CARD>", "c@example.com"]
    assert out["pii_email"].to_pylist() == [2, 0]
    assert out["pii_phone"].to_pylist() == [1, 0] and out["pii_credit_card"].to_pylist() == [1, 0]


def test_pii_kinds_and_public_ip_switches():
    assert redact("a@example.com 555-555-0199", PiiConfig(kinds=["email"])) == (f"{EMAIL} 555-555-0199", {"email": 1})
    assert redact("host 10.1.2.3", PiiConfig(public_ips_only=False)) == ("host <IP_ADDRESS>", {"ip_address": 1})


# ---------------------------------------------------------------- quality: Gopher, C4, FineWeb, code


def test_gopher_quality_keeps_prose_and_names_each_rule():
    cfg = GopherQualityConfig()
    assert gopher_quality(TextView(ARTICLE), cfg) == ""
    assert gopher_quality(TextView("too few words here"), cfg) == "too_short"
    assert gopher_quality(TextView("word " * 100_001), cfg) == "too_long"
    assert gopher_quality(TextView("a b c d e " * 20), cfg) == "gopher_mean_word_length"
    assert gopher_quality(TextView(ARTICLE + " #tag" * 200), cfg) == "gopher_hash_ratio"
    assert gopher_quality(TextView(ARTICLE + " ..." * 200), cfg) == "gopher_ellipsis_ratio"
    bullets = "\n".join(f"- item {i} of the shopping list with the things and that stuff" for i in range(20))
    assert gopher_quality(TextView(bullets), cfg) == "gopher_bullet_lines"
    assert gopher_quality(TextView("\n".join(["and so the story went on and on with the rest..."] * 10)),
                          cfg) == "gopher_ellipsis_lines"
    numbers = ARTICLE + " " + " ".join(["12345 67890 +++ ==="] * 200)
    assert gopher_quality(TextView(numbers), cfg) == "gopher_alpha_words"
    no_stop = " ".join(["lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor"] * 6)
    assert gopher_quality(TextView(no_stop), cfg) == "gopher_stop_words"


def test_gopher_repetition_rules():
    cfg = GopherRepetitionConfig()
    assert gopher_repetition(TextView(ARTICLE), cfg) == ""
    assert gopher_repetition(TextView("\n\n".join(["same paragraph here"] * 3 + ["other"] * 2)),
                             cfg) == "gopher_dup_para_frac"
    lines = "\n".join(["buy now and save big"] * 5 + [f"unique line {i}" for i in range(5)])
    assert gopher_repetition(TextView(lines), cfg) == "gopher_dup_line_frac"
    assert gopher_repetition(TextView(ARTICLE + " hello world" * 400), cfg) == "gopher_top_2gram"
    phrase = "the five words repeat here and "
    assert gopher_repetition(TextView(ARTICLE.replace("\n\n", " ") + " " + phrase * 60), cfg).startswith("gopher_")


def test_gopher_ngram_arithmetic_matches_the_definitions():
    view = TextView("a b a b a b c")
    assert top_ngram_chars(view, 2) == 3 * 3  # "a b" (3 characters) three times
    view = TextView("one two three one two three four")
    # the second "one two" repeats: its letters count (6), and the scan jumps past it
    assert duplicated_ngram_chars(view, 2) == len("one") + len("two")
    assert duplicated_ngram_chars(TextView("x y z w"), 2) == 0


def test_c4_removes_lines_and_drops_pages():
    cfg = C4Config()
    page = ("Welcome to the site.\nEnable Javascript to see this page properly.\nMenu\n"
            "This page uses cookies to improve the experience.\n" + ARTICLE + "\nSee the source [1] for details.")
    cleaned, reason = c4_clean(page, cfg)
    assert reason == "" and "Javascript" not in cleaned and "Menu" not in cleaned and "cookies" not in cleaned
    assert "See the source  for details." in cleaned and "\n\n" in cleaned  # citation gone, paragraphs kept
    assert c4_clean(ARTICLE + "\nLorem ipsum dolor sit amet, consectetur.", cfg) == ("", "c4_lorem_ipsum")
    assert c4_clean(ARTICLE + "\nThe dict {'a': 1} looks like this one.", cfg) == ("", "c4_curly_bracket")
    assert c4_clean("One sentence only. And another one.", cfg) == ("", "c4_too_few_sentences")
    strict, _ = c4_clean("A line without an end\n" + ARTICLE, C4Config(terminal_punctuation=True))
    assert "without an end" not in strict
    assert c4_clean(ARTICLE + "\nThat is a darn shame.", cfg, frozenset({"darn"})) == ("", "c4_bad_words")


def test_fineweb_rules():
    cfg = FineWebConfig()
    assert fineweb(TextView(ARTICLE), cfg) == ""
    menu = "\n".join(f"Menu entry number {i} of the navigation bar here" for i in range(20))
    assert fineweb(TextView(menu), cfg) == "fineweb_line_punct_ratio"
    short = "\n".join(f"Item {i} of {n}." for n in ("shop", "menu", "list", "page") for i in range(10))
    assert fineweb(TextView(short + "\n" + ARTICLE), cfg) == "fineweb_short_line_ratio"
    dup = ARTICLE + "\n" + "\n".join(["Share this article with your friends and family today."] * 12)
    assert fineweb(TextView(dup), cfg) == "fineweb_dup_line_chars"


def test_code_rules():
    cfg = CodeRulesConfig()
    code = "def f(x):\n    return {x: [x, x]}\n" + "    pass\n" * 10 + "}}\n" * 5
    assert code_reason(code, cfg) == ""
    assert code_reason("var a = 1; " + "x=1;" * 300 + "\nfunction f() { return a; }", cfg) == "code_long_lines"
    assert code_reason("\n".join(["x = '" + "a" * 150 + "'"] * 5), cfg) == "code_mean_line_length"
    assert code_reason("A = [\n" + "0, 1, 2, 3,\n" * 5 + "]\n" + "= " * 100, cfg) == "code_low_alnum"
    assert code_reason("# Code generated by protoc. DO NOT EDIT.\n" + code, cfg) == "code_autogenerated"
    assert code_reason("x = 1", cfg) == "too_short"


def test_quality_step_routes_kinds_and_only_judges_kept_rows():
    code = "def f(x):\n    return {x: [x, x]}\n" + "    pass\n" * 10
    q = QualityFilter.from_config(QualityConfig())
    batch = make_batch([doc("short"), doc("short", reason="malformed_json", id_="d2"), doc(ARTICLE, id_="d3"),
                        doc(code, kind="code", id_="d4"), doc(code, kind="web", id_="d5"),
                        doc(ARTICLE + "\nEnable Javascript now please, it helps.", id_="d6")])
    out = q(batch)
    assert out["reason"].to_pylist() == ["too_short", "malformed_json", "", "", "gopher_dup_line_frac", ""]
    assert "Javascript" not in out["text"][5].as_py()  # C4 cleaned the web page it kept
    book = QualityFilter.from_config(QualityConfig())(make_batch([doc(ARTICLE + "\n{braces}", kind="book")]))
    assert book["reason"].to_pylist() == [""]  # C4 and FineWeb are for web pages only


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


def test_builtin_html_keeps_main_text_title_and_indentation():
    title, text = html_to_text(PAGE)
    assert title == "A page"
    assert text == ("Main title\n\nFirst paragraph with bold and a line break\nhere.\n\ncell text\n\n"
                    "    >>> indented()\n\ndef f():\n    return 1")
    for chrome in ("Home", "tracking", "color", "banner", "footer"):
        assert chrome not in text


NEWS = ("<html><head><title>News</title></head><body><nav><a href=/>Home</a> <a href=/x>About us</a></nav>"
        "<article><h1>Big story of the day</h1><p>" + PROSE * 2 + "</p><p>" + PROSE + "</p></article>"
        "<footer>Copyright 2024 Example News. All rights reserved.</footer></body></html>")


@pytest.mark.parametrize("extractor", ["resiliparse", "trafilatura"])
def test_main_content_extractors_drop_boilerplate(extractor):
    if extractor == "trafilatura":
        pytest.importorskip("trafilatura", reason="optional extractor: pip install 'ownlm[trafilatura]'")
    title, text = extract(NEWS, extractor)
    assert title == "News" and "quick brown fox" in text
    assert "About us" not in text and "rights reserved" not in text
