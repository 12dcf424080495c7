"""Curation as a user runs it: every source format in one run, `ownlm curate --input ...` from the
command line, mixture weights, and a run killed with SIGKILL that resumes where it stopped."""
from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import SourceConfig, load_config
from pipeline.curate.sources import infer_source
from pipeline.curate.run import run_curate
from pipeline.stages import layout_for

pytestmark = pytest.mark.integration

WORDS = ("time year people way day man thing woman life child world school state family student group country "
         "problem hand part place case week company system program question work government number night point "
         "home water room mother area money story fact month lot right study book eye job word business issue side "
         "kind head house service friend father power hour game line end member law car city community name").split()
GLUE = "the of and to a in that is was for with as on at by from have be this are it not or".split()


def prose(rng: random.Random, sentences: int = 12) -> str:
    """English-looking text: sentences of common words, glued by stop words, ending in periods."""
    out = []
    for _ in range(sentences):
        words = [rng.choice(WORDS) if i % 2 else rng.choice(GLUE) for i in range(rng.randint(9, 16))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out[:6]) + "\n\n" + " ".join(out[6:])


def warc_record(url: str, html: str) -> bytes:
    body = html.encode()
    http = f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    http += body
    head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>\r\n"
            f"WARC-Target-URI: {url}\r\nWARC-Date: 2024-01-01T00:00:00Z\r\n"
            f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(http)}\r\n\r\n").encode()
    return head + http + b"\r\n\r\n"


def write_warc(path: Path, rng: random.Random, n: int) -> None:
    pages = [f"<html><head><title>Page {i}</title></head><body><nav><a href=/>Home</a> <a href=/a>About us</a></nav>"
             f"<article><p>{prose(rng).replace(chr(10) * 2, '</p><p>')}</p></article>"
             f"<footer>All rights reserved.</footer></body></html>" for i in range(n)]
    path.write_bytes(b"".join(gzip.compress(warc_record(f"https://news.example/{i}", p)) for i, p in enumerate(pages)))


def read_rows(folder: Path) -> list[dict]:
    files = sorted(folder.glob("part-*.parquet"))
    return pq.read_table(files).to_pylist() if files else []


