"""`--input` sources without a kind, through Ray: a JSONL mixing real standard-library modules,
real prose and junk, and a folder of HTML pages, source files and a README. Each document gets
its kind from its content or file name, and with it its rules."""
from __future__ import annotations

import json
import pydoc
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.config import load_config
from pipeline.curate.run import run_curate
from pipeline.curate.stage import input_sources
from pipeline.stages import layout_for
from tests.pipeline.curate.curate_inputs import STDLIB, mixed_corpus

pytestmark = pytest.mark.integration

PAGES = ("textwrap", "shlex", "heapq", "fnmatch")
CODE_FILES = ("email/base64mime.py", "email/quoprimime.py", "html/__init__.py", "urllib/robotparser.py",
              "wsgiref/util.py")
"""Not in the mixed JSONL (or they would be exact duplicates of its rows)."""


def rows(folder: Path) -> list[dict]:
    files = sorted(folder.glob("part-*.parquet"))
    return pq.read_table(files).to_pylist() if files else []


@pytest.fixture(scope="module")
def curated(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kinds")
    corpus = mixed_corpus(tmp / "mixed.jsonl")
    site = tmp / "site"
    for name in PAGES:
        module = __import__(name)
        (site / "pages").mkdir(parents=True, exist_ok=True)
        (site / "pages" / f"{name}.html").write_text(pydoc.html.page(name, pydoc.html.document(module, name)))
    for rel in CODE_FILES:
        (site / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / "src" / rel).write_text((STDLIB / rel).read_text())
    (site / "README.md").write_text((STDLIB / "LICENSE.txt").read_text())
    values = input_sources([str(tmp / "mixed.jsonl"), str(site)])
    cfg = load_config(None, ["tracking.enabled=false"], root=str(tmp / "root"), values=values)
    report = run_curate(cfg, layout_for(cfg.root), tmp / "out")
    return {"report": report, "out": tmp / "out", "corpus": corpus, "sources": cfg.data.sources}


def test_input_sources_are_auto(curated):
    assert [(s.name, s.format, s.kind) for s in curated["sources"]] == [("mixed.jsonl", "jsonl", "auto"),
                                                                         ("site", "auto", "auto")]


def test_mixed_jsonl_keeps_code_and_prose_and_drops_junk(curated):
    out, rejects = rows(curated["out"]), rows(curated["out"] / "rejects")
    kept: dict[str, set] = {"code": set(), "prose": set(), "junk": set()}
    for row in out:
        meta = json.loads(row["meta"])
        if row["source"] == "mixed.jsonl":
            kept[meta["truth"]].add(meta.get("parent", row["id"]))
    corpus = curated["corpus"]
    assert len(kept["code"]) >= 0.9 * len(corpus["code"]), curated["report"]["rejects_by_source"]
    assert len(kept["prose"]) >= 0.9 * len(corpus["prose"]), curated["report"]["rejects_by_source"]
    assert kept["junk"] == set()
    assert sum(json.loads(r["meta"]).get("truth") == "junk" for r in rejects) == len(corpus["junk"])
    code = [r for r in out if r["source"] == "mixed.jsonl" and json.loads(r["meta"])["truth"] == "code"]
    assert {r["kind"] for r in code} == {"code"} and all("lang" not in json.loads(r["meta"]) for r in code)


def test_folder_reads_pages_as_html_and_source_files_as_code(curated):
    site = [r for r in rows(curated["out"]) + rows(curated["out"] / "rejects") if r["source"] == "site"]
    by = {json.loads(r["meta"])["path"]: r for r in site}
    assert set(by) == {f"pages/{n}.html" for n in PAGES} | {f"src/{f}" for f in CODE_FILES} | {"README.md"}
    for name in PAGES:  # extracted text, judged as a web page (not raw markup judged as code)
        page = by[f"pages/{name}.html"]
        assert "<html" not in page["text"] and "</a>" not in page["text"] and page["kind"] in ("web", "code")
        assert json.loads(page["meta"])["title"]
    for rel in CODE_FILES:
        row = by[f"src/{rel}"]
        meta = json.loads(row["meta"])
        assert row["kind"] == "code" and row.get("reason", "") == "" and meta["language"] == "python"
        assert meta["kind_by"] == "extension"
        assert row["text"].split("\n")[0] == (STDLIB / rel).read_text().split("\n")[0]
    assert by["README.md"]["kind"] == "prose"


def test_report_counts_the_kinds_found(curated):
    report = curated["report"]
    kinds = report["kinds"]
    assert kinds["code"]["by"]["detected"] >= len(curated["corpus"]["code"]) + len(CODE_FILES)
    assert kinds["prose"]["by"]["detected"] >= 0.9 * len(curated["corpus"]["prose"])
    assert sum(k["by"]["source"] for k in kinds.values()) == 0
    assert set(report["sources"]["site"]["kinds"]) <= {"code", "web", "prose"}
    assert set(report["reject_causes"]) == set(report["rejects"])
    html = (curated["out"] / "report.html").read_text()
    assert "Kinds" in html and "auto <span class=muted>(" in html
