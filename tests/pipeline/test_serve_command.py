"""`ownlm serve`'s command line, up to where Ray would start: flags land in the `serve` section,
and what cannot work fails first with one line."""
from __future__ import annotations

from pipeline.cli import COMMANDS, build_parser, invocation, main
from pipeline.serve.command import _check_model, model_source, served_name, settings_for


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


def test_a_checkpoint_on_s3_loads_as_a_replica_loads_it(tmp_path, s3_server, capsys, monkeypatch):
    """`serve --model s3://...`: the command's check reads the config alone; the replica's folder is
    its own cached download of the whole checkpoint, the ingress's holds config and tokenizer only.
    A URI with no checkpoint fails before Ray, in one line naming it."""
    import uuid

    import torch

    from model.checkpoint import load_model
    from pipeline import storage
    from pipeline.serve.app import build_app, checkpoint_folder, checkpoint_header
    from tests.evaluation.conftest import build_checkpoint
    from tests.s3server import BUCKET

    monkeypatch.setenv("OWNLM_CACHE", str(tmp_path / "cache"))
    ckpt = build_checkpoint(tmp_path / "local")
    uri = f"s3://{BUCKET}/serve-{uuid.uuid4().hex[:8]}/model"
    storage.upload_dir(ckpt.path, storage.resolve(uri))

    args = build_parser().parse_args(["serve", "--model", uri])
    source, named = model_source(invocation(COMMANDS["serve"], args))
    assert source == uri and served_name(named) == "model"
    _check_model(source)
    header = checkpoint_header(source)
    assert sorted(p.name for p in header.iterdir()) == ["config.json", "tokenizer.json"]
    folder = checkpoint_folder(source)
    assert str(tmp_path / "cache") in str(folder) and (folder / "model.safetensors").is_file()
    model, _ = load_model(folder)
    for (name, theirs), mine in zip(ckpt.model.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(theirs, mine), name
    # the replicas get the storage variables, to fetch the checkpoint on any node
    app = build_app(settings_for(invocation(COMMANDS["serve"], args).cfg.serve, source, named))
    env = app._bound_deployment.ray_actor_options["runtime_env"]["env_vars"]
    assert env["AWS_ENDPOINT_URL"] == s3_server

    missing = f"s3://{BUCKET}/no-such-model"
    assert main(["serve", "--model", missing]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and missing in err[0]
