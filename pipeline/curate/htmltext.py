"""Main text of an HTML page: the builtin extractor (the standard library's `html.parser`), or
resiliparse / trafilatura for crawled pages (`extract`).

trafilatura was tried first, on pydoc's pages, offline: with its defaults it keeps about an
eighth of a module page (the API tables, which are the page, are dropped); with
`include_tables=True` it keeps them but flattens the indentation of every code example;
and it brings some twenty packages. This extractor keeps the text of the body, drops
script/style/navigation chrome, turns block elements into line breaks and keeps the
indentation that pages spell with `&nbsp;` (pydoc does), and `<pre>` blocks verbatim.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

from model.errors import MissingPackage

# Elements whose content is never main text.
_SKIP = frozenset("script style noscript template nav header footer aside svg iframe form button "
                  "select object canvas head".split())
# Elements that start a new line.
_BLOCK = frozenset("address article blockquote br dd div dl dt fieldset figcaption figure h1 h2 h3 h4 "
                   "h5 h6 hr li main ol p pre section table tbody thead tfoot tr ul caption".split())
_PARAGRAPH = frozenset("p h1 h2 h3 h4 h5 h6 pre table blockquote ul ol dl hr".split())
_CELLS = frozenset(("td", "th"))
_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
_COLLAPSIBLE = re.compile(r"[ \t\r\n\f]+")  # HTML white space; not &nbsp;, which is kept
_NBSP = "\u00a0"


class _Extractor(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self.skip: list[str] = []      # open elements whose content is dropped
        self.in_title = False
        self.pre = 0
        self.cell_start = False        # at the start of a table cell: drop its leading spacing

    # -- structure
    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
        if self.skip or tag in _SKIP:
            if tag not in _VOID:
                self.skip.append(tag)
            return
        if tag in _BLOCK:
            self._newline(2 if tag in _PARAGRAPH else 1)
        if tag in _CELLS:
            if self.parts and not self.parts[-1].endswith("\n"):
                self.parts.append(" ")
            self.cell_start = True
        if tag == "pre":
            self.pre += 1

    def handle_startendtag(self, tag, attrs):
        if tag in _VOID:
            self.handle_starttag(tag, attrs)
        else:  # <div/> and the like: open and close at once
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        if self.skip:
            if tag in self.skip:  # close up to the matching element (tolerates unclosed children)
                while self.skip and self.skip.pop() != tag:
                    pass
            return
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag in _BLOCK:
            self._newline(2 if tag in _PARAGRAPH else 1)

    # -- text
    def handle_data(self, data):
        if self.in_title:
            self.title.append(data)
        if self.skip:
            return
        if not self.pre:
            data = _COLLAPSIBLE.sub(" ", data)
            if self._after_whitespace():
                data = data.lstrip(" ")
        if self.cell_start:
            data = data.lstrip(" " + _NBSP)
            self.cell_start = not data
        if data:
            self.parts.append(data)

    def _after_whitespace(self) -> bool:
        return not self.parts or self.parts[-1].endswith("\n") or self.parts[-1].endswith(" ")

    def _newline(self, n: int):
        self.parts.append("\n" * n)

    def text(self) -> str:
        text = "".join(self.parts).replace(_NBSP, " ")
        text = "\n".join(line.rstrip() for line in text.split("\n"))
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def html_to_text(html: str) -> tuple[str, str]:
    """(title, main text) of an HTML page."""
    parser = _Extractor()
    parser.feed(html)
    parser.close()
    title = _COLLAPSIBLE.sub(" ", "".join(parser.title)).replace(_NBSP, " ").strip()
    return title, parser.text()


def extract(html: str, extractor: str = "builtin") -> tuple[str, str]:
    """(title, main text) of an HTML page with the named extractor.

    `builtin` keeps every block of the body (documentation pages, which are all content);
    `resiliparse` and `trafilatura` keep the main content of a crawled page and drop its menus,
    footers and link lists.
    """
    if extractor == "builtin":
        return html_to_text(html)
    if extractor == "resiliparse":
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree

        tree = HTMLTree.parse(html)
        title = (tree.title or "").strip()
        return title, extract_plain_text(tree, main_content=True, alt_texts=False, links=False,
                                         list_bullets=True, preserve_formatting=True)
    if extractor == "trafilatura":
        try:
            import trafilatura
        except ImportError as e:
            raise MissingPackage(f"curate.read extractor 'trafilatura' cannot be imported ({e}): "
                               "pip install 'ownlm[trafilatura]' (trafilatura and lxml_html_clean)") from e
        text = trafilatura.extract(html, include_comments=False, include_tables=True, deduplicate=False,
                                   with_metadata=False) or ""
        return _title(html), text
    raise ValueError(f"unknown HTML extractor {extractor!r}")


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _title(html: str) -> str:
    import html as html_lib

    match = _TITLE.search(html)
    return _COLLAPSIBLE.sub(" ", html_lib.unescape(match.group(1))).strip() if match else ""
