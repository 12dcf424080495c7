"""The kind detector (code, prose, markup) on real and edge-case texts, and a mixed JSONL of real
standard-library modules and real prose through the per-document steps: each gets its own rules."""
from __future__ import annotations

import difflib
import heapq
import json
import pydoc
import random
import subprocess
import sysconfig
import textwrap
from pathlib import Path

import pytest
from curate_inputs import mixed_corpus, rows_of

from pipeline.config import SourceConfig
from pipeline.config.curate import CurateConfig
from pipeline.curate.decontaminate import build_index
from pipeline.curate.kinds import CODE, MARKUP, PROSE, code_score, detect
from pipeline.curate.run import batch_steps

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.mark.parametrize("module", ["json/decoder.py", "textwrap.py", "shlex.py", "heapq.py", "contextvars.py",
                                    "dataclasses.py", "email/utils.py", "this.py"])
def test_real_modules_are_code_without_their_file_name(module):
    kind, score, basis = detect((STDLIB / module).read_text())
    assert (kind, basis) == (CODE, "content") and score >= 0.5


def test_real_prose_is_prose():
    from pydoc_data.topics import topics

    docstrings = [pydoc.getdoc(module) for module in (subprocess, difflib, random, heapq)]
    for text in (topics["assignment"], topics["exceptions"], topics["with"], (STDLIB / "LICENSE.txt").read_text(),
                 pydoc.getdoc(textwrap.TextWrapper), *docstrings):
        kind, score, _ = detect(text)
        assert kind == PROSE and score < 0.5, text[:200]
    wrong = [name for name, text in topics.items() if detect(text)[0] != PROSE]
    assert len(wrong) <= len(topics) // 20, wrong  # the language reference: prose with code examples in it


def test_a_pydoc_page_and_xml_are_markup():
    page = pydoc.html.page("json", pydoc.html.document(json, "json"))
    assert detect(page)[0] == MARKUP
    assert detect('<?xml version="1.0"?>\n<note><to>Tove</to></note>') == (MARKUP, 1.0, "content")
    fragment = ("<div class='post'>\n<p>Hello there, this is a page.</p>\n<ul>\n<li>One</li>\n<li>Two</li>\n"
                "</ul>\n</div>")
    assert detect(fragment)[0] == MARKUP
    assert detect("Use <b>bold</b> sparingly, the style guide says, and never in a heading of a page.")[0] == PROSE


@pytest.mark.parametrize("path, kind", [
    ("src/tool.py", CODE), ("Makefile", CODE), ("web/app.jsx", CODE), ("conf/settings.yaml", CODE),
    ("README.md", PROSE), ("docs/index.rst", PROSE), ("site/a.html", MARKUP), ("img/logo.svg", MARKUP),
])
def test_a_file_name_decides_over_the_content(path, kind):
    text = "The quick brown fox jumps over the lazy dog, as it does every day."
    assert detect(text, path) == (kind, 1.0, "extension")


def test_a_name_that_says_nothing_leaves_it_to_the_content():
    assert detect("def f(x):\n    return x + 1\n\nprint(f(2))\n", "notes.txt")[2] == "content"
    assert detect("import os\nprint(os.getcwd())\n", "LICENSE")[0] == CODE


SHELL = """\
set -e
cd "$(dirname "$0")"
for f in *.txt; do
  echo "processing $f"
  wc -l "$f" >> counts.log
done
if [ -f counts.log ]; then
  cat counts.log
fi
"""
MARKDOWN = """\
# ownlm

ownlm builds private language models from raw text. It reads your documents, cleans them and
trains a small model on them, all on your own machines.

## Install

You need Python 3.11 and a few gigabytes of disk space for the sample corpus.

```bash
pip install ownlm
ownlm run --config quickstart
```

## Use it from Python

```python
from pipeline.config import load_config
from pipeline.run import run_pipeline

cfg = load_config("configs/quickstart.yaml")
result = run_pipeline(cfg)
for name in result["ran"]:
    print(name, result["summaries"][name])
```

The report of each stage is in MLflow, and the curated corpus is in the storage root.
"""
YAML = """\
name: tests
on:
  push:
    branches: [main]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: pip install -e .[dev]
      - run: pytest -q
"""
TOML = ('[project]\nname = "ownlm"\nversion = "0.1.0"\ndependencies = ["ray[data]>=2.9", "torch"]\n\n'
        "[tool.ruff]\nline-length = 120\n")
