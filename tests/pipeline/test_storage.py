"""pipeline/storage.py on local disk and on a real S3-compatible server (moto): joining, listing,
reading and writing, atomic publishing (no half file or folder visible), node-local copies."""
from __future__ import annotations

import os
import pickle
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline import storage
from pipeline.config import ConfigError, load_config
from pipeline.stages import layout_for
from tests.s3server import BUCKET


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """An empty folder: on local disk, or a fresh prefix in the test bucket."""
    if request.param == "local":
        return storage.resolve(str(tmp_path / "root"))
    request.getfixturevalue("s3_server")
    return storage.resolve(f"s3://{BUCKET}/unit/{uuid.uuid4().hex[:8]}")


def test_resolve_keeps_local_paths_plain_and_uris_remote(tmp_path, s3_server):
    assert storage.resolve(str(tmp_path)) == tmp_path and isinstance(storage.resolve(str(tmp_path)), Path)
    assert storage.resolve(f"file://{tmp_path}") == tmp_path
    remote = storage.resolve(f"s3://{BUCKET}/a/b/")
    assert isinstance(remote, storage.RemotePath)
    assert str(remote) == f"s3://{BUCKET}/a/b"
    assert str(remote / "c" / "d.json") == f"s3://{BUCKET}/a/b/c/d.json"
    assert (remote / "d.json").name == "d.json" and (remote / "d.json").suffix == ".json"
    assert (remote / "d.json").parent == remote
    assert (remote / "x.txt").with_name("y.txt") == remote / "y.txt"
    assert storage.filesystem(remote / "f")[1] == f"{BUCKET}/a/b/f"
    assert storage.is_remote(f"s3://{BUCKET}/x") and not storage.is_remote(str(tmp_path))


