"""C4 and FineWeb rules."""
from __future__ import annotations

from curate_texts import ARTICLE

from pipeline.config.curate import (
    C4Config,
    FineWebConfig,
)
from pipeline.curate.textstats import TextView
from pipeline.curate.webrules import c4_clean, fineweb


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
