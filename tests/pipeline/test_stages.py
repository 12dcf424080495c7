"""The stage registry is the one list of stages: the CLI, `ownlm run`, `--from`, the layout and
the fingerprints all come from it (docs/architecture.md)."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from pipeline import cli, run, stages
from pipeline.config import Config, load_config
from pipeline.layout import Location
from pipeline.options import ConfigFlag, PathFlag
from pipeline.stage import Stage


def subcommands(parser: argparse.ArgumentParser) -> list[str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def test_the_cli_has_one_command_per_registered_stage_in_registry_order():
    names = subcommands(cli.build_parser())
    assert names[0] == "run"
    assert names[1:1 + len(stages.NAMES)] == list(stages.NAMES)
    assert list(cli.COMMANDS) == names  # one table, in the order --help lists it


def test_ownlm_run_runs_the_registry_in_order_and_from_offers_its_names():
    # tune runs only with tune.enabled, finetune only with data to fine-tune on (finetune.data), sample
    # with data.sample: each record's `enabled` decides
    optional = ("tune", "finetune")
    assert run.stages_for(load_config(None)) == [n for n in stages.NAMES if n not in optional]
    everything = run.stages_for(load_config(None, ["tune.enabled=true", "finetune.data=tasks.jsonl"]))
    assert everything == list(stages.NAMES)
    assert everything.index("tokenize") < everything.index("tune") < everything.index("train")
    assert everything.index("finetune") == everything.index("train") + 1
    without_sample = run.stages_for(load_config(None, ["data.sample=false", "tune.enabled=true"]))
    assert without_sample == [n for n in stages.NAMES if n not in ("sample", "finetune")]
    run_parser = next(a for a in cli.build_parser()._actions
                      if isinstance(a, argparse._SubParsersAction)).choices["run"]
    from_stage = next(a for a in run_parser._actions if a.dest == "from_stage")
    assert tuple(from_stage.choices) == stages.NAMES


def test_the_layout_is_the_union_of_the_stages_locations():
    layout = stages.layout_for("/data/exp")
    declared = {loc.name for s in stages.STAGES for loc in s.locations}
    assert {loc.name for loc in layout.locations} == declared
    assert layout.tokens == layout.path("tokens") and str(layout.tokens) == "/data/exp/tokens"
    assert layout.with_paths(tokens="/elsewhere").tokens.as_posix() == "/elsewhere"
    with pytest.raises(AttributeError, match="no layout location 'weights'"):
        layout.weights  # noqa: B018
    assert layout.expand("{root}/x:{sample}") == "/data/exp/x:/data/exp/sample"


def test_every_stage_flag_names_a_real_config_key_or_location():
    def has_key(dotted: str) -> bool:
        model = Config
        for part in dotted.split("."):
            fields = getattr(model, "model_fields", {})
            if part not in fields:
                return False
            model = fields[part].annotation
        return True

    locations = {loc.name for loc in stages.LOCATIONS}
    for command in cli.COMMANDS.values():
        for flag in command.flags:
            if isinstance(flag, ConfigFlag) and flag.key is not None:
                assert has_key(flag.key), f"ownlm {command.name} {flag.flag}: no config key {flag.key}"
            if isinstance(flag, PathFlag):
                assert flag.location in locations, f"ownlm {command.name} {flag.flag}: no location {flag.location}"


def test_every_stage_section_is_a_config_section():
    for stage in stages.STAGES:
        assert set(stage.sections) <= set(Config.model_fields), stage.name


def _stage(name, **kw) -> Stage:
    return Stage(name=name, help=name, action=lambda ctx: {}, **kw)


def test_a_broken_registry_is_named_problem_by_problem():
    good = (_stage("a", locations=(Location("a_out", "a", "x"),), outputs=(("a_out", "done"),)),
            _stage("b", upstream=("a",)))
    assert stages.problems(good) == []
    bad = (_stage("a"), _stage("a"), _stage("b", upstream=("c",), outputs=(("nowhere", "x"),),
                                             flags=(PathFlag("--in", "void", "h"),)), _stage("c"))
    found = stages.problems(bad)
    assert "stage 'a' is registered twice" in found
    assert "stage 'b': upstream 'c' is not a stage before it" in found
    assert "stage 'b': output in unknown location 'nowhere'" in found
    assert "stage 'b': --in moves unknown location 'void'" in found


def test_a_new_stage_is_one_record_and_gets_its_command_and_flags():
    from pipeline.commands.stage_commands import stage_command

    extra = _stage("distill", upstream=("train",), sections=("train",),
                   flags=(PathFlag("--teacher", "model", "teacher checkpoint"),
                          ConfigFlag("--steps", "train.max_steps", type=int)))
    command = stage_command(extra)
    parser = argparse.ArgumentParser()
    command.arguments(parser)
    for flag in command.flags:
        flag.add_to(parser)
    args = parser.parse_args(["--teacher", "/t", "--steps", "70", "--force"])
    assert args.force and args.teacher == "/t"
    loaded = cli.load(command, argparse.Namespace(**vars(args), config=None, overrides=[], root=None))
    assert loaded.train.max_steps == 70


def test_the_fingerprint_covers_sections_upstream_and_declared_inputs(tmp_path):
    from pipeline.stage import Context
    from pipeline.tracking import Tracker

    cfg = load_config(None, ["tracking.enabled=false"], root=str(tmp_path))
    layout = stages.layout_for(tmp_path)
    records = run.StageRecords(layout)
    ctx = Context(cfg, layout, Tracker(cfg))
    tokenize = stages.BY_NAME["tokenize"]
    base = run.fingerprint(tokenize, ctx, records)
    assert run.fingerprint(tokenize, ctx, records) == base
    records.write("tokenizer", {"fingerprint": "changed"})
    assert run.fingerprint(tokenize, ctx, records) != base  # an upstream stage reran
    other = dataclasses.replace(ctx, cfg=load_config(None, ["tracking.enabled=false", "tokenize.seq_len=64"],
                                                      root=str(tmp_path)))
    assert run.fingerprint(tokenize, other, records) != run.fingerprint(tokenize, ctx, records)
    extra = dataclasses.replace(tokenize, fingerprint_inputs=lambda c: {"inputs": ["a file"]})
    assert run.fingerprint(extra, ctx, records) != run.fingerprint(tokenize, ctx, records)