C = '#include <stdio.h>\n\nint main(int argc, char **argv) {\n    for (int i = 0; i < argc; i++) {\n' \
    '        printf("%s\\n", argv[i]);\n    }\n    return 0;\n}\n'


@pytest.mark.parametrize("text, kind", [
    (SHELL, CODE),
    ("#!/bin/sh\necho hello\n", CODE),                       # a shebang decides
    (MARKDOWN, PROSE),                                       # the fenced examples do not vote
    (json.dumps({"name": "ownlm", "version": "0.1.0", "scripts": {"test": "pytest"}, "private": True}, indent=2), CODE),
    (json.dumps({"name": "ownlm", "tags": ["a", "b"]}), CODE),  # data on one line
    (YAML, CODE),
    (TOML, CODE),
    (C, CODE),
    ("Use `json.loads()` to parse a string and `json.dumps()` to write one; the second takes an indent.", PROSE),
    ("Thanks, that fixed it for me!", PROSE),
    ("print('hello')", CODE),                                # one statement
    ("ok thanks", PROSE),                                    # no evidence: prose
    ("", PROSE),
    ("   \n\n  ", PROSE),
])
def test_edge_cases(text, kind):
    assert detect(text)[0] == kind


def test_the_score_counts_line_votes_and_leans_short_texts_to_prose():
    assert code_score("x = 1") == (0.5, 1, 0)
    assert code_score("The cat sat on the mat and looked at the door.\nx = 1") == (1 / 3, 1, 1)
    score, code, prose = code_score((STDLIB / "textwrap.py").read_text())
    assert score > 0.8 and code >= 16 and prose < code / 3


def test_mixed_jsonl_gets_code_rules_for_code_and_text_rules_for_prose(tmp_path):
    """A JSONL of real standard-library modules, real prose (the language reference's topics, the
    LICENSE) and junk, without a kind per row: with kind auto each gets its own rules."""
    corpus = mixed_corpus(tmp_path / "mixed.jsonl")
    cfg = CurateConfig()
    steps = batch_steps(cfg, build_index(cfg.decontaminate, tmp_path))

    def kept(kind: str) -> dict[str, list[dict]]:
        rows = rows_of(SourceConfig(name="mixed", kind=kind, format="jsonl", path=str(tmp_path / "mixed.jsonl")),
                       tmp_path, cfg.read, steps)
        out: dict[str, list[dict]] = {"code": [], "prose": [], "junk": []}
        for row in rows:
            if "#" not in row["id"] or row["id"].endswith("#0"):  # a split document counts once
                out[json.loads(row["meta"])["truth"]].append(row)
        return out

    before, after = kept("web"), kept("auto")
    share = {k: sum(r["reason"] == "" for r in rows) / len(rows) for k, rows in after.items()}
    assert len(after["code"]) == len(corpus["code"]) and len(after["prose"]) == len(corpus["prose"])
    assert share["code"] >= 0.9 and share["prose"] >= 0.9 and share["junk"] == 0, share
    assert sum(r["reason"] == "" for r in before["code"]) / len(before["code"]) < 0.2  # the web rules' toll
    detected = [json.loads(r["meta"])["kind_detected"] for r in after["code"]]
    assert detected.count("code") >= 0.95 * len(detected)
    meta = json.loads(after["code"][0]["meta"])
    assert meta["kind_by"] == "content" and 0.5 <= meta["kind_score"] <= 1 and after["code"][0]["kind"] == "code"
    assert {r["kind"] for r in after["prose"]} <= {"prose", "code"} and "lang" not in json.loads(meta_of(after, "code"))
    assert all(r["reason"] for r in after["junk"])


def meta_of(rows: dict, truth: str) -> str:
    return next(r["meta"] for r in rows[truth] if r["reason"] == "")
