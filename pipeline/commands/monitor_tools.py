"""`ownlm monitor --once | --every 30m | --report`. Exit status of `--once`: 0 all well, 3 an alert
(regression, drift, or a refused retrain), 2 bad usage (no champion, a missing watch path)."""
from __future__ import annotations

import argparse
import re
import time

from model.errors import UsageError
from pipeline.commands.command import Command, Invocation
from pipeline.monitor.cycle import CHECKS_FILE, monitor_dir, monitoring_config, run_cycle
from pipeline.monitor.history import write_history
from pipeline.options import ConfigFlag, PathFlag
from pipeline.registry.promote import REFUSED
from pipeline.registry.stage import require_tracking
from pipeline.tracking import Tracker

_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def interval_seconds(text: str) -> float:
    """`30m` -> 1800.0 (s, m, h, d; a bare number is seconds)."""
    m = _INTERVAL.match(text.strip())
    if not m or float(m[1]) <= 0:
        raise UsageError(f"--every {text}: give an interval such as 45s, 30m, 2h or 1d")
    return float(m[1]) * _SECONDS[m[2]]


def monitor_command(inv: Invocation) -> int:
    args, cfg = inv.args, inv.cfg
    require_tracking(cfg)
    modes = [bool(args.once), args.every is not None, bool(args.report)]
    if sum(modes) != 1:
        raise UsageError("give one of --once, --every INTERVAL, --report")
    if args.report:
        folder = monitor_dir(inv.layout)
        paths = write_history(folder / CHECKS_FILE, folder)
        if not paths:
            raise UsageError(f"no monitor checks yet in {folder / CHECKS_FILE}: run `ownlm monitor --once` first")
        tracker = Tracker(monitoring_config(cfg))
        with tracker.run("monitor report", stage="monitor", log_config=False):
            for path in paths:
                tracker.log_artifact(path, "monitor")
        print(f"ownlm: wrote {', '.join(str(p) for p in paths)}")
        return 0
    if args.once:
        return REFUSED if run_cycle(cfg, inv.layout)["alert"] else 0
    seconds = interval_seconds(args.every or cfg.monitor.every)
    while True:  # a loop for a long-lived process; Ctrl-C (or the service manager) stops it
        started = time.monotonic()
        run_cycle(cfg, inv.layout)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--once", action="store_true", help="one cycle, then exit (0 all well, 3 an alert): for cron/CI")
    p.add_argument("--every", metavar="INTERVAL", nargs="?", const="",
                   help="a cycle every INTERVAL (45s, 30m, 2h; default monitor.every), until stopped")
    p.add_argument("--report", action="store_true",
                   help="only write history.png and history.html from the checks so far")


MONITOR = Command(
    name="monitor", help="watch the champion: benchmarks, drift on new data, regressions, retraining",
    run=monitor_command, arguments=_arguments,
    flags=(PathFlag("--data", "tokens", "packed tokens the benchmarks' perplexity is measured on"),
           ConfigFlag("--watch", "monitor.watch", repeat=True, metavar="PATH",
                      help="a file, folder or glob of raw sources to watch (repeatable; replaces monitor.watch)"),
           ConfigFlag("--retrain", "monitor.retrain", switch=True),
           ConfigFlag("--webhook-url", "monitor.webhook_url")),
    description="One cycle evaluates the champion on the configured benchmarks, tests newly arrived files "
                "(monitor.watch) for drift against the champion's reference, compares each gated metric with "
                "its value at promotion, retrains on drift or enough new data (monitor.retrain), records a "
                "run in the monitoring experiment and a line in <root>/monitor/checks.jsonl, writes "
                "history.png/html, and alerts (stderr, exit 3, monitor.webhook_url).")
