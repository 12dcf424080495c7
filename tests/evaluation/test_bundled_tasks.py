from __future__ import annotations

import json
from pathlib import Path

import yaml

from evaluation.tasks import TASKS_DIR, bundled_tasks, include_path


def test_pyfacts_data_is_well_formed():
    rows = [json.loads(line) for line in (TASKS_DIR / "pyfacts.jsonl").read_text().splitlines()]
    assert len(rows) >= 40
    assert len({r["question"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r) == {"question", "choices", "answer"}
        assert len(r["choices"]) == 4 and len(set(r["choices"])) == 4, r
        assert r["answer"] in range(4), r
    # The right answer is not always in the same slot.
    assert {r["answer"] for r in rows} == {0, 1, 2, 3}


def test_include_path_holds_resolved_absolute_data_files():
    assert "ownlm_pyfacts" in bundled_tasks()
    folder = Path(include_path())
    assert folder != TASKS_DIR and folder.is_dir()
    cfg = yaml.safe_load((folder / "ownlm_pyfacts.yaml").read_text())
    data = Path(cfg["dataset_kwargs"]["data_files"]["test"])
    assert data.is_absolute() and data == TASKS_DIR / "pyfacts.jsonl"
    assert include_path() == str(folder)  # written once per process
