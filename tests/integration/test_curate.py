"""Curation on a real Ray instance: the bundled sample (planted cases come out where they should),
every source format in one run, fuzzy dedup through Ray, and the report."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.config import SourceConfig, load_config
from pipeline.curate.pii import EMAIL, PHONE
from pipeline.curate.records import OUTPUT_COLUMNS, REJECT_COLUMNS, CurateError
from pipeline.curate.run import run_curate
from pipeline.stages import layout_for
from pipeline.sample.stage import build_sample

pytestmark = pytest.mark.integration


def read_rows(folder: Path) -> list[dict]:
    files = sorted(folder.glob("part-*.parquet"))
    return pq.read_table(files).to_pylist() if files else []


@pytest.fixture(scope="module")
def curated(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("curate")
    marker = build_sample(layout_for(root).sample)
    cfg = load_config(None, root=str(root))
    cfg.curate.rows_per_shard = 40
    out = layout_for(root).curated
    report = run_curate(cfg, layout_for(root), out)
    return {"root": root, "cfg": cfg, "marker": marker, "report": report, "out": out,
            "kept": read_rows(out), "rejects": read_rows(out / "rejects")}


def forum_posts(root: Path) -> list[dict]:
    posts = []
    for line in (layout_for(root).sample / "forum" / "posts.jsonl").read_text().splitlines():
        try:
            posts.append(json.loads(line))
        except ValueError:
            pass
    return posts


def test_output_files_have_the_document_columns(curated):
    out = curated["out"]
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == curated["report"]["output"]["files"] >= 8
    for part in parts:
        table = pq.read_table(part)
        assert table.column_names == list(OUTPUT_COLUMNS) and len(table) <= 40
    assert pq.read_table(sorted((out / "rejects").glob("*.parquet"))).column_names == list(REJECT_COLUMNS)
    assert json.loads((out / "report.json").read_text()) == curated["report"]
    kinds = {r["source"]: r["kind"] for r in curated["kept"]}
    assert kinds == {"pydoc-web": "web", "stdlib-code": "code", "python-reference": "prose", "forum-posts": "web"}
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".curated")) == []


def test_no_document_is_lost(curated):
    report, marker = curated["report"], curated["marker"]
    n_input = marker["files"]["web"] + marker["files"]["code"] + marker["files"]["prose"] + marker["forum"]["lines"]
    assert report["input"]["docs"] == n_input
    rows = curated["kept"] + curated["rejects"]
    born_later = sum(1 for r in rows if json.loads(r["meta"]).get("part", 0) > 0)  # split pieces
    assert n_input + born_later == len(rows)
    assert report["output"]["docs"] == len(curated["kept"]) == report["steps"]["output"]["docs"]
    assert sum(report["rejects"].values()) == len(curated["rejects"])
    for name, src in report["sources"].items():
        assert src["docs"] + sum(1 for r in rows if r["source"] == name and json.loads(r["meta"]).get("part", 0) > 0) \
            == src["kept_docs"] + sum(report["rejects_by_source"][name].values())
    steps = ["read", "normalize", "split", "language", "quality", "pii", "decontaminate", "exact_dedup",
             "fuzzy_dedup", "mixture", "output"]
    assert list(report["steps"]) == steps
    kept = [report["steps"][s]["docs"] for s in steps if s != "split"]
    assert kept == sorted(kept, reverse=True)
    assert len({(r["id"], r["source"]) for r in curated["kept"]}) == len(curated["kept"])


def test_exact_duplicates_leave_the_smallest_id(curated):
    by_text = defaultdict(list)
    for post in forum_posts(curated["root"]):
        by_text[post["text"]].append(post["id"])
    groups = [sorted(ids) for ids in by_text.values() if len(ids) > 1]
    assert len(groups) >= 5
    kept = {r["id"] for r in curated["kept"]}
    rejected = {r["id"]: r for r in curated["rejects"]}
    survivors = [ids for ids in groups if ids[0] in kept]
    assert len(survivors) >= 4  # the others' text was dropped by a quality rule
    for ids in survivors:
        assert not kept & set(ids[1:])
        for dup in ids[1:]:
            assert rejected[dup]["reason"] == "exact_duplicate"
            assert json.loads(rejected[dup]["meta"])["duplicate_of"] == ids[0]
    assert curated["report"]["dedup"]["exact"]["duplicates"] == curated["report"]["rejects"]["exact_duplicate"]


def test_near_duplicates_are_found_through_ray(curated):
    posts = forum_posts(curated["root"])
    variants = [p for p in posts if p["url"].endswith("?v=2")]
    assert len(variants) == curated["marker"]["forum"]["near_duplicates"] >= 4
    originals = {p["url"]: p["id"] for p in posts}
    rejected = {r["id"]: r for r in curated["rejects"]}
    kept = {r["id"] for r in curated["kept"]}
    found = 0
    for v in variants:
        original = originals[v["url"][: -len("?v=2")]]
        if original in kept:
            assert rejected[v["id"]]["reason"] == "near_duplicate"
            assert json.loads(rejected[v["id"]]["meta"])["duplicate_of"] == original
            found += 1
    assert found >= 4
    fuzzy = curated["report"]["dedup"]["fuzzy"]
    assert (fuzzy["bands"], fuzzy["rows"]) == (14, 9) and fuzzy["verified_pairs"] >= found
    assert fuzzy["duplicates"] == curated["report"]["rejects"]["near_duplicate"]


def test_planted_personal_data_and_secrets_are_redacted(curated):
    text = "\n".join(r["text"] for r in curated["kept"])
    marker = curated["marker"]
    for values in marker["pii"].values():
        for value in values:
            assert value not in text
    assert text.count(EMAIL) >= 5 and text.count(PHONE) >= 3
    pii = curated["report"]["pii"]
    kept_ids = {r["id"] for r in curated["kept"]}
    for kind, values in marker["pii"].items():
        if kind in ("emails", "phones"):
            continue
        planted_in_kept = sum(1 for p in forum_posts(curated["root"]) if p["id"] in kept_ids
                              and any(v in p["text"] for v in values))
        assert pii[kind] >= planted_in_kept, kind
    assert sum(pii.values()) >= 20
    assert "__version__ = '2.0.9'" in text  # version numbers survive (json/__init__.py)


def test_posts_quoting_the_eval_task_are_decontaminated(curated):
    quiz = [p["id"] for p in forum_posts(curated["root"]) if p["url"].endswith("?quiz=1")]
    rejected = {r["id"]: r["reason"] for r in curated["rejects"]}
    assert len(quiz) == 2 and [rejected[q] for q in quiz] == ["contaminated", "contaminated"]
    assert curated["report"]["decontamination"]["files"][0].endswith("pyfacts.jsonl")


def test_junk_is_rejected_with_its_reason(curated):
    reasons = defaultdict(int)
    for r in curated["rejects"]:
        if any(url in r["meta"] for url in ("/t/junk", "/t/spam")):
            reasons[r["reason"]] += 1
    planted = curated["marker"]["forum"]
    assert sum(reasons.values()) == planted["too_short"] + planted["symbol_soup"] + planted["repeated_lines"]
    code = {json.loads(r["meta"])["path"]: r["reason"] for r in curated["rejects"] if r["source"] == "stdlib-code"}
    for reason, path in curated["marker"]["code_planted"].items():
        assert code[path] == reason
    assert not any(r["source"] == "stdlib-code" and r["reason"].startswith(("gopher", "c4", "fineweb"))
                   for r in curated["rejects"])
    assert curated["report"]["languages"]["en"]["kept"] > 200


def test_malformed_json_line_is_counted_and_kept_raw(curated):
    assert curated["report"]["rejects"]["malformed_json"] == 1
    [bad] = [r for r in curated["rejects"] if r["reason"] == "malformed_json"]
    meta = json.loads(bad["meta"])
    lines = (layout_for(curated["root"]).sample / "forum" / "posts.jsonl").read_text().splitlines()
    assert bad["text"] == lines[meta["line"] - 1] and meta["path"] == "posts.jsonl"


def test_html_report_is_written(curated):
    html = (curated["out"] / "report.html").read_text()
    assert "Kept after each step" in html and "near_duplicate" in html and "forum-posts" in html


def test_rerun_replaces_output_with_the_same_bytes(curated):
    out = curated["out"]
    before = {p.name: p.read_bytes() for p in out.glob("part-*.parquet")}
    report = run_curate(curated["cfg"], layout_for(curated["root"]), out)
    assert {p.name: p.read_bytes() for p in out.glob("part-*.parquet")} == before
    assert report["output"] == curated["report"]["output"] and report["shards"]["reused_clean"] == 0
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".curated")) == []


def test_missing_path_is_a_clear_error(curated, tmp_path):
    inputs = [SourceConfig(name="lost", format="text", path="{root}/no/such/folder")]
    with pytest.raises(CurateError, match=r"source 'lost' \(text\): path '\{root\}/no/such/folder' .* does not exist"):
        run_curate(curated["cfg"], layout_for(curated["root"]), tmp_path / "out", inputs=inputs)
    assert not (tmp_path / "out").exists()


def test_source_without_documents_is_a_clear_error(curated, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n   \n")
    (tmp_path / "ok.txt").write_text("a perfectly fine document " * 10)
    inputs = [SourceConfig(name="fine", format="text", path=str(tmp_path / "ok.txt")),
              SourceConfig(name="blank", format="jsonl", path=str(tmp_path / "empty.jsonl"))]
    with pytest.raises(CurateError, match=r"source 'blank' \(jsonl\): 1 file\(s\) under .* hold no documents"):
        run_curate(curated["cfg"], layout_for(curated["root"]), tmp_path / "out", inputs=inputs)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.work").exists()
