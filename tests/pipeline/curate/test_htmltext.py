"""HTML to text: the builtin extractor and the main-content extractors."""
from __future__ import annotations

import pytest
from curate_texts import NEWS, PAGE

from pipeline.curate.htmltext import extract, html_to_text


def test_builtin_html_keeps_main_text_title_and_indentation():
    title, text = html_to_text(PAGE)
    assert title == "A page"
    assert text == ("Main title\n\nFirst paragraph with bold and a line break\nhere.\n\ncell text\n\n"
                    "    >>> indented()\n\ndef f():\n    return 1")
    for chrome in ("Home", "tracking", "color", "banner", "footer"):
        assert chrome not in text


@pytest.mark.parametrize("extractor", ["resiliparse", "trafilatura"])
def test_main_content_extractors_drop_boilerplate(extractor):
    if extractor == "trafilatura":
        pytest.importorskip("trafilatura", reason="optional extractor: pip install 'ownlm[trafilatura]'")
    title, text = extract(NEWS, extractor)
    assert title == "News" and "quick brown fox" in text
    assert "About us" not in text and "rights reserved" not in text
