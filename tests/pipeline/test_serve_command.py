"""`ownlm serve`'s command line, up to where Ray would start: flags land in the `serve` section,
and what cannot work fails first with one line."""
from __future__ import annotations

from pipeline.cli import COMMANDS, build_parser, invocation, main
from pipeline.serve.command import served_name, settings_for


def test_flags_set_the_serve_section(tmp_path):
    args = build_parser().parse_args(["serve", "--model", str(tmp_path), "--port", "9001", "--autoscale", "1:4",
                                      "--max-batch-size", "16", "--api-key", "k", "--host", "0.0.0.0"])
    inv = invocation(COMMANDS["serve"], args)
    s = inv.cfg.serve
    assert (s.port, s.autoscale, s.max_batch_size, s.api_key, s.host) == (9001, "1:4", 16, "k", "0.0.0.0")
    settings = settings_for(s, str(tmp_path))
    assert settings.autoscale == (1, 4) and settings.model_name == tmp_path.name and settings.api_key == "k"
    assert settings.compile is True  # a server decodes with the compiled step unless told not to


def test_no_compile_turns_the_compiled_decoding_step_off(tmp_path):
    args = build_parser().parse_args(["serve", "--model", str(tmp_path), "--no-compile"])
    assert settings_for(invocation(COMMANDS["serve"], args).cfg.serve, str(tmp_path)).compile is False
    for flags, want in (([], None), (["--compile"], True), (["--no-compile"], False)):
        args = build_parser().parse_args(["generate", "--model", str(tmp_path), *flags])
        assert invocation(COMMANDS["generate"], args).cfg.generate.compile is want


def test_the_key_can_come_from_the_environment(monkeypatch, tmp_path):
    from pipeline.config import ServeConfig

    monkeypatch.setenv("OWNLM_API_KEY", "from-env")
    assert settings_for(ServeConfig(), str(tmp_path)).api_key == "from-env"


def test_registry_uris_serve_under_the_registered_name():
    assert served_name("models:/ownlm@champion") == "ownlm"
    assert served_name("/data/runs/model") == "model"


def test_bad_settings_fail_before_ray(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["serve", "--model", str(tmp_path), "--autoscale", "4:1"]) == 2
    assert "autoscale" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--detach"]) == 2
    assert "ray start --head" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path / "missing")]) != 0  # no checkpoint: one line, no Ray
    assert "error" in capsys.readouterr().err
