"""The HTML report shows every section."""
from __future__ import annotations


def test_html_report_shows_every_section():
    from pipeline.curate.report_html import render_html

    report = {"input": {"docs": 10, "bytes": 1000}, "output": {"path": "/out", "docs": 4, "bytes": 400},
              "rejected": {"docs": 6}, "seconds": 1.5,
              "steps": {"read": {"docs": 10, "bytes": 1000}, "quality": {"docs": 5, "bytes": 500},
                        "output": {"docs": 4, "bytes": 400}},
              "rejects": {"too_short": 5, "near_duplicate": 1}, "rejects_by_source": {"web": {"too_short": 5}},
              "reject_causes": {"too_short": "curate.quality.gopher_quality.min_words (text kinds)",
                                "near_duplicate": "curate.dedup.fuzzy.threshold"},
              "sources": {"web": {"format": "warc", "kind": "web", "files": 1, "docs": 10, "kept_docs": 4,
                                  "bytes": 1000, "kept_bytes": 400, "kinds": {"web": 10}},
                          "mix": {"format": "jsonl", "kind": "auto", "files": 1, "docs": 3, "kept_docs": 3,
                                  "bytes": 10, "kept_bytes": 10, "kinds": {"code": 2, "prose": 1}}},
              "kinds": {"web": {"docs": 10, "kept": 4, "by": {"source": 10, "record": 0, "detected": 0}},
                        "code": {"docs": 2, "kept": 2, "by": {"source": 0, "record": 0, "detected": 2}}},
              "languages": {"en": {"docs": 9, "kept": 4}, "<b>": {"docs": 1, "kept": 0}},
              "dedup": {"exact": {"duplicates": 0, "clusters": {}},
                        "fuzzy": {"duplicates": 1, "clusters": {"2": 1}, "threshold": 0.8, "bands": 9, "rows": 13,
                                  "candidate_pairs": 2, "verified_pairs": 1}},
              "pii": {"email": 3, "phone": 0}, "timing": {"cpu_seconds": {"quality": 0.5}},
              "decontamination": {"files": ["/x/pyfacts.jsonl"], "texts": 42, "ngram": 13, "mode": "drop"}}
    html = render_html(report)
    for needle in ("Kept after each step", "too_short", "near_duplicate", "Languages", "size 2", "email",
                   "9 bands x 13 rows", "pyfacts.jsonl", "&lt;b&gt;", "curate.quality.gopher_quality.min_words",
                   "curate.dedup.fuzzy.threshold", "Kinds", "auto <span class=muted>(code 2, prose 1)</span>"):
        assert needle in html
    assert "<script" not in html