def test_read_write_list_and_remove(root):
    (root / "a" / "one.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "a" / "one.txt").write_text("one")
    (root / "a" / "two.parquet").write_bytes(b"2")
    (root / "a" / "sub").mkdir(parents=True, exist_ok=True)
    (root / "a" / "sub" / "three.txt").write_text("three")
    assert (root / "a" / "one.txt").read_text() == "one"
    assert (root / "a" / "one.txt").is_file() and (root / "a").is_dir() and not (root / "nope").exists()
    assert (root / "a" / "one.txt").stat().st_size == 3
    assert [p.name for p in (root / "a").glob("*.parquet")] == ["two.parquet"]
    assert sorted(p.name for p in (root / "a").iterdir()) == ["one.txt", "sub", "two.parquet"]
    with (root / "a" / "one.txt").open("rb") as f:
        assert f.read() == b"one"
    (root / "a" / "one.txt").unlink()
    (root / "a" / "one.txt").unlink(missing_ok=True)
    assert not (root / "a" / "one.txt").exists()
    storage.rmtree(root / "a")
    assert not (root / "a" / "sub" / "three.txt").exists()
    storage.rmtree(root / "a")  # nothing there is fine


def test_atomic_write_shows_nothing_until_done_and_nothing_after_a_failure(root):
    dest = root / "out" / "file.bin"
    with storage.atomic_write(dest) as f:
        f.write(b"half")
        assert not dest.exists()  # a reader sees no half file
    assert dest.read_bytes() == b"half"
    with pytest.raises(RuntimeError), storage.atomic_write(dest) as f:
        f.write(b"partial new version")
        raise RuntimeError("writer died")
    assert dest.read_bytes() == b"half"  # the old version stays whole
    assert [p.name for p in (root / "out").iterdir()] == ["file.bin"]  # no temporary left behind


def test_parquet_and_numpy_go_through_the_same_writes(root):
    table = pa.table({"id": ["a", "b"], "n": [1, 2]})
    storage.write_table(table, root / "t.parquet")
    assert storage.read_table(root / "t.parquet").equals(table)
    rows = np.arange(12, dtype=np.uint16).reshape(3, 4)
    with storage.atomic_write(root / "rows.npy") as f:
        np.save(f, rows)
    np.testing.assert_array_equal(np.load(storage.local_copy(root / "rows.npy")), rows)


def test_publish_dir_replaces_the_whole_folder(root):
    dest = root / "tokens"
    for version in ("old", "new"):
        tmp = storage.staging_dir(dest)
        (tmp / "train").mkdir(parents=True, exist_ok=True)
        (tmp / "train" / f"shard-{version}.npy").write_bytes(version.encode())
        (tmp / "manifest.json").write_text(version)
        storage.publish_dir(tmp, dest)
        assert not tmp.exists()
    assert (dest / "manifest.json").read_text() == "new"
    assert [p.name for p in (dest / "train").iterdir()] == ["shard-new.npy"]  # nothing of the old one


def test_remote_publish_places_the_markers_last_and_removes_them_first(s3_server, monkeypatch):
    """S3 has no folder rename: files move one by one, the top-level JSON files (the outputs the
    runner checks) after every other file, and go first when an old version is removed."""
    root = storage.resolve(f"s3://{BUCKET}/order/{uuid.uuid4().hex[:8]}")
    events = []
    for version in ("old", "new"):
        tmp = storage.staging_dir(root / "out")
        (tmp / "part-0.parquet").write_bytes(version.encode())
        (tmp / "z-part.parquet").write_bytes(version.encode())
        (tmp / "rejects" / "part-0.parquet").write_bytes(version.encode())
        (tmp / "report.json").write_text(version)
        if version == "new":
            fs = tmp.fs
            monkeypatch.setattr(storage, "_files_markers_first", _recording(storage._files_markers_first, events))
        storage.publish_dir(tmp, root / "out")
    removed, moved = events
    assert removed[0].endswith("out/report.json")  # the old marker goes first
    assert moved[-1].endswith(".out.tmp/report.json")  # publish walks this list backwards: the marker last
    assert (root / "out" / "report.json").read_text() == "new"
    assert (root / "out" / "rejects" / "part-0.parquet").read_bytes() == b"new"
    assert fs.get_file_info(f"{root.path}/.out.tmp").type.name == "NotFound"


def _recording(fn, events):
    def wrapper(folder):
        out = fn(folder)
        events.append(out if not folder.name.startswith(".") else list(reversed(out)))
        return out
    return wrapper


def test_upload_and_local_copy_round_trip(root, tmp_path, monkeypatch):
    monkeypatch.setenv("OWNLM_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "model"
    (local / "sub").mkdir(parents=True)
    (local / "config.json").write_text("{}")
    (local / "sub" / "w.bin").write_bytes(b"weights")
    storage.upload_dir(local, root / "model")
    copy = storage.local_copy(root / "model")
    assert isinstance(copy, Path)
    assert (copy / "config.json").read_text() == "{}" and (copy / "sub" / "w.bin").read_bytes() == b"weights"
    assert storage.local_copy(root / "model") == copy  # cached while unchanged
    (root / "model" / "config.json").write_text('{"changed": 1}')
    assert (storage.local_copy(root / "model") / "config.json").read_text() == '{"changed": 1}'


def test_local_output_uploads_a_remote_destination_only_when_the_block_succeeds(s3_server):
    dest = storage.resolve(f"s3://{BUCKET}/export/{uuid.uuid4().hex[:8]}/model")
    with pytest.raises(RuntimeError), storage.local_output(dest) as out:
        out.mkdir()
        (out / "config.json").write_text("{}")
        raise RuntimeError("export failed")
    assert not dest.exists()
    with storage.local_output(dest) as out:
        out.mkdir()
        (out / "config.json").write_text("{}")
    assert (dest / "config.json").read_text() == "{}"


def test_a_pickled_remote_path_carries_its_credentials(s3_server, monkeypatch):
    path = storage.resolve(f"s3://{BUCKET}/pickled/x.txt")
    path.write_text("reachable")
    for name in storage.CREDENTIAL_ENV:  # as in a Ray worker started before they were set
        monkeypatch.delenv(name, raising=False)
    assert pickle.loads(pickle.dumps(path)).read_text() == "reachable"


def test_worker_env_forwards_the_storage_variables(s3_server):
    env = storage.worker_env()
    assert env["AWS_ENDPOINT_URL"] == s3_server and env["AWS_ACCESS_KEY_ID"] == "testing"
    assert set(env) <= set(storage.CREDENTIAL_ENV)


def test_layout_and_records_live_under_a_remote_root(s3_server):
    cfg = load_config("debug", ["tracking.enabled=false"], root=f"s3://{BUCKET}/layout")
    layout = layout_for(cfg.root)
    assert str(layout.tokens) == f"s3://{BUCKET}/layout/tokens"
    assert str(layout.with_paths(tokens=f"s3://{BUCKET}/elsewhere").tokens) == f"s3://{BUCKET}/elsewhere"
    assert layout.expand("{root}/raw/*.jsonl") == f"s3://{BUCKET}/layout/raw/*.jsonl"
    from pipeline.records import StageRecords

    records = StageRecords(layout)
    records.write("curate", {"fingerprint": "abc"})
    assert records.read("curate") == {"fingerprint": "abc"}
    records.clear("curate")
    assert records.read("curate") is None


def test_a_remote_root_needs_a_tracking_store_of_its_own(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match="tracking.uri"):
        load_config("debug", root="s3://bucket/prefix")
    assert load_config("debug", ["tracking.uri=sqlite:////tmp/x.db"], root="s3://bucket/prefix").remote_root
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")  # how a cluster's jobs find the server
    assert load_config("debug", root="s3://bucket/prefix").tracking_uri == "http://127.0.0.1:5000"


def test_local_paths_are_unchanged(tmp_path):
    assert os.fspath(layout_for(tmp_path).tokens) == str(tmp_path / "tokens")
    assert isinstance(load_config("debug", root=str(tmp_path)).root, Path)


def test_an_edited_source_on_s3_changes_the_curate_fingerprint(s3_server):
    from pipeline.curate.stage import source_files
    from pipeline.stage import Context
    from pipeline.tracking import Tracker

    root = f"s3://{BUCKET}/sources/{uuid.uuid4().hex[:8]}"
    cfg = load_config("debug", ["tracking.enabled=false"], root=root, values={
        "data.sample": False, "data.sources": [{"name": "s", "format": "jsonl", "path": "{root}/raw/*.jsonl"}]})
    ctx = Context(cfg, layout_for(cfg.root), Tracker(cfg, enabled=False))
    (cfg.root / "raw" / "a.jsonl").write_text('{"text": "one"}\n')
    before = source_files(ctx)
    assert [e[1:3] for e in before["inputs"]] == [[f"{cfg.root.path}/raw/a.jsonl", 16]]
    (cfg.root / "raw" / "a.jsonl").write_text('{"text": "one two"}\n')
    assert source_files(ctx) != before
