"""Arena: Bradley-Terry ratings from votes, anonymous voting in the terminal and on the web, judge votes."""
from __future__ import annotations

import json
import urllib.parse
import urllib.request
import threading

import pytest

from evaluation.arena import (Match, VoteLog, bradley_terry, judge_votes, make_matches, rating_metrics, ratings,
                              simulate_votes)
from evaluation.arena_ui import ArenaState, make_server, run_terminal, side_by_side
from evaluation.judge import ChatClient

from judge_server import chat_server

STRENGTHS = {"alpha": 8.0, "bravo": 4.0, "charlie": 2.0, "delta": 1.0}


def test_simulated_votes_recover_the_true_order():
    votes = simulate_votes(STRENGTHS, 1500, seed=0)
    rows = ratings(votes, bootstrap=100)
    assert [r["model"] for r in rows] == ["alpha", "bravo", "charlie", "delta"]
    # Strength doubles at each step: 400 log10(2) ~ 120 Elo points apart.
    gaps = [a["rating"] - b["rating"] for a, b in zip(rows, rows[1:])]
    assert all(80 < g < 160 for g in gaps), gaps
    for r in rows:
        assert r["ci_low"] < r["rating"] < r["ci_high"]
    # Adjacent models' intervals do not overlap with this many votes.
    assert all(a["ci_low"] > b["ci_high"] for a, b in zip(rows, rows[1:]))
    assert sum(r["battles"] for r in rows) == 2 * 1500


def test_bradley_terry_is_the_maximum_likelihood_fit():
    """Two models, a beating b 30 times out of 40: p_a / p_b = 3, so 400 log10(3) apart."""
    outcomes = [("a", "b", 1.0)] * 30 + [("a", "b", 0.0)] * 10
    fit = bradley_terry(outcomes, prior=0.0)
    assert fit["a"] - fit["b"] == pytest.approx(400 * __import__("math").log10(3), abs=1e-3)
    assert (fit["a"] + fit["b"]) / 2 == pytest.approx(1000)


def test_ties_count_half_and_a_winless_model_stays_finite():
    assert bradley_terry([("a", "b", 0.5)] * 10)["a"] == pytest.approx(1000)
    fit = bradley_terry([("a", "b", 1.0)] * 5)
    assert fit["a"] > fit["b"] and fit["b"] > 0  # the prior keeps it finite
    assert ratings([]) == []


def test_more_votes_narrow_the_interval():
    few = {r["model"]: r for r in ratings(simulate_votes(STRENGTHS, 100, seed=1), bootstrap=100)}
    many = {r["model"]: r for r in ratings(simulate_votes(STRENGTHS, 1600, seed=1), bootstrap=100)}
    width = lambda r: r["ci_high"] - r["ci_low"]  # noqa: E731
    assert all(width(many[m]) < width(few[m]) for m in STRENGTHS)


ANSWERS = {"alpha": {"q1": "alpha says one", "q2": "alpha says two", "q3": "alpha says three"},
           "bravo": {"q1": "bravo says one", "q2": "bravo says two", "q3": "bravo says three"}}


def test_matches_are_anonymous_and_shuffled():
    matches = make_matches(ANSWERS, ["q1", "q2", "q3"], seed=0, rounds=4)
    assert len(matches) == 12
    assert {(m.model_a, m.model_b) for m in matches} == {("alpha", "bravo"), ("bravo", "alpha")}
    for m in matches:
        assert m.answer_a == ANSWERS[m.model_a][m.prompt] and m.answer_b == ANSWERS[m.model_b][m.prompt]


def test_terminal_voting_shows_no_names_until_the_vote(tmp_path):
    matches = make_matches(ANSWERS, ["q1", "q2", "q3"], seed=3)
    log = VoteLog(tmp_path / "votes.jsonl")
    keys = iter(["x", "a", "s", "t", "q"])
    shown: list[str] = []
    votes = run_terminal(matches, log, read=lambda prompt: next(keys), write=shown.append, width=80)
    assert [v["winner"] for v in votes] == ["model_a", "tie"]  # x is asked again, s skips, q quits
    assert log.read() == votes
    first_screen = "\n".join(shown[:2])
    assert matches[0].answer_a in first_screen and matches[0].answer_b in first_screen
    assert "alpha" not in first_screen.replace("alpha says", "") and "bravo" not in first_screen.replace("bravo says", "")
    assert f"A was {matches[0].model_a}, B was {matches[0].model_b}." in shown


