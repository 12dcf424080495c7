"""`ownlm serve`: start the Serve application on Ray (a local instance, or the cluster of
`cluster.address` / a Ray Job), print where it listens, and serve until Ctrl-C or SIGTERM, then
shut Serve down. `--detach` leaves it running on a Ray instance that outlives the command;
`--stop` deletes it."""
from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import time
from pathlib import Path

from model.errors import UsageError
from pipeline.commands.command import Command, Invocation
from pipeline.config import Config, ServeConfig
from pipeline.options import ConfigFlag, PathFlag
from pipeline.raysession import cluster_address, ensure_ray

API_KEY_ENV = "OWNLM_API_KEY"
REGISTRY_SCHEME = "models:/"
MODEL = PathFlag("--model", "model", "checkpoint folder, a checkpoint folder's URI (s3://bucket/prefix/model: each "
                 "replica downloads it into its node's cache), or models:/NAME@ALIAS, models:/NAME/VERSION "
                 "(default: <root>/model)", metavar="CKPT")


def model_source(inv: Invocation) -> tuple[str, str]:
    """The checkpoint folder to serve (the CLI has resolved a registry URI, models:/NAME@ALIAS, to
    its cached folder) and what the user named it by (that URI, or the folder)."""
    folder = str(inv.layout.model)
    return folder, MODEL.given(inv.args) or folder


def served_name(source: str) -> str:
    """What clients call the model by default: the registered name, or the checkpoint folder's."""
    if source.startswith(REGISTRY_SCHEME):
        return source[len(REGISTRY_SCHEME):].split("@")[0].split("/")[0]
    return Path(source).name


def settings_for(s: ServeConfig, source: str, named: str | None = None):
    """The deployments' settings: the `serve` section, the checkpoint folder (named by the user as
    `named`), and the key from the environment."""
    from pipeline.serve.app import ServeSettings  # ray and fastapi: only when serving

    return ServeSettings(
        model_path=source, model_name=s.model_name or served_name(named or source),
        api_key=s.api_key or os.environ.get(API_KEY_ENV) or None, max_batch_size=s.max_batch_size,
        batch_wait_timeout_s=s.batch_wait_timeout_s, max_tokens=s.max_tokens, default_max_tokens=s.default_max_tokens,
        max_n=s.max_n, max_prompts=s.max_prompts, cpus_per_replica=s.cpus_per_replica,
        gpus_per_replica=s.gpus_per_replica, replicas=s.replicas, autoscale=s.autoscale_range(),
        compile=s.compile)


def start(s: ServeConfig, settings) -> str:
    """Deploy the application on the Ray instance this process has joined; returns its base URL."""
    from ray import serve

    from pipeline.serve.app import build_app

    serve.start(http_options={"host": s.host, "port": s.port})
    serve.run(build_app(settings), name=s.app_name, route_prefix="/")
    host = f"[{s.host}]" if ":" in s.host else s.host
    return f"http://{host}:{s.port}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _check_model(source: str) -> None:
    """A missing or broken checkpoint fails here, before Ray starts (a URI's config.json alone is read)."""
    from model.checkpoint import load_config  # torch
    from pipeline.serve.app import checkpoint_header

    load_config(checkpoint_header(source))


