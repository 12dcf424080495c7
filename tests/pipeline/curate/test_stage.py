"""The curate stage's checks before Ray: a source that holds nothing fails at once, naming it."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from pipeline.config import load_config
from pipeline.curate.records import CurateError
from pipeline.curate.stage import check_sources, input_sources
from pipeline.stage import Context
from pipeline.stages import layout_for
from pipeline.tracking import Tracker


def empty_inputs(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "blanks" / "sub").mkdir(parents=True)
    for rel in ("a.txt", "b.py", "sub/c.html"):
        (tmp_path / "blanks" / rel).write_bytes(b"")
    (tmp_path / "fine.txt").write_text("A fine document with words in it.\n")
    return [str(tmp_path / "empty.jsonl"), str(tmp_path / "blanks"), str(tmp_path / "fine.txt")]


def test_check_sources_names_every_source_of_empty_files(tmp_path):
    cfg = load_config(None, ["tracking.enabled=false"], root=str(tmp_path / "root"),
                      values=input_sources(empty_inputs(tmp_path)))
    ctx = Context(cfg, layout_for(cfg.root), Tracker(cfg, enabled=False), planned=("curate",))
    start = time.perf_counter()
    with pytest.raises(CurateError) as err:
        check_sources(ctx)
    assert time.perf_counter() - start < 5  # a listing, not a read
    message = str(err.value)
    assert message.startswith("2 sources cannot be read")
    assert "source 'empty.jsonl' (jsonl)" in message and "its one file is empty (0 bytes: empty.jsonl)" in message
    assert "source 'blanks' (auto)" in message
    assert "all its 3 files are empty (0 bytes: a.txt, b.py, sub/c.html)" in message
    assert "fine.txt" not in message


def test_cli_refuses_empty_sources_before_starting_ray(tmp_path):
    inputs = [arg for path in empty_inputs(tmp_path)[:2] for arg in ("--input", path)]
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "curate", *inputs, "--output", str(tmp_path / "out"),
                          "--root", str(tmp_path / "root"), "--set", "tracking.enabled=false"],
                         capture_output=True, text=True, timeout=120, check=False)
    seconds = time.perf_counter() - start
    assert out.returncode == 1, out.stderr
    assert "holds no documents" in out.stderr and "Traceback" not in out.stderr
    assert "Ray" not in out.stdout + out.stderr and not (tmp_path / "out").exists()
    assert seconds < 60  # the interpreter and the CLI's imports; no Ray start, no pass over the data
