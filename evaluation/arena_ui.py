"""Where a person votes in the arena: two anonymous answers side by side, in the terminal or in a
small local web page (standard library HTTP server, 127.0.0.1 by default). After each vote the
names of the two models are revealed; the leaderboard is one keypress or one link away.
"""
from __future__ import annotations

import html
import json
import shutil
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlparse

from evaluation.arena import Match, VoteLog, format_table, ratings

KEYS = {"a": "a", "b": "b", "t": "tie", "tie": "tie"}


# ---------------------------------------------------------------- terminal


def side_by_side(left: str, right: str, width: int) -> str:
    """Two texts in columns of equal width, wrapped, with a bar between them."""
    col = max(20, (width - 3) // 2)

    def wrap(text: str) -> list[str]:
        lines = []
        for para in (text or "(empty answer)").splitlines() or [""]:
            lines += textwrap.wrap(para, col, replace_whitespace=False, drop_whitespace=False) or [""]
        return lines

    a, b = wrap(left), wrap(right)
    a += [""] * (len(b) - len(a))
    b += [""] * (len(a) - len(b))
    header = f"{'Assistant A':<{col}} | Assistant B"
    rule = "-" * col + "-+-" + "-" * col
    return "\n".join([header, rule] + [f"{x:<{col}} | {y}" for x, y in zip(a, b)])


def run_terminal(matches: list[Match], log: VoteLog, voter: str = "human",
                 read: Callable[[str], str] = input, write: Callable[[str], None] = print,
                 width: int | None = None) -> list[dict]:
    """Show each match and record the vote: a, b, t (tie), s (skip), r (ratings), q (quit)."""
    width = width or shutil.get_terminal_size((120, 40)).columns
    votes = []
    for i, m in enumerate(matches, 1):
        write(f"\n=== {i}/{len(matches)} ===\nPrompt: {m.prompt}\n")
        write(side_by_side(m.answer_a, m.answer_b, width))
        while True:
            key = read("\nWhich is better? [a] A  [b] B  [t] tie  [s] skip  [r] ratings  [q] quit > ").strip().lower()
            if key == "r":
                write(format_table(ratings(log.read())))
                continue
            if key in KEYS or key in ("s", "q"):
                break
            write("please answer a, b, t, s, r or q")
        if key == "q":
            break
        if key == "s":
            continue
        vote = m.vote(KEYS[key], voter)
        log.append(vote)
        votes.append(vote)
        write(f"A was {m.model_a}, B was {m.model_b}.")
    return votes


# ---------------------------------------------------------------- web page

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>ownlm arena</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
.cols{{display:flex;gap:1em}}.col{{flex:1;border:1px solid #ccc;padding:1em;white-space:pre-wrap}}
button{{font-size:1.1em;margin:.5em}}table{{border-collapse:collapse}}td,th{{padding:.3em .8em;border-bottom:1px solid #ddd}}
</style></head><body><h1>ownlm arena</h1>{body}<p><a href="/ratings">leaderboard</a></p></body></html>"""


class ArenaState:
    """The matches of a web session and which of them are still to vote on (thread-safe)."""

    def __init__(self, matches: list[Match], log: VoteLog, voter: str = "web"):
        self.matches = {m.id: m for m in matches}
        self.pending = [m.id for m in matches]
        self.log, self.voter = log, voter
        self.lock = threading.Lock()

    def next(self) -> Match | None:
        with self.lock:
            return self.matches[self.pending[0]] if self.pending else None

    def vote(self, match_id: int, choice: str) -> Match:
        with self.lock:
            if match_id not in self.pending:
                raise KeyError(f"match {match_id} is not waiting for a vote")
            m = self.matches[match_id]
            if choice != "skip":
                self.log.append(m.vote(choice, self.voter))
            self.pending.remove(match_id)
            return m


def _match_html(m: Match) -> str:
    e = html.escape
    buttons = "".join(f'<button name="choice" value="{v}">{label}</button>'
                      for v, label in (("a", "A is better"), ("b", "B is better"), ("tie", "Tie"), ("skip", "Skip")))
    return (f"<h2>Prompt</h2><p>{e(m.prompt)}</p><div class='cols'><div class='col'><h3>Assistant A</h3>"
            f"{e(m.answer_a)}</div><div class='col'><h3>Assistant B</h3>{e(m.answer_b)}</div></div>"
            f"<form method='post' action='/vote'><input type='hidden' name='match' value='{m.id}'>{buttons}</form>")


def _ratings_html(rows: list[dict]) -> str:
    if not rows:
        return "<p>No votes yet.</p>"
    head = "<tr><th>#</th><th>model</th><th>rating</th><th>95% CI</th><th>battles</th><th>W-L-T</th></tr>"
    body = "".join(
        f"<tr><td>{i}</td><td>{html.escape(r['model'])}</td><td>{r['rating']:.1f}</td>"
        f"<td>{r.get('ci_low', float('nan')):.0f} .. {r.get('ci_high', float('nan')):.0f}</td><td>{r['battles']}</td>"
        f"<td>{r['wins']}-{r['losses']}-{r['ties']}</td></tr>" for i, r in enumerate(rows, 1))
    return f"<h2>Leaderboard (Bradley-Terry)</h2><table>{head}{body}</table>"


def make_handler(state: ArenaState):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: str, kind: str = "text/html; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # keep the terminal for the user
            pass

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path == "/":
                m = state.next()
                body = _match_html(m) if m else "<p>All matches voted. Thank you!</p>"
                self._send(200, PAGE.format(body=body))
            elif path == "/ratings":
                self._send(200, PAGE.format(body=_ratings_html(ratings(state.log.read()))))
            elif path == "/api/ratings":
                self._send(200, json.dumps(ratings(state.log.read())), "application/json")
            elif path == "/api/next":
                m = state.next()
                public = None if m is None else {"match": m.id, "prompt": m.prompt, "answer_a": m.answer_a,
                                                  "answer_b": m.answer_b}
                self._send(200, json.dumps(public), "application/json")
            else:
                self._send(404, PAGE.format(body="<p>Not found.</p>"))

        def do_POST(self) -> None:
            if urlparse(self.path).path != "/vote":
                self._send(404, PAGE.format(body="<p>Not found.</p>"))
                return
            length = int(self.headers.get("Content-Length", 0))
            form = parse_qs(self.rfile.read(length).decode())
            try:
                match_id, choice = int(form["match"][0]), form["choice"][0]
                if choice not in ("a", "b", "tie", "skip"):
                    raise ValueError(choice)
                m = state.vote(match_id, choice)
            except (KeyError, ValueError, IndexError) as e:
                self._send(400, PAGE.format(body=f"<p>Bad vote: {html.escape(str(e))}</p>"))
                return
            reveal = (f"<p>A was <b>{html.escape(m.model_a)}</b>, B was <b>{html.escape(m.model_b)}</b>.</p>"
                      "<p><a href='/'>next match</a></p>")
            self._send(200, PAGE.format(body=reveal))

    return Handler


def make_server(state: ArenaState, host: str = "127.0.0.1", port: int = 8787) -> ThreadingHTTPServer:
    """The arena web server (not started: call serve_forever, or use a thread)."""
    return ThreadingHTTPServer((host, port), make_handler(state))