def test_every_format_in_one_run_with_mixture_weights(ray_session, tmp_path):
    rng = random.Random(0)
    write_warc(tmp_path / "crawl.warc.gz", rng, 6)
    (tmp_path / "books").mkdir()
    for i in range(3):
        (tmp_path / "books" / f"b{i}.md").write_text(f"# Book {i}\n\n" + prose(rng, 20))
    import zstandard

    web = [{"id": f"w{i}", "text": prose(rng)} for i in range(20)]
    (tmp_path / "web.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        "".join(json.dumps(r) + "\n" for r in web).encode()))
    pq.write_table(pa.table({"content": [prose(rng) for _ in range(4)]}), tmp_path / "fw.parquet")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text("def area(r):\n    return 3.14159 * r * r\n\n\nprint(area(2))\n")
    inputs = [infer_source(str(tmp_path / "crawl.warc.gz")), infer_source(str(tmp_path / "books")),
              SourceConfig(name="web", format="jsonl", path=str(tmp_path / "web.jsonl.zst"), curate_weight=0.5),
              SourceConfig(name="fw", format="parquet", path=str(tmp_path / "fw.parquet"), text_field="content",
                           curate_weight=2.0),
              SourceConfig(name="code", kind="code", format="code", path=str(tmp_path / "src"))]
    cfg = load_config(None, root=str(tmp_path / "root"))
    report = run_curate(cfg, layout_for(cfg.root), tmp_path / "out", inputs=inputs)
    kept = read_rows(tmp_path / "out")
    by_source: dict[str, list[dict]] = {}
    for r in kept:
        by_source.setdefault(r["source"], []).append(r)
    assert len(by_source["crawl.warc.gz"]) == 6 and len(by_source["books"]) == 3 and len(by_source["code"]) == 1
    page = by_source["crawl.warc.gz"][0]
    assert json.loads(page["meta"])["url"].startswith("https://news.example/") and "About us" not in page["text"]
    assert page["id"].startswith("urn:uuid:")
    assert len(by_source["fw"]) == 8 and sorted({json.loads(r["meta"]).get("copy", 0) for r in by_source["fw"]}) == [0, 1]
    assert len({r["id"] for r in by_source["fw"]}) == 4  # copies keep their id (same train/val split)
    downsampled = report["rejects"].get("downsampled", 0)
    assert len(by_source["web"]) + downsampled == 20 and 3 <= downsampled <= 17
    assert report["steps"]["mixture"]["docs"] == len(kept)
    assert report["sources"]["fw"]["curate_weight"] == 2.0
    assert report["languages"]["en"]["docs"] >= 30


def ownlm(*args: str, env_address: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *args, "--set", f"cluster.address={env_address}"]


def test_killed_cli_run_resumes_unfinished_shards_with_the_same_ids(ray_session, tmp_path):
    """`ownlm curate --input crawl.warc.gz --input corpus/ --output out` killed with SIGKILL halfway,
    then run again: only the unfinished shards are redone, the output equals an uninterrupted run's,
    and the report (json and html) is logged to MLflow."""
    rng = random.Random(2)
    write_warc(tmp_path / "crawl.warc.gz", rng, 5)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    n_files = 12
    for f in range(n_files):
        docs = [{"id": f"f{f}-{i}", "text": prose(rng)} for i in range(100)]
        docs += [dict(docs[0], id=f"f{f}-copy")]  # an exact duplicate in every file
        (corpus / f"part{f:02d}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    settings = ["curate.shards.target_bytes=1"]  # one file a shard: 13 shards
    out, root = tmp_path / "out", tmp_path / "root"
    args = ownlm("curate", "--input", str(tmp_path / "crawl.warc.gz"), "--input", str(corpus), "--output", str(out),
                 "--root", str(root), *[x for kv in settings for x in ("--set", kv)],
                 env_address=ray_session.get_runtime_context().gcs_address)
    proc = subprocess.Popen(args + ["--set", "tracking.enabled=false"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    clean = tmp_path / ".out.work" / "clean"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None and len(list(clean.glob("shard-*.parquet"))) < 2:
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    done = sorted(p.name for p in clean.glob("shard-*.parquet"))
    assert 2 <= len(done) < n_files + 1 and not out.exists()

    rerun = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = json.loads((out / "report.json").read_text())
    assert resumed["shards"]["count"] == n_files + 1 and resumed["shards"]["reused_clean"] == len(done)
    assert set(resumed["sources"]) == {"crawl.warc.gz", "corpus"} and (out / "report.html").is_file()
    assert not (tmp_path / ".out.work").exists()

    cfg = load_config(None, overrides=settings, root=str(root))
    fresh = run_curate(cfg, layout_for(cfg.root), tmp_path / "fresh", inputs=[infer_source(str(tmp_path / "crawl.warc.gz")),
                                                        infer_source(str(corpus))])
    assert fresh["shards"]["reused_clean"] == 0
    for folder in ("", "rejects"):
        assert [(r["id"], r["text"]) for r in read_rows(out / folder)] == \
            [(r["id"], r["text"]) for r in read_rows(tmp_path / "fresh" / folder)]
    assert resumed["rejects"]["exact_duplicate"] == n_files == fresh["rejects"]["exact_duplicate"]
    assert resumed["output"]["docs"] == fresh["output"]["docs"] == n_files * 100 + 5

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    [run] = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
             if r.data.tags.get("ownlm.stage") == "curate"]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "curate")} == {"curate/report.json",
                                                                                "curate/report.html"}
    assert run.data.metrics["curate/docs_out"] == n_files * 100 + 5 and "curate/languages/en" in run.data.metrics
