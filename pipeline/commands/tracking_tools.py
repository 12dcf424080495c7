"""`ownlm tracking-server`: MLflow's tracking server for a cluster (pipeline/tracking/server.py),
run in the foreground until Ctrl-C.

    MLFLOW_AUTH_ADMIN_PASSWORD=... ownlm tracking-server --auth
    # then, on every machine that runs ownlm:
    --set tracking.uri=http://HOST:5000  (with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from model.errors import UsageError, UserError
from pipeline.commands.command import Command, Invocation
from pipeline.storage import is_remote, resolve
from pipeline.tracking.server import (
    ADMIN_PASSWORD_ENV,
    ADMIN_USERNAME_ENV,
    CLIENT_PASSWORD_ENV,
    CLIENT_USERNAME_ENV,
    ServerSettings,
    server_command,
    server_environment,
    wait_for_server,
)


def server_folder(storage_root: str) -> Path:
    """`<root>/tracking-server`; a root on an object store cannot hold a SQLite file (nor the auth
    files), so then ~/.ownlm/tracking-server on this machine (give --backend-store-uri for a
    database every machine reaches)."""
    if is_remote(storage_root):
        return Path.home() / ".ownlm" / "tracking-server"
    return resolve(storage_root) / "tracking-server"


def default_artifacts(storage_root: str) -> str | None:
    """Where artifacts go without --artifacts-destination: under a remote root
    `<root>/tracking-server/artifacts` on the store (MLflow writes s3://, gs://... itself); under a
    local one None, ServerSettings' `<root>/tracking-server/artifacts`."""
    return f"{resolve(storage_root)}/tracking-server/artifacts" if is_remote(storage_root) else None


def tracking_server_command(inv: Invocation) -> int:
    args = inv.args
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: give a port between 1 and 65535")
    root = inv.cfg.storage.root
    settings = ServerSettings(folder=server_folder(root), host=args.host, port=args.port,
                              backend_store_uri=args.backend_store_uri,
                              artifacts_destination=args.artifacts_destination or default_artifacts(root),
                              auth=args.auth, workers=args.workers)
    if is_remote(root) and not args.backend_store_uri:
        print(f"ownlm: the storage root {root} is on an object store, which cannot hold SQLite: the run store is "
              f"{settings.store_uri} on this machine (pass --backend-store-uri postgresql://... for a database "
              f"that outlives it); artifacts go to {settings.artifacts_uri}", flush=True)
    env = server_environment(settings)
    # Its own process group: `mlflow server` starts uvicorn workers and leaves them running when it
    # is killed alone, so every exit path below ends the whole group.
    proc = subprocess.Popen(server_command(settings), env=env, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if not wait_for_server(settings.url, timeout_s=args.start_timeout, alive=lambda: proc.poll() is None):
            raise UserError(f"tracking-server: MLflow's server did not come up on {settings.url} (see its output "
                            "above; another process on the port?)")
        if settings.auth:
            _check_admin_login(settings.url, env.get(ADMIN_USERNAME_ENV) or "admin", env[ADMIN_PASSWORD_ENV])
        print(_banner(settings, env), flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_group(proc)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop_group(proc: subprocess.Popen, timeout_s: float = 20) -> None:
    """SIGTERM to the server's process group (uvicorn then stops its workers), SIGKILL to what is
    left of it after timeout_s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc.poll()  # reap the server itself, so that an exited group reads as gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _banner(settings: ServerSettings, env: dict[str, str]) -> str:
    lines = [(f"ownlm: MLflow tracking server at {settings.url} (runs in {settings.store_uri}, artifacts in "
              f"{settings.artifacts_uri}, proxied); Ctrl-C stops it"),
             f"  every ownlm command that should log here: --set tracking.uri={settings.url}"]
    if settings.auth:
        lines.append(f"  with basic auth: export {CLIENT_USERNAME_ENV}={env.get(ADMIN_USERNAME_ENV) or 'admin'} "
                     f"{CLIENT_PASSWORD_ENV}=<the admin password>")
    if settings.host in ("127.0.0.1", "localhost"):
        lines.append("  bound to 127.0.0.1: other machines reach it through --host 0.0.0.0 (then use --auth)")
    return "\n".join(lines)


def _check_admin_login(url: str, username: str, password: str) -> None:
    """Say so when the admin password given is not the one the user store holds: MLflow uses the
    variable only to create the admin user, so a changed password is silently ignored."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/users/get?username={username}",
                                     headers={"Authorization": f"Basic {token}"})
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as e:
        if e.code == 401:
            print(f"ownlm: warning: the user store already has an admin {username!r} with another password than "
                  f"{ADMIN_PASSWORD_ENV}; MLflow keeps the stored one (change it with MLflow's update-password API)",
                  file=sys.stderr)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 for other machines, then with --auth)")
    p.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    p.add_argument("--backend-store-uri", metavar="URI",
                   help="run store: any database URI MLflow takes (postgresql://..., sqlite:///...); default "
                        "SQLite in <root>/tracking-server/mlflow.db, or with a root on an object store (s3://...) "
                        "in ~/.ownlm/tracking-server/mlflow.db on this machine")
    p.add_argument("--artifacts-destination", metavar="URI",
                   help="where the proxied artifacts go (s3://bucket/prefix, a folder); default "
                        "<root>/tracking-server/artifacts (on the store, for a root on one)")
    p.add_argument("--auth", action="store_true",
                   help=f"MLflow's basic-auth app; the admin password comes from {ADMIN_PASSWORD_ENV} "
                        f"(user name: {ADMIN_USERNAME_ENV}, default admin)")
    p.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    p.add_argument("--start-timeout", type=float, default=120, metavar="S", help=argparse.SUPPRESS)


TRACKING_SERVER = Command(
    name="tracking-server", help="an MLflow tracking server for a cluster (artifacts proxied, optional basic auth)",
    run=tracking_server_command, arguments=_arguments,
    # The server is the tracking store: its own config logs nowhere, so a root on an object store
    # (which cannot hold the SQLite default) needs no tracking.uri for it.
    config_overrides=("tracking.enabled=false",),
    description="Run MLflow's tracking server until Ctrl-C: runs in SQLite under the storage root (or any "
                "--backend-store-uri; a root on an object store cannot hold SQLite, so then in "
                "~/.ownlm/tracking-server on this machine, with the artifacts still under the root), artifacts "
                "proxied through the server (--serve-artifacts) so that remote "
                "workers need no shared disk, bound to 127.0.0.1 unless --host says otherwise. Commands log to "
                f"it with --set tracking.uri=http://HOST:PORT; with --auth they need {CLIENT_USERNAME_ENV} and "
                f"{CLIENT_PASSWORD_ENV}.",
    epilog=f"Example: {ADMIN_PASSWORD_ENV}=... ownlm tracking-server --auth --host 0.0.0.0 "
           "--artifacts-destination s3://bucket/mlflow")
