"""The pieces of `ownlm tracking-server` that need no server: the command line it runs, the auth
settings it writes, and its refusal to start an authenticated server without a password."""
import configparser
from pathlib import Path

import pytest

from model.errors import UsageError
from pipeline.cli import main
from pipeline.commands.tracking_tools import default_artifacts, server_folder
from pipeline.tracking.server import ServerSettings, server_command, server_environment


def test_the_server_proxies_artifacts_keeps_runs_under_the_root_and_listens_on_loopback(tmp_path):
    cmd = server_command(ServerSettings(folder=tmp_path))
    assert cmd[1] == "server" and "--serve-artifacts" in cmd
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5000"
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path}/mlflow.db"
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(tmp_path / "artifacts")
    assert "--app-name" not in cmd and "--allowed-hosts" not in cmd
    other = server_command(ServerSettings(folder=tmp_path, host="0.0.0.0", backend_store_uri="postgresql://db/m",
                                          artifacts_destination="s3://bucket/mlflow", auth=True))
    assert other[other.index("--backend-store-uri") + 1] == "postgresql://db/m"
    assert other[other.index("--artifacts-destination") + 1] == "s3://bucket/mlflow"
    assert other[other.index("--app-name") + 1] == "basic-auth"
    assert ServerSettings(folder=tmp_path, host="0.0.0.0", port=5001).url == "http://127.0.0.1:5001"


def test_auth_needs_the_admin_password_and_keeps_it_out_of_the_ini(tmp_path):
    settings = ServerSettings(folder=tmp_path, auth=True)
    with pytest.raises(UsageError, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        server_environment(settings, environ={})
    env = server_environment(settings, environ={"MLFLOW_AUTH_ADMIN_PASSWORD": "pw-123", "MLFLOW_AUTH_ADMIN_USERNAME": "ops"})
    ini = configparser.ConfigParser()
    ini.read(env["MLFLOW_AUTH_CONFIG_PATH"])
    assert ini["mlflow"]["admin_username"] == "ops"
    assert ini["mlflow"]["database_uri"] == f"sqlite:///{tmp_path}/basic_auth.db"
    assert "pw-123" not in (tmp_path / "basic_auth.ini").read_text()
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    again = server_environment(settings, environ={"MLFLOW_AUTH_ADMIN_PASSWORD": "pw-123"})
    assert again["MLFLOW_FLASK_SERVER_SECRET_KEY"] == env["MLFLOW_FLASK_SERVER_SECRET_KEY"]  # kept across restarts
    assert server_environment(ServerSettings(folder=tmp_path), environ={}).get("MLFLOW_AUTH_CONFIG_PATH") is None


def test_the_command_refuses_auth_without_a_password_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    assert main(["tracking-server", "--auth", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "set MLFLOW_AUTH_ADMIN_PASSWORD" in err[0]


def test_an_object_store_root_keeps_the_server_files_in_the_home_folder(tmp_path):
    assert server_folder(str(tmp_path)) == tmp_path / "tracking-server"
    assert server_folder("s3://bucket/ownlm").parts[-2:] == (".ownlm", "tracking-server")
    # the artifacts stay under the root: on the store for a remote one, the server's folder for a local one
    assert default_artifacts("s3://bucket/ownlm") == "s3://bucket/ownlm/tracking-server/artifacts"
    assert default_artifacts(str(tmp_path)) is None



def test_the_kuberay_cluster_has_token_auth_and_tells_every_pod_where_to_log():
    import yaml

    manifest = yaml.safe_load((Path(__file__).resolve().parents[2] / "cluster" / "kuberay-raycluster.yaml").read_text())
    spec = manifest["spec"]
    assert manifest["kind"] == "RayCluster" and spec["authOptions"]["mode"] == "token"
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    for pod in pods:
        env = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
        assert {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= env
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_mlflow_tracking_uri_is_the_default_server_and_submit_forwards_the_login(tmp_path, monkeypatch):
    from pipeline.commands.cluster_tools import forwarded_tracking_env
    from pipeline.config import load_config

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert load_config(None, [], root=tmp_path).tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert load_config(None, [], root=tmp_path).tracking_uri == "http://mlflow:5000"
    assert load_config(None, ["tracking.uri=http://other:5000"], root=tmp_path).tracking_uri == "http://other:5000"
    env = {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p", "MLFLOW_OTHER": "x", "HOME": "/h"}
    assert forwarded_tracking_env(env) == {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"}


def test_trial_runs_and_worker_metrics_warn_once_and_go_on_when_the_server_is_gone(monkeypatch, capsys):
    from cluster.local import free_port
    from pipeline.tracking import ChildRuns, RemoteMetricLogger

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the real client, failing at once
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    runs = ChildRuns(url, "0" * 32)
    assert runs.open("trial_1", "trial 1", {"train.lr": 0.01}, {}) is None
    runs.close("trial_1", "FINISHED", metrics={"val/loss": 1.0})
    logger = RemoteMetricLogger(url, "0" * 32)
    logger.log({"train/loss": 2.0}, step=1)
    logger.log({"train/loss": 1.5}, step=2)
    err = capsys.readouterr().err
    assert err.count("could not log to MLflow at " + url) == 2  # once for each, then silent
