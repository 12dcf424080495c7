"""Texts and rows the curate step tests share."""
from __future__ import annotations

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


NEWS = ("<html><head><title>News</title></head><body><nav><a href=/>Home</a> <a href=/x>About us</a></nav>"
        "<article><h1>Big story of the day</h1><p>" + PROSE * 2 + "</p><p>" + PROSE + "</p></article>"
        "<footer>Copyright 2024 Example News. All rights reserved.</footer></body></html>")
