"""The MLflow tracking server a cluster shares (`ownlm tracking-server`), and the check that one
is up before a command starts work against it.

The server is MLflow's own (`mlflow server`), with artifacts proxied through it
(`--serve-artifacts`) so that Ray workers on other machines need no shared disk, its run store
in SQLite under the storage root unless a database URI is given, and bound to 127.0.0.1 unless
told otherwise. `--auth` runs MLflow's basic-auth app: its settings are an ini file named by
MLFLOW_AUTH_CONFIG_PATH, written here under the root (admin user name and the user database;
the password stays in the environment, never on disk).
"""
from __future__ import annotations

import os
import secrets
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from model.errors import UsageError, UserError

ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
"""MLflow's own variable: the basic-auth app creates its admin user with this password."""
ADMIN_USERNAME_ENV = "MLFLOW_AUTH_ADMIN_USERNAME"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
"""The auth app's CSRF key: MLflow refuses to start without one; kept in a file under the root so
that a restarted server accepts the sessions of the last one."""
CLIENT_USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
CLIENT_PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"


@dataclass(frozen=True)
class ServerSettings:
    folder: Path
    """Where the default run store, artifacts and auth files live (`<root>/tracking-server`)."""
    host: str = "127.0.0.1"
    port: int = 5000
    backend_store_uri: str | None = None
    """None: SQLite in `folder`."""
    artifacts_destination: str | None = None
    """None: `folder/artifacts`; any URI MLflow's artifact stores take (s3://bucket/prefix)."""
    auth: bool = False
    workers: int = 2

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def store_uri(self) -> str:
        return self.backend_store_uri or f"sqlite:///{self.folder / 'mlflow.db'}"

    @property
    def artifacts_uri(self) -> str:
        return self.artifacts_destination or str(self.folder / "artifacts")


def server_command(settings: ServerSettings) -> list[str]:
    """The `mlflow server` command line (run with `server_environment`)."""
    cmd = [_mlflow_cli(), "server", "--host", settings.host, "--port", str(settings.port),
           "--backend-store-uri", settings.store_uri, "--serve-artifacts",
           "--artifacts-destination", settings.artifacts_uri, "--workers", str(settings.workers)]
    if settings.host not in ("127.0.0.1", "localhost"):
        # MLflow's DNS-rebinding guard allows only localhost and private addresses by default:
        # a server bound past loopback is meant to be reached by the name its clients use.
        cmd += ["--allowed-hosts", "*"]
    if settings.auth:
        cmd += ["--app-name", "basic-auth"]
    return cmd


def server_environment(settings: ServerSettings, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment; with auth, the ini and secret key written under the folder.

    Raises a UsageError when auth is asked for without an admin password."""
    env = dict(os.environ if environ is None else environ)
    # MLflow's job runner (GenAI scorers, trace roll-ups) starts eight more processes that no
    # ownlm stage uses; the user's own setting wins.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    settings.folder.mkdir(parents=True, exist_ok=True)
    if not settings.auth:
        return env
    if not env.get(ADMIN_PASSWORD_ENV):
        raise UsageError(f"tracking-server --auth: set {ADMIN_PASSWORD_ENV} to the admin password (the server "
                         "refuses to start without one; clients then log in with MLFLOW_TRACKING_USERNAME="
                         f"{env.get(ADMIN_USERNAME_ENV) or 'admin'} and MLFLOW_TRACKING_PASSWORD)")
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(write_auth_config(settings.folder, env.get(ADMIN_USERNAME_ENV) or "admin"))
    if not env.get(SECRET_KEY_ENV):
        env[SECRET_KEY_ENV] = _secret_key(settings.folder / "secret_key")
    return env


def write_auth_config(folder: Path, admin_username: str) -> Path:
    """MLflow basic auth's ini: the admin user's name and the user database (no password: MLflow
    reads it from MLFLOW_AUTH_ADMIN_PASSWORD the first time it creates the admin user)."""
    path = folder / "basic_auth.ini"
    path.write_text("[mlflow]\n"
                    "# New users may read every experiment; only the admin (and whom it grants) may write.\n"
                    "default_permission = READ\n"
                    f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
                    f"admin_username = {admin_username}\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    path.chmod(0o600)
    return path


def _secret_key(path: Path) -> str:
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _mlflow_cli() -> str:
    """The `mlflow` command of this Python (its venv), so the server runs this MLflow."""
    candidate = Path(sys.executable).parent / "mlflow"
    return str(candidate) if candidate.exists() else (shutil.which("mlflow") or "mlflow")


def is_server_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_server(uri: str, timeout_s: float = 5.0) -> None:
    """Raise a UserError naming `uri` unless an MLflow server answers its health check there.

    One request with a short timeout: MLflow's own client retries a refused connection for
    minutes before it gives up, which a user would see as a hang before any work starts."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
            if response.status == 200:
                return
            reason = f"HTTP {response.status}"
    except urllib.error.HTTPError as e:
        reason = f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        reason = str(getattr(e, "reason", e))
    raise UserError(f"the MLflow tracking server at {uri} (tracking.uri) is not reachable ({reason}): start it "
                    "(`ownlm tracking-server`), point tracking.uri at one that runs, or --set tracking.enabled=false")


def wait_for_server(uri: str, timeout_s: float = 60.0, alive=lambda: True) -> bool:
    """Poll the health check until it answers (True), the deadline passes or `alive()` turns false."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            check_server(uri, timeout_s=2.0)
            return True
        except UserError:
            time.sleep(0.5)
    return False
