"""The gate's rules, the monitor's memory of seen files, its interval parsing and its webhook, each on
its own (no model, no MLflow)."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from model.errors import UsageError
from pipeline.commands.monitor_tools import interval_seconds
from pipeline.config import GateRule
from pipeline.monitor.alert import alert
from pipeline.monitor.state import MonitorState, watched_files
from pipeline.registry.gate import judge, passes, table


@pytest.mark.parametrize("rule, candidate, champion, ok", [
    ({"max_relative_increase": 0.02}, 10.1, 10.0, True),
    ({"max_relative_increase": 0.02}, 10.3, 10.0, False),
    ({"max_drop": 0.01}, 0.695, 0.70, True),
    ({"max_drop": 0.01}, 0.68, 0.70, False),
    ({"max_increase": 0.5}, 3.6, 3.0, False),
    ({"max_relative_drop": 0.1}, 0.64, 0.70, True),
    ({"min": 0.8}, 0.79, 0.5, False),
    ({"max": 5.0}, 4.0, None, True),
    ({"max_drop": 0.01}, 0.1, None, True),  # the first version: only absolute bounds apply
    ({"min": 0.8, "max_drop": 0.01}, 0.7, None, False),
])
def test_each_rule_bound(rule, candidate, champion, ok):
    assert passes(GateRule(**rule), candidate, champion) is ok


def test_a_rule_needs_a_bound_and_a_ruled_metric_must_be_reported():
    with pytest.raises(ValueError, match="at least one"):
        GateRule()
    rules = {"eval/perplexity": GateRule(max_relative_increase=0.02), "task/x/acc": GateRule(min=0.8)}
    with pytest.raises(UsageError, match="task/x/acc"):
        judge(rules, {"eval/perplexity": 3.0}, {"eval/perplexity": 3.0})


def test_the_table_names_every_rule_and_its_result():
    rows = judge({"eval/perplexity": GateRule(max_relative_increase=0.02)}, {"eval/perplexity": 4.0},
                 {"eval/perplexity": 3.0})
    text = table(rows)
    assert text.splitlines()[0].split() == ["metric", "champion", "candidate", "rule", "result"]
    assert "3.0000" in text and "4.0000" in text and "FAIL" in text


def test_new_files_are_new_once_and_again_when_they_change(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jsonl").write_text("{}\n")
    state = MonitorState.load(tmp_path / "monitor")
    files = watched_files([str(inbox), str(tmp_path / "none-yet-*.txt")])  # an unmatched glob is fine
    assert state.new_files(files) == files
    state.mark_seen(files)
    state.save()
    state = MonitorState.load(tmp_path / "monitor")
    (inbox / "b.jsonl").write_text("{}\n")
    assert [f.name for f in state.new_files(watched_files([str(inbox)]))] == ["b.jsonl"]
    time.sleep(0.01)
    (inbox / "a.jsonl").write_text('{"changed": 1}\n')
    assert [f.name for f in state.new_files(watched_files([str(inbox)]))] == ["a.jsonl", "b.jsonl"]
    with pytest.raises(UsageError, match="does not exist"):
        watched_files([str(tmp_path / "missing")])


@pytest.mark.parametrize("text, seconds", [("45s", 45), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("90", 90)])
def test_intervals(text, seconds):
    assert interval_seconds(text) == seconds


def test_a_bad_interval_is_a_usage_error():
    with pytest.raises(UsageError, match="--every"):
        interval_seconds("soon")


RECORD = {"champion": 3, "regressions": [{"metric": "eval/perplexity"}], "action": "alert",
          "drift": {"ks_statistic": 0.4, "psi": 0.5, "alarm": True}}


def test_the_webhook_gets_the_check_as_json_and_a_failing_one_is_not_fatal(capsys):
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        assert alert(RECORD, f"http://127.0.0.1:{server.server_port}/hook") is True
        thread.join(5)
    finally:
        server.server_close()
    assert received[0]["check"]["champion"] == 3 and "regression on eval/perplexity" in received[0]["text"]
    # nothing listens there now: logged, not raised
    assert alert(RECORD, f"http://127.0.0.1:{server.server_port}/hook") is False
    assert "webhook" in capsys.readouterr().err


def test_the_monitor_state_checks_and_history_live_on_s3(s3_server, tmp_path):
    """Under an s3:// root: watched folders and globs at URIs are listed through the store, state.json,
    checks.jsonl (rewritten whole, S3 cannot append) and the history plots are written in the bucket,
    and the champion's copy for a retraining cycle is put where remote workers can fetch it."""
    import uuid

    from pipeline import storage
    from pipeline.monitor.cycle import append_check, champion_source
    from pipeline.monitor.history import read_checks, write_history
    from tests.s3server import BUCKET

    base = storage.resolve(f"s3://{BUCKET}/monitor-{uuid.uuid4().hex[:8]}")
    inbox = base / "inbox"
    storage.write_text(inbox / "a.jsonl", "{}\n")
    storage.write_text(inbox / "sub" / "b.txt", "x\n")
    assert [str(f) for f in watched_files([str(inbox)])] == [str(inbox / "a.jsonl"), str(inbox / "sub" / "b.txt")]
    assert watched_files([f"{inbox}/*.jsonl", f"{base}/later-*.jsonl"]) == [inbox / "a.jsonl"]
    with pytest.raises(UsageError, match=f"{base}/missing does not exist"):
        watched_files([f"{base}/missing"])
    with pytest.raises(UsageError, match="bucket name"):
        watched_files(["s3://ownlm-*/x"])

    folder = base / "root" / "monitor"
    state = MonitorState.load(folder)
    files = watched_files([str(inbox)])
    assert state.new_files(files) == files
    state.cycles += 1
    state.mark_seen(files)
    state.save()
    again = MonitorState.load(folder)
    assert again.cycles == 1 and again.new_files(watched_files([str(inbox)])) == []
    storage.write_text(inbox / "a.jsonl", '{"changed": 1}\n')
    assert again.new_files(watched_files([str(inbox)])) == [inbox / "a.jsonl"]

    for n, loss in ((1, 3.0), (2, 2.5)):
        append_check(folder / "checks.jsonl", {"time": "t", "champion": n, "action": "none",
                                               "metrics": {"eval/perplexity": loss}})
    assert [c["champion"] for c in read_checks(folder / "checks.jsonl")] == [1, 2]
    png, page = write_history(folder / "checks.jsonl", folder)
    assert png == folder / "history.png" and png.read_bytes().startswith(b"\x89PNG")
    assert "<table>" in page.read_text()

    local = tmp_path / "champion"
    local.mkdir()
    (local / "config.json").write_text("{}")
    assert champion_source(local, tmp_path / "cycle") == local  # a local root reads the registry's copy
    remote = champion_source(local, base / "root" / "monitor" / "cycles" / "00001")
    assert isinstance(remote, storage.RemotePath) and (remote / "config.json").read_text() == "{}"