def test_side_by_side_wraps_both_columns():
    text = side_by_side("short", "a much longer answer " * 5, 60)
    lines = text.splitlines()
    assert lines[0].startswith("Assistant A") and all(" | " in line for line in lines[2:])
    assert len(lines) > 3 and max(len(line) for line in lines) <= 60


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def test_web_page_voting(tmp_path):
    matches = make_matches(ANSWERS, ["q1", "q2"], seed=1)
    log = VoteLog(tmp_path / "votes.jsonl")
    server = make_server(ArenaState(matches, log, voter="web"), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        page = get(base + "/")
        m = matches[0]
        assert m.answer_a in page and m.answer_b in page and "Assistant A" in page
        assert "alpha</" not in page and "bravo</" not in page  # no model names before the vote
        nxt = json.loads(get(base + "/api/next"))
        assert nxt == {"match": m.id, "prompt": m.prompt, "answer_a": m.answer_a, "answer_b": m.answer_b}
        form = urllib.parse.urlencode({"match": m.id, "choice": "b"}).encode()
        with urllib.request.urlopen(base + "/vote", data=form, timeout=10) as r:
            reveal = r.read().decode()
        assert f"A was <b>{m.model_a}</b>, B was <b>{m.model_b}</b>" in reveal
        with pytest.raises(urllib.error.HTTPError):  # the same match twice
            urllib.request.urlopen(base + "/vote", data=form, timeout=10)
        board = json.loads(get(base + "/api/ratings"))
        assert board[0]["model"] == m.model_b and board[0]["wins"] == 1
        assert "Leaderboard" in get(base + "/ratings")
        assert json.loads(get(base + "/api/next"))["match"] == matches[1].id
    finally:
        server.shutdown()
        server.server_close()
    assert log.read()[0]["winner"] == "model_b" and log.read()[0]["voter"] == "web"


def test_a_judge_model_votes_and_position_flips_become_ties(tmp_path):
    """The judge prefers whichever answer says "alpha"; a second judge always picks the first
    answer shown (position bias), which the swapped second look turns into a tie."""
    matches = make_matches(ANSWERS, ["q1", "q2", "q3"], seed=0, rounds=2)

    def fair(body):
        text = body["messages"][-1]["content"]
        a_part = text.split("[The Start of Assistant A's Answer]")[1].split("[The End")[0]
        return "Reasoning... [[A]]" if "alpha" in a_part else "Reasoning... [[B]]"

    log = VoteLog(tmp_path / "votes.jsonl")
    with chat_server(fair) as (url, requests):
        votes = judge_votes(matches, ChatClient(url, "judge-a"), log, progress=False)
    assert len(requests) == 2 * len(matches)  # each match seen in both orders
    assert all(v["voter"] == "judge:judge-a" for v in votes)
    assert all(v[v["winner"]] == "alpha" for v in votes)
    assert ratings(log.read())[0]["model"] == "alpha"

    biased_log = VoteLog(tmp_path / "biased.jsonl")
    with chat_server(lambda body: "[[A]]") as (url, _):
        votes = judge_votes(matches, ChatClient(url, "judge-b"), biased_log, progress=False)
    assert {v["winner"] for v in votes} == {"tie"}


def test_rating_metrics_have_mlflow_safe_names():
    rows = ratings(simulate_votes({"my model,v1": 2.0, "other": 1.0}, 50), bootstrap=10)
    metrics = rating_metrics(rows)
    assert "arena/my_model_v1/rating" in metrics and "arena/other/ci_low" in metrics
    assert all("," not in k and " " not in k for k in metrics)


def test_a_vote_must_name_a_winner(tmp_path):
    m = Match(0, "q", "a", "b", "x", "y")
    with pytest.raises(ValueError, match="a, b or tie"):
        m.vote("c", "human")
    with pytest.raises(ValueError, match="winner"):
        VoteLog(tmp_path / "v.jsonl").append({"winner": "nobody"})
