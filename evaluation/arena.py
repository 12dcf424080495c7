"""Arena: two models answer the same prompt, a person (or a judge model) picks the better answer
without knowing which model wrote it, and Bradley-Terry ratings with bootstrap confidence
intervals rank the models (as Chatbot Arena does).

Votes are one JSON line each (`VoteLog`), so sessions append to the same file and ratings are
recomputed from all votes: {"prompt", "model_a", "model_b", "answer_a", "answer_b",
"winner": "model_a" | "model_b" | "tie", "voter", "time"}. "a" is whichever model was shown on
the left; which model that is was drawn at random per match.

Bradley-Terry: P(i beats j) = p_i / (p_i + p_j). A tie counts half a win for each side. The
strengths are the maximum-likelihood fit by Hunter's (2004) MM iterations, with a small prior
(`prior` virtual games split evenly between every pair of models) that keeps a model with no
win finite and the fit defined when the comparison graph is not connected. Ratings are on the
Elo scale, 1000 + 400 log10(p_i / geometric mean of p). Confidence intervals: refit on battles
resampled with replacement, 2.5th and 97.5th percentiles.
"""
from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from evaluation.judge import judge_pair
from evaluation.names import metric_name
from evaluation.tasks import TASKS_DIR
from model.errors import InputError, MissingInput
from model.sampling import SamplingParams
from model.tokenizer import END_OF_TURN, chat_prompt

WINNERS = ("model_a", "model_b", "tie")


# ---------------------------------------------------------------- votes


