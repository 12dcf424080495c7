"""`ownlm tracking-server` as a real MLflow server on 127.0.0.1, started and stopped here: with
--auth it refuses a client without credentials and takes the runs of one with them; a server
that goes away mid-run costs a warning, not the run; a command pointed at a server that is not
there stops before any work with one line naming it. No Ray: the tracker alone talks to MLflow.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.local import free_port
from model.errors import UserError
from pipeline.config import load_config
from pipeline.tracking import Tracker
from pipeline.tracking.server import check_server, wait_for_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "a-test-admin-password-7f3c"


class TrackingServer:
    """`ownlm tracking-server` in a subprocess (its own process group, ended whole)."""

    def __init__(self, root: Path | str, *extra: str, env: dict[str, str] | None = None, log_dir: Path | None = None):
        """root: a folder (the log goes there too), or a URI with log_dir for the log."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log_dir = log_dir or root
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = log_dir / f"server-{self.port}.log"
        cmd = [sys.executable, "-m", "pipeline.cli", "tracking-server", "--root", str(root), "--port", str(self.port),
               "--workers", "1", *extra]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, **(env or {})}, start_new_session=True)
        if not wait_for_server(self.url, timeout_s=180, alive=lambda: self.proc.poll() is None):
            self.stop()
            raise AssertionError(f"tracking server did not come up:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM to `ownlm tracking-server`, which ends MLflow's process group itself."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        with_group_gone(self.proc.pid)


def with_group_gone(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)  # nothing should be left; if something is, do not leak it
    except ProcessLookupError:
        return
    raise AssertionError("processes of the tracking server outlived its stop")


def test_auth_server_refuses_anonymous_clients_logs_with_credentials_and_survives_going_away(
        tmp_path, monkeypatch, capfd):
    server = TrackingServer(tmp_path / "server-root", "--auth", env={"MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD})
    try:
        cfg = load_config("debug", [f"tracking.uri={server.url}"], root=tmp_path / "root")
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        with pytest.raises(UserError, match="refused.*MLFLOW_TRACKING_USERNAME"):
            Tracker(cfg)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
        with pytest.raises(UserError, match="refused"):
            Tracker(cfg)

        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        tracker = Tracker(cfg)
        (tmp_path / "report.json").write_text('{"kept": 3}')
        with tracker.run("curate", stage="curate"):
            tracker.log_metrics({"curate/kept": 3})
            tracker.log_artifact(tmp_path / "report.json", "curate")  # through the server's artifact proxy
            run_id = tracker.run_id
        from mlflow import MlflowClient

        client = MlflowClient(server.url)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.metrics["curate/kept"] == 3
        assert run.data.params["train.max_steps"] == "120"  # the flattened config
        assert [f.path for f in client.list_artifacts(run_id, "curate")] == ["curate/report.json"]

        # The server goes away while a stage runs: one warning, the stage finishes, nothing raised.
        capfd.readouterr()
        with tracker.run("train", stage="train"):
            tracker.log_metrics({"train/loss": 2.0}, step=1)
            server.stop()
            started = time.monotonic()
            for step in range(2, 6):
                tracker.log_metrics({"train/loss": 1.0 / step}, step=step)
            tracker.set_tags({"after": "stop"})
            done = True
        seconds = time.monotonic() - started
        err = capfd.readouterr().err
        assert done and err.count("could not log to MLflow") == 1 and server.url in err
        assert tracker.lost and seconds < 120  # a few retries once, then no more waiting
    finally:
        server.stop()


def test_a_stage_pointed_at_a_stopped_server_fails_before_any_work(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    with pytest.raises(UserError, match="not reachable"):
        check_server(url)
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", "debug", "--root", str(tmp_path),
                          "--set", f"tracking.uri={url}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ownlm: error: the MLflow tracking server at " + url)
    assert "not reachable" in lines[0] and "ownlm tracking-server" in lines[0]
    assert "== " not in out.stdout  # no stage started
    assert not (tmp_path / "curated").exists() and not (tmp_path / "state").exists()


def test_under_an_s3_root_runs_stay_in_local_sqlite_and_artifacts_go_to_the_bucket(tmp_path, s3_server):
    """`ownlm tracking-server --root s3://...` without --backend-store-uri: SQLite cannot live on S3, so
    the run store is ~/.ownlm/tracking-server/mlflow.db on this machine (said at start), and the
    proxied artifacts land under <root>/tracking-server/artifacts in the bucket."""
    import uuid

    from mlflow import MlflowClient

    from pipeline import storage
    from tests.s3server import BUCKET

    root = f"s3://{BUCKET}/tracking-{uuid.uuid4().hex[:8]}"
    server = TrackingServer(root, env={"HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI": ""}, log_dir=tmp_path)
    try:
        client = MlflowClient(server.url)
        run = client.create_run(client.create_experiment("s3-root"))
        (tmp_path / "report.json").write_text('{"kept": 3}')
        client.log_artifact(run.info.run_id, str(tmp_path / "report.json"), "curate")
        client.set_terminated(run.info.run_id)
        assert [f.path for f in client.list_artifacts(run.info.run_id, "curate")] == ["curate/report.json"]
    finally:
        server.stop()
    stored = [p for p in storage.resolve(f"{root}/tracking-server/artifacts").rglob("*") if p.name == "report.json"]
    assert len(stored) == 1 and stored[0].read_text() == '{"kept": 3}'
    assert (tmp_path / "home" / ".ownlm" / "tracking-server" / "mlflow.db").is_file()
    log = server.log.read_text()
    assert "cannot hold SQLite" in log and "--backend-store-uri" in log