def serve_command(inv: Invocation) -> int:
    cfg, args = inv.cfg, inv.args
    if args.stop:
        return stop(cfg)
    if args.detach and not cluster_address(cfg):
        raise UsageError("--detach needs a Ray instance that outlives this command: start one with `ray start "
                         "--head` and pass --set cluster.address=auto (or run inside `ownlm submit`)")
    source, named = model_source(inv)
    _check_model(source)
    settings = settings_for(cfg.serve, source, named)
    if not _is_loopback(cfg.serve.host) and settings.api_key is None:
        print(f"ownlm: warning: serving on {cfg.serve.host} without an API key: anyone who reaches this port can "
              f"use the model (set serve.api_key or {API_KEY_ENV})", file=sys.stderr)
    ray = ensure_ray(cfg)
    # Our handlers replace the ones Ray's driver installs, from here on: a SIGTERM or Ctrl-C while
    # the replicas start (or a Ray Job being stopped) interrupts, and Serve is shut down either way.
    _stop_on_signals()
    try:
        url = start(cfg.serve, settings)
        print(f"ownlm: serving {named} as {settings.model_name!r} at {url}/v1 (OpenAI API; /health, /tokenize)")
        dashboard = _dashboard_url(ray)
        if dashboard:
            print(f"    Ray dashboard (Serve replicas, logs, metrics): {dashboard}")
        if args.detach:
            print(f"    left running; stop it with: ownlm serve --stop --set cluster.address="
                  f"{cfg.cluster.address or 'auto'}", flush=True)
            return 0
        print("    Ctrl-C stops it", flush=True)
        while True:
            time.sleep(3600)  # until a signal raises _Stop
    except _Stop:
        pass
    print("ownlm: stopping the server", file=sys.stderr, flush=True)
    from ray import serve

    serve.shutdown()
    return 0


def stop(cfg: Config) -> int:
    if not cluster_address(cfg):
        raise UsageError("--stop needs the Ray instance the server runs on: --set cluster.address=auto (or its address)")
    ensure_ray(cfg)
    from ray import serve

    serve.delete(cfg.serve.app_name)
    print(f"ownlm: stopped the Serve application {cfg.serve.app_name!r}")
    return 0


def _dashboard_url(ray) -> str | None:
    try:
        url = ray._private.worker.get_dashboard_url()
    except Exception:  # noqa: BLE001 - a private API: the address is a courtesy, not a requirement
        return None
    return f"http://{url}" if url and not url.startswith("http") else url


class _Stop(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException, so that no `except Exception` on the way swallows it)."""


def _raise_stop(signum, _frame):
    raise _Stop(signum)


def _stop_on_signals() -> None:
    """SIGINT and SIGTERM (a `kill`, a container stop, a Ray Job being stopped) raise _Stop in the
    main thread, wherever it is: starting the replicas or waiting."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_stop)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detach", action="store_true",
                   help="start the server and return, leaving it on the Ray instance (needs cluster.address)")
    p.add_argument("--stop", action="store_true", help="stop the server started with --detach")


def _autoscale(text: str) -> dict:
    return {"serve.autoscale": text}


SERVE = Command(
    name="serve", help="serve a checkpoint behind an OpenAI-compatible API on Ray Serve", run=serve_command,
    arguments=_arguments,
    flags=(MODEL,
           ConfigFlag("--host", "serve.host", help="address to listen on (default: serve.host, 127.0.0.1)"),
           ConfigFlag("--port", "serve.port", type=int, help="port (default: serve.port, 8000)"),
           ConfigFlag("--replicas", "serve.replicas", type=int, help="model replicas (default: serve.replicas)"),
           ConfigFlag("--autoscale", values=_autoscale, metavar="MIN:MAX",
                      help="scale replicas between MIN and MAX on load (serve.autoscale)"),
           ConfigFlag("--api-key", "serve.api_key", metavar="KEY",
                      help=f"require `Authorization: Bearer KEY` (serve.api_key; or set {API_KEY_ENV})"),
           ConfigFlag("--no-compile", values=lambda _: {"serve.compile": False}, switch=True,
                      help="decode eagerly, without the torch.compile'd step (shorthand for --set serve.compile=false)"),
           ConfigFlag("--max-batch-size", "serve.max_batch_size", type=int,
                      help="most requests a replica decodes together (default: serve.max_batch_size)"),
           ConfigFlag("--model-name", "serve.model_name", metavar="NAME",
                      help="the name clients pass as `model` (default: the checkpoint folder's name)")),
    description="Serve a checkpoint on Ray Serve behind OpenAI's API: /v1/completions (echo and logprobs too, what "
                "lm-eval's local-completions model sends), /v1/chat/completions (streamed by server-sent events), "
                "/v1/embeddings, /v1/models, /health, and /tokenize, /detokenize, /tokenizer_info. Concurrent "
                "requests are batched in each replica. Serves until Ctrl-C or SIGTERM (docs/serving.md).")