@dataclasses.dataclass
class Match:
    """One prompt with two answers, shown as A (left) and B (right)."""

    id: int
    prompt: str
    model_a: str
    model_b: str
    answer_a: str
    answer_b: str

    def vote(self, choice: str, voter: str) -> dict:
        """A vote record; choice is "a", "b" or "tie"."""
        winner = {"a": "model_a", "b": "model_b", "tie": "tie", "t": "tie"}.get(choice)
        if winner is None:
            raise InputError(f"a vote is a, b or tie, not {choice!r}")
        return {"prompt": self.prompt, "model_a": self.model_a, "model_b": self.model_b,
                "answer_a": self.answer_a, "answer_b": self.answer_b, "winner": winner, "voter": voter,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


class VoteLog:
    """Votes appended to a JSONL file (created with its folder on the first vote)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, vote: dict) -> None:
        if vote.get("winner") not in WINNERS:
            raise InputError(f"vote winner must be one of {WINNERS}, got {vote.get('winner')!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(vote, ensure_ascii=False) + "\n")

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


def make_matches(answers: dict[str, dict[str, str]], prompts: list[str], seed: int = 0,
                 rounds: int = 1) -> list[Match]:
    """Matches for every prompt (times `rounds`): a pair of models (the pairs dealt out evenly,
    then shuffled), in a random left/right order. answers: model -> prompt -> answer."""
    models = sorted(answers)
    if len(models) < 2:
        raise InputError("an arena needs at least two models")
    rng = random.Random(seed)
    pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
    matches = []
    for _ in range(rounds):
        order = pairs * (len(prompts) // len(pairs) + 1)
        rng.shuffle(order)
        for prompt, (x, y) in zip(prompts, order):
            if rng.random() < 0.5:
                x, y = y, x
            matches.append(Match(len(matches), prompt, x, y, answers[x][prompt], answers[y][prompt]))
    return matches


# ---------------------------------------------------------------- ratings


def _outcomes(votes: Iterable[dict]) -> list[tuple[str, str, float]]:
    """(model_a, model_b, score of a: 1, 0 or 0.5) per vote."""
    score = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}
    return [(v["model_a"], v["model_b"], score[v["winner"]]) for v in votes if v["model_a"] != v["model_b"]]


def bradley_terry(outcomes: list[tuple[str, str, float]], models: list[str] | None = None, prior: float = 0.1,
                  max_iter: int = 1000, tol: float = 1e-9) -> dict[str, float]:
    """Elo-scale ratings (mean 1000) of the Bradley-Terry maximum-likelihood strengths."""
    models = sorted(models or {m for a, b, _ in outcomes for m in (a, b)})
    index = {m: i for i, m in enumerate(models)}
    k = len(models)
    wins = np.zeros((k, k))  # wins[i, j]: (fractional) wins of i over j
    for a, b, s in outcomes:
        wins[index[a], index[b]] += s
        wins[index[b], index[a]] += 1.0 - s
    wins += (prior / 2) * (1 - np.eye(k))
    games = wins + wins.T
    p = np.ones(k)
    for _ in range(max_iter):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        new = wins.sum(axis=1) / denom
        new /= np.exp(np.log(new).mean())  # geometric mean 1: the scale is otherwise free
        if np.max(np.abs(new - p)) < tol:
            p = new
            break
        p = new
    return {m: float(1000 + 400 * np.log10(p[index[m]])) for m in models}


def ratings(votes: list[dict], bootstrap: int = 200, seed: int = 0, prior: float = 0.1) -> list[dict]:
    """Leaderboard rows, best first: model, rating, ci_low, ci_high, battles, wins, losses, ties."""
    outcomes = _outcomes(votes)
    if not outcomes:
        return []
    models = sorted({m for a, b, _ in outcomes for m in (a, b)})
    point = bradley_terry(outcomes, models, prior)
    rng = np.random.default_rng(seed)
    samples = {m: [] for m in models}
    for _ in range(bootstrap):
        pick = rng.integers(0, len(outcomes), len(outcomes))
        fit = bradley_terry([outcomes[i] for i in pick], models, prior)
        for m in models:
            samples[m].append(fit[m])
    rows = []
    for m in models:
        mine = [(s if a == m else 1 - s) for a, b, s in outcomes if m in (a, b)]
        row = {"model": m, "rating": point[m], "battles": len(mine), "wins": sum(x == 1 for x in mine),
               "losses": sum(x == 0 for x in mine), "ties": sum(x == 0.5 for x in mine)}
        if bootstrap:
            row["ci_low"], row["ci_high"] = (float(x) for x in np.percentile(samples[m], [2.5, 97.5]))
        rows.append(row)
    return sorted(rows, key=lambda r: -r["rating"])


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "no votes yet"
    lines = [f"{'rank':>4}  {'model':<20} {'rating':>7}  {'95% CI':>15}  {'battles':>7}  {'W-L-T':>9}"]
    for i, r in enumerate(rows, 1):
        ci = f"{r['ci_low']:.0f} .. {r['ci_high']:.0f}" if "ci_low" in r else "-"
        lines.append(f"{i:>4}  {r['model']:<20} {r['rating']:>7.1f}  {ci:>15}  {r['battles']:>7}  "
                     f"{r['wins']}-{r['losses']}-{r['ties']:<3}")
    return "\n".join(lines)


def rating_metrics(rows: list[dict]) -> dict[str, float]:
    """MLflow metrics: arena/<model>/rating, ci_low, ci_high, battles."""
    return {metric_name("arena", r["model"], key): float(r[key])
            for r in rows for key in ("rating", "ci_low", "ci_high", "battles") if key in r}


# ---------------------------------------------------------------- voters


def judge_votes(matches: list[Match], client, log: VoteLog, swap: bool = True,
                progress: bool = True) -> list[dict]:
    """Let a judge model (evaluation.judge.ChatClient) vote on every match. With swap, it also
    judges the answers in the other order; a verdict that flips with the order is a tie."""
    from tqdm import tqdm

    votes = []
    for m in tqdm(matches, desc="judge votes", unit="match", disable=not progress):
        first = judge_pair(client, m.prompt, m.answer_a, m.answer_b)
        if swap:
            second = {"a": "b", "b": "a", "tie": "tie"}[judge_pair(client, m.prompt, m.answer_b, m.answer_a)]
            first = first if first == second else "tie"
        vote = m.vote(first, voter=f"judge:{client.model}")
        log.append(vote)
        votes.append(vote)
    return votes


def simulate_votes(strengths: dict[str, float], n: int, seed: int = 0, tie_rate: float = 0.0) -> list[dict]:
    """Votes drawn from known Bradley-Terry strengths (for tests and sanity checks)."""
    rng = random.Random(seed)
    models = sorted(strengths)
    votes = []
    for _ in range(n):
        a, b = rng.sample(models, 2)
        if rng.random() < tie_rate:
            winner = "tie"
        else:
            winner = "model_a" if rng.random() < strengths[a] / (strengths[a] + strengths[b]) else "model_b"
        votes.append({"model_a": a, "model_b": b, "winner": winner, "prompt": "", "answer_a": "", "answer_b": "",
                      "voter": "simulated"})
    return votes


def answer_all(models: dict[str, Callable[[str], str]], prompts: list[str], progress: bool = True) -> dict:
    """model -> prompt -> answer."""
    from tqdm import tqdm

    answers: dict[str, dict[str, str]] = {}
    for name, answer in models.items():
        answers[name] = {p: answer(p) for p in tqdm(prompts, desc=f"answers of {name}", unit="prompt",
                                                      disable=not progress)}
    return answers


def checkpoint_answerer(path: str | Path, max_new_tokens: int = 128, chat: bool = True,
                        temperature: float = 0.0, seed: int = 0) -> Callable[[str], str]:
    """A function prompt -> answer from an ownlm checkpoint (chat layout by default)."""
    from model.checkpoint import load_model, load_tokenizer
    from model.generate import generate_text
    model, _ = load_model(path)
    model.eval()
    tok = load_tokenizer(path)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)

    def answer(prompt: str) -> str:
        text = chat_prompt([{"role": "user", "content": prompt}]) if chat else prompt
        return generate_text(model, tok, text, params, stop=[END_OF_TURN, "<|user|>"] if chat else None).strip()

    return answer


def load_prompts(path: str | Path | None = None) -> list[str]:
    """Prompts from a JSONL ({"prompt": ...} per line) or a text file (one per line); default:
    the bundled arena prompts."""
    if path is None:
        path = TASKS_DIR / "arena_prompts.jsonl"
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"prompts file {path} not found")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        prompts = [json.loads(line)["prompt"] for line in lines]
    else:
        prompts = lines
    if not prompts:
        raise InputError(f"{path} holds no prompts")
    return list(dict.fromkeys(prompts))
