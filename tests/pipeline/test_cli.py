"""The `ownlm` command as a user meets it: help, and one clear line for bad input instead of a traceback."""
import subprocess
import sys

import pytest

from pipeline.stages import NAMES


def ownlm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_help_lists_every_stage():
    out = ownlm("--help")
    assert out.returncode == 0
    for stage in ["run", *NAMES]:
        assert stage in out.stdout
    train = ownlm("train", "--help").stdout
    assert "--config" in train and "--set" in train and "--root" in train


def test_bad_config_lists_every_problem_and_exits_2(tmp_path):
    out = ownlm("run", "--root", str(tmp_path), "--set", "train.lr=-1", "--set", "model.preset=huge",
                "--set", "train.bogus=1")
    assert out.returncode == 2
    assert "3 problem(s)" in out.stderr
    assert "train.lr" in out.stderr and "model.preset" in out.stderr and "train.bogus" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # stopped before any work


@pytest.mark.parametrize("path, expected", [
    ("/nonexistent/corpus/*.jsonl", "matches no files"),
    ("/nonexistent/corpus", "does not exist"),
])
def test_missing_input_is_one_clear_line(tmp_path, path, expected):
    out = ownlm("curate", "--root", str(tmp_path), "--set", "data.sample=false",
                "--set", f"data.sources=[{{name: mine, format: jsonl, path: '{path}'}}]")
    assert out.returncode == 1, out.stderr
    assert f"ownlm: error: source 'mine' (jsonl): path '{path}'" in out.stderr
    assert expected in out.stderr and "Traceback" not in out.stderr


def test_empty_source_folder_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    out = ownlm("run", "--root", str(tmp_path), "--set", "data.sample=false",
                "--set", f"data.sources=[{{name: books, format: text, path: '{tmp_path / 'empty'}'}}]")
    assert out.returncode == 1
    assert "source 'books' (text)" in out.stderr and "no files" in out.stderr


def test_config_command_prints_the_resolved_config(tmp_path):
    out = ownlm("config", "--root", str(tmp_path), "--set", "train.max_steps=70")
    assert out.returncode == 0
    assert "max_steps: 70" in out.stdout and str(tmp_path) in out.stdout


def test_submit_checks_an_ownlm_command_before_sending_it(tmp_path):
    # The address is a closed port: a command that got past the check would fail to connect (exit 1).
    bad = ownlm("submit", "--address", "http://127.0.0.1:9", "--", "ownlm", "train", "--root", str(tmp_path),
                "--set", "train.lr=-1")
    assert bad.returncode == 2 and "not submitted" in bad.stderr and "train.lr" in bad.stderr
    assert "Traceback" not in bad.stderr
    nowhere = ownlm("submit", "--address", "http://127.0.0.1:9", "--", "ownlm", "train", "--root", str(tmp_path))
    assert nowhere.returncode == 1 and "cannot reach the cluster at http://127.0.0.1:9" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr
    empty = ownlm("submit", "--address", "http://127.0.0.1:9")
    assert empty.returncode == 2 and "give the command after --" in empty.stderr


def test_a_job_driver_joins_ray_address_but_a_dashboard_url_is_not_a_cluster(monkeypatch):
    from pipeline.config import load_config
    from pipeline.raysession import cluster_address

    cfg = load_config(None, [])
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")  # what Ray sets in a job's driver
    assert cluster_address(cfg) == "10.0.0.5:6379"
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")  # exported for the job CLI
    assert cluster_address(cfg) is None
    assert cluster_address(load_config(None, ["cluster.address=auto"])) == "auto"
    monkeypatch.delenv("RAY_ADDRESS")
    assert cluster_address(cfg) is None


@pytest.mark.parametrize("error, code", [("UsageError", 2), ("InputError", 1), ("MissingInput", 1), ("UserError", 1)])
def test_a_user_error_raised_anywhere_is_one_line_and_its_exit_code(monkeypatch, capsys, error, code):
    import model.errors
    from pipeline import cli
    from pipeline.commands.command import Command

    def fail(inv):
        raise getattr(model.errors, error)("the thing is wrong; do this instead")

    monkeypatch.setitem(cli.COMMANDS, "explode", Command(name="explode", help="fails", run=fail))
    assert cli.main(["explode"]) == code
    err = capsys.readouterr().err
    assert err == "ownlm: error: the thing is wrong; do this instead\n"


def test_a_bug_keeps_its_traceback(monkeypatch):
    from pipeline import cli
    from pipeline.commands.command import Command

    def bug(inv):
        raise ZeroDivisionError("a bug of ours")

    monkeypatch.setitem(cli.COMMANDS, "bug", Command(name="bug", help="a bug", run=bug))
    with pytest.raises(ZeroDivisionError):
        cli.main(["bug"])


def test_importing_the_cli_loads_no_heavy_package():
    """`ownlm --help` and config checks stay fast: torch, Ray, MLflow and lm-eval load only in the
    command that needs them."""
    code = ("import sys, pipeline.cli; heavy = {'torch', 'ray', 'mlflow', 'lm_eval', 'transformers', 'pandas'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_version_names_the_package():
    out = ownlm("--version")
    assert out.returncode == 0 and out.stdout.startswith("ownlm 0.1.0")


def test_a_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 1\n  x: y: z\n")
    out = ownlm("config", "--config", str(bad))
    assert out.returncode == 2
    assert out.stderr == f"ownlm: {bad}:3:7: not valid YAML: mapping values are not allowed here\n"


def test_one_config_problem_is_one_line(tmp_path):
    out = ownlm("config", "--root", str(tmp_path), "--set", "train.lr=-1")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "train.lr: Input should be greater than 0 (got -1)" in out.stderr


def test_a_command_s_own_overrides_stay_its_own():
    """tracking-server turns tracking off for itself; every other command keeps its --set empty
    (the `--set` action is shared by all subparsers, so this once leaked into `ownlm run`)."""
    from pipeline.cli import COMMANDS, build_parser, load

    parser = build_parser()
    for name in ("run", "train", "serve"):
        assert parser.parse_args([name]).overrides == []
        assert load(COMMANDS[name], parser.parse_args([name])).tracking.enabled
    server = parser.parse_args(["tracking-server", "--set", "tracking.experiment=x"])
    cfg = load(COMMANDS["tracking-server"], server)
    assert not cfg.tracking.enabled and cfg.tracking.experiment == "x"
