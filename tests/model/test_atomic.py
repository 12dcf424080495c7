"""Publishing a finished folder: a reader sees the old one or the new one, never a mix or nothing."""
from __future__ import annotations

import os

import pytest

from model import atomic


def folder(path, **files):
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_publish_replaces_a_folder_whole_and_leaves_nothing_behind(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    dest = folder(tmp_path / "out", old="1", stale="x")
    tmp = atomic.staging_dir(dest)
    (tmp / "new").write_text("2")
    atomic.publish_dir(tmp, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .tmp, no .old


def test_publish_into_a_new_place(tmp_path):
    tmp = atomic.staging_dir(tmp_path / "a" / "b")
    (tmp / "x").write_text("1")
    assert (atomic.publish_dir(tmp, tmp_path / "a" / "b") / "x").read_text() == "1"


def test_the_exchange_is_one_step_where_linux_has_it(tmp_path):
    if atomic._renameat2() is None:
        pytest.skip("no renameat2 in this libc")
    a, b = folder(tmp_path / "a", f="a"), folder(tmp_path / "b", f="b")
    assert atomic._exchange(a, b)
    assert (a / "f").read_text() == "b" and (b / "f").read_text() == "a"


def test_a_publish_killed_between_its_renames_keeps_the_old_output(tmp_path):
    dest = tmp_path / "out"
    folder(tmp_path / ".out.old", old="1")  # the old output moved aside, the new one never arrived
    atomic.recover_dir(dest)
    assert (dest / "old").read_text() == "1"
    tmp = atomic.staging_dir(dest)
    (tmp / "new").write_text("2")
    atomic.publish_dir(tmp, dest)
    assert (dest / "new").read_text() == "2" and not (tmp_path / ".out.old").exists()


def test_staging_clears_what_a_killed_writer_left(tmp_path):
    leftover = folder(tmp_path / ".out.tmp", half="written")
    tmp = atomic.staging_dir(tmp_path / "out")
    assert tmp == leftover and list(tmp.iterdir()) == []


def test_write_text_replaces_a_file_whole(tmp_path):
    path = tmp_path / "state" / "x.json"
    atomic.write_text(path, "one")
    atomic.write_text(path, "two")
    assert path.read_text() == "two" and os.listdir(path.parent) == ["x.json"]
