"""The bundled sample corpus: layout, planted cases, idempotence, determinism."""
from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from pipeline.sample.corpus import MARKER, read_marker
from pipeline.sample.stage import build_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    dest = tmp_path_factory.mktemp("s") / "sample"
    return dest, build_sample(dest)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_matches_the_quickstart_sources(sample):
    dest, marker = sample
    assert marker["python"] == sys.version
    assert 60 <= len(list((dest / "web").glob("*.html"))) == marker["files"]["web"] <= 120
    assert (dest / "code" / "json" / "decoder.py").is_file()
    assert len(list((dest / "prose").glob("*.txt"))) == marker["files"]["prose"] > 50
    assert (dest / "forum" / "posts.jsonl").is_file()
    assert 3e6 <= marker["total_bytes"] <= 6e6
    assert 1.5e6 <= marker["bytes"]["code"] <= 2.2e6
    assert not list(dest.parent.glob(".sample.*")), "no temporary folder left behind"


def test_pages_are_pydoc_html_free_of_this_machine(sample):
    dest, _ = sample
    page = (dest / "web" / "json.html").read_text()
    assert "<title>Python: package json</title>" in page
    assert sys.base_prefix not in page and not any(c in page for c in ("at 0x7f", "at&nbsp;0x7f"))


def test_code_tree_plants_files_to_skip(sample):
    dest, marker = sample
    planted = marker["code_planted"]
    assert set(planted) == {"binary", "too_large", "vendored", "build_artifact", "invalid_utf8"}
    code = dest / "code"
    assert b"\x00" in (code / planted["binary"]).read_bytes()
    assert (code / planted["too_large"]).stat().st_size > 200_000
    assert "__pycache__" in planted["build_artifact"] and "third_party" in planted["vendored"]
    with pytest.raises(UnicodeDecodeError):
        (code / planted["invalid_utf8"]).read_bytes().decode("utf-8")


def test_forum_plants_what_the_marker_says(sample):
    dest, marker = sample
    forum = marker["forum"]
    lines = (dest / "forum" / "posts.jsonl").read_text().splitlines()
    assert len(lines) == forum["lines"] == forum["posts"] + 1
    posts, broken = [], 0
    for line in lines:
        try:
            posts.append(json.loads(line))
        except ValueError:
            broken += 1
    assert broken == forum["malformed_json"] == 1
    assert all(set(p) == {"id", "text", "url"} for p in posts)
    assert len({p["id"] for p in posts}) == len(posts)
    copies = Counter(p["text"] for p in posts)
    assert sum(n - 1 for n in copies.values()) == forum["exact_duplicates"] > 5
    texts = "\n".join(p["text"] for p in posts)
    assert sum(1 for p in posts if any(e in p["text"] for e in marker["pii"]["emails"])) >= forum["with_email"] > 5
    assert sum(1 for p in posts if any(n in p["text"] for n in marker["pii"]["phones"])) >= forum["with_phone"] > 5
    assert any(p["text"] == "\n".join([p["text"].split("\n")[0]] * 30) for p in posts)
    assert sum(len(p["text"].split()) < 20 for p in posts) == forum["too_short"]
    assert forum["near_duplicates"] > 3 and "Thanks in advance!" in texts
    for kind, values in marker["pii"].items():
        if kind not in ("emails", "phones"):
            assert sum(1 for p in posts if any(v in p["text"] for v in values)) >= forum["other_pii"][kind] >= 1


def test_sample_plants_posts_quoting_the_bundled_eval_task(sample):
    dest, marker = sample
    questions = [json.loads(line)["question"]
                 for line in (Path(__file__).resolve().parents[2] / "evaluation" / "tasks" / "pyfacts.jsonl")
                 .read_text().splitlines() if line]
    posts = (dest / "forum" / "posts.jsonl").read_text()
    quoted = [q for q in questions if json.dumps(q)[1:-1] in posts]
    assert len(quoted) == marker["forum"]["contaminated"] == 2 and all(len(q.split()) >= 10 for q in quoted)


def test_second_build_is_a_no_op(sample):
    dest, marker = sample
    before = (dest / MARKER).stat().st_mtime_ns
    assert build_sample(dest) == marker
    assert (dest / MARKER).stat().st_mtime_ns == before


def test_marker_of_another_python_means_rebuild(sample, tmp_path):
    dest, marker = sample
    stale = tmp_path / "sample"
    stale.mkdir()
    (stale / MARKER).write_text(json.dumps({**marker, "python": "2.7.18"}))
    assert read_marker(stale) is None
    assert read_marker(dest) == marker


def test_same_python_gives_identical_files(sample, tmp_path):
    dest, _ = sample
    again = tmp_path / "again"
    build_sample(again)
    assert digest(again) == digest(dest)
