"""An alert: a log line, and a JSON POST to `monitor.webhook_url` when one is set. A webhook that
fails is logged and never stops the monitor: the alert is in checks.jsonl and MLflow either way."""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

WEBHOOK_TIMEOUT_S = 10


def alert(record: dict, webhook_url: str | None) -> bool:
    """Log the alert; POST it when a webhook is configured. True when the POST succeeded."""
    reasons = []
    if record["regressions"]:
        reasons.append("regression on " + ", ".join(r["metric"] for r in record["regressions"]))
    if record["drift"] and record["drift"]["alarm"]:
        reasons.append(f"drift (KS {record['drift']['ks_statistic']:.3f}, PSI {record['drift']['psi']:.3f})")
    if record["action"] == "refused":
        reasons.append("the retrained model was refused by the gate")
    print(f"ownlm monitor: ALERT for champion version {record['champion']}: {'; '.join(reasons)}",
          file=sys.stderr, flush=True)
    if not webhook_url:
        return False
    body = json.dumps({"text": "ownlm monitor alert: " + "; ".join(reasons), "check": record}).encode()
    request = urllib.request.Request(webhook_url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
            response.read()
        return True
    except (urllib.error.URLError, OSError, ValueError) as e:
        print(f"ownlm monitor: the webhook {webhook_url} failed ({e}); the alert is in checks.jsonl",
              file=sys.stderr, flush=True)
        return False
