"""The `ownlm` command: one subcommand per stage, `run` for the whole pipeline, and tools.

A stage command without path options works in the storage root like `ownlm run`
(skipping the stage when it is unchanged). Given paths (`ownlm tokenize --input
DIR --output DIR`), it runs on exactly those, every time.

Commands beyond the stages live in their own modules (listed in TOOL_MODULES),
each with `register(subparsers, common)` that adds parsers whose `handler`
default is a function `(cfg, args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from pipeline.stages import STAGES

STAGE_HELP = {
    "sample": "build the bundled sample corpus from this Python installation",
    "curate": "read the raw sources, clean, filter, redact, deduplicate (Ray Data)",
    "tokenizer": "train a byte-level BPE tokenizer on the curated text",
    "tokenize": "tokenize and pack the curated text into training sequences (Ray Data)",
    "train": "train the model with Ray Train (data parallel)",
    "eval": "perplexity on the validation split and lm-eval tasks",
    "generate": "generate text from the trained model",
}

# Path options per stage: (flag, layout location, help). Any of them switches to direct mode.
STAGE_PATHS = {
    "curate": [("--output", "curated", "folder for the curated shards, rejects/ and report.json")],
    "tokenizer": [("--input", "curated", "curated folder to train on"),
                  ("--output", "tokenizer", "folder for tokenizer.json")],
    "tokenize": [("--input", "curated", "curated folder"), ("--tokenizer", "tokenizer", "tokenizer folder"),
                 ("--output", "tokens", "folder for the packed shards and manifest")],
    "train": [("--data", "tokens", "packed tokens folder (from `ownlm tokenize`)"),
              ("--output", "model", "folder for the final checkpoint")],
    "eval": [("--model", "model", "checkpoint folder"),
             ("--data", "tokens", "packed tokens folder for perplexity"),
             ("--output", "eval", "folder for results.json")],
}
# Stage options that are shorthands for --set.
STAGE_SETTINGS = {
    "tokenizer": [("--vocab-size", "tokenizer.vocab_size", int)],
    "tokenize": [("--seq-len", "tokenize.seq_len", int)],
    "eval": [("--tasks", "eval.tasks", str), ("--data-dir", "eval.data_dir", str), ("--limit", "eval.limit", int),
             ("--num-fewshot", "eval.num_fewshot", int)],
}

TOOL_MODULES: list[str] = ["pipeline.commands.model_tools", "pipeline.commands.eval_tools",
                           "pipeline.commands.cluster_tools"]


def common_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", metavar="FILE",
                   help="pipeline YAML, or the name of a bundled preset (default: quickstart)")
    p.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override one config value (repeatable), e.g. --set train.max_steps=50")
    p.add_argument("--root", metavar="DIR", help="put every artifact and the MLflow store under DIR")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="ownlm", description="Build a private language model end to end on Ray.",
        epilog="Every command takes --config, --set and --root. Start with: ownlm run")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", parents=[common], help="the whole pipeline, skipping finished stages",
                         description="Run every stage in order; stages whose inputs and config are unchanged "
                                     "since their last run are skipped.")
    run.add_argument("--from", dest="from_stage", choices=STAGES, metavar="STAGE",
                     help=f"force this stage and every later one to run again ({', '.join(STAGES)})")
    for stage in STAGES:
        p = sub.add_parser(stage, parents=[common], help=STAGE_HELP[stage], description=STAGE_HELP[stage])
        p.add_argument("--force", action="store_true", help="run even if unchanged since the last run")
        if stage == "curate":
            p.add_argument("--input", action="append", metavar="PATH", dest="inputs",
                           help="a file, folder or glob to curate instead of data.sources (repeatable; "
                                "format from the extension)")
        for flag, location, text in STAGE_PATHS.get(stage, []):
            p.add_argument(flag, metavar="DIR", dest=f"path_{location}", help=text)
        for flag, key, kind in STAGE_SETTINGS.get(stage, []):
            p.add_argument(flag, type=kind, dest=f"set_{key}", help=f"shorthand for --set {key}=...")
        if stage == "generate":
            p.add_argument("--model", metavar="CKPT", help="checkpoint folder (default: <root>/model)")
            p.add_argument("--prompt", help="prompt text (default: generate.prompt)")
    sub.add_parser("config", parents=[common], help="print the resolved config (after --set and --root)")
    for name in TOOL_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def stage_overrides(args) -> list[str]:
    """--vocab-size and friends as --set items, so they are validated like any other value."""
    extra = []
    for _, key, _ in STAGE_SETTINGS.get(args.command, []):
        value = getattr(args, f"set_{key}", None)
        if value is not None:
            extra.append(f"{key}={value if key != 'eval.tasks' else '[' + value + ']'}")
    return extra


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pipeline.config import ConfigError, dump_config, load_config

    try:
        cfg = load_config(args.config, args.overrides + stage_overrides(args), root=args.root)
    except ConfigError as e:
        print(f"ownlm: {e}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(dump_config(cfg), end="")
        return 0
    try:
        if hasattr(args, "handler"):
            return args.handler(cfg, args)
        if args.command == "generate" and (args.model or args.prompt is not None):
            return _generate(cfg, args)
        result = _run(cfg, args)
    except KeyboardInterrupt:
        print("\nownlm: interrupted; rerun the same command to continue where it stopped", file=sys.stderr)
        return 130
    except user_errors() as e:
        print(f"ownlm: error: {e}", file=sys.stderr)
        return 1
    _print_summary(cfg, result)
    return 0


def _run(cfg, args) -> dict:
    from pipeline.layout import Layout
    from pipeline.run import run_pipeline

    if args.command == "run":
        return run_pipeline(cfg, from_stage=args.from_stage)
    paths = {k[len("path_"):]: v for k, v in vars(args).items() if k.startswith("path_") and v}
    inputs = getattr(args, "inputs", None)
    if not paths and not inputs:
        return run_pipeline(cfg, from_stage=args.command if args.force else None, only=[args.command])
    if inputs:
        from pipeline.curate.sources import infer_source

        sources = []
        for path in inputs:
            sources.append(infer_source(path, {s.name for s in sources}))
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"sources": sources, "sample": False})})
    layout = Layout(cfg.root).with_paths(**paths)
    return run_pipeline(cfg, only=[args.command], layout=layout, direct=True)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by input or state, told in one line; anything else is a bug and keeps its traceback."""
    from model.checkpoint import CheckpointError
    from pipeline.curate.stage import CurateError
    from pipeline.tokenize import TokenizeError
    from pipeline.train.launch import TrainError

    return (CurateError, TokenizeError, TrainError, CheckpointError, FileNotFoundError)


def _generate(cfg, args) -> int:
    """`ownlm generate --model CKPT --prompt TEXT`: stream a completion (pipeline/commands/model_tools.py)."""
    from pipeline.commands.model_tools import generate_command

    return generate_command(cfg, args)


def _print_summary(cfg, result: dict) -> None:
    ran = ", ".join(result["ran"]) or "nothing (all stages unchanged)"
    print(f"\nownlm: ran {ran}. Output in {', '.join(result['outputs']) or result['layout'].root}")
    if result.get("mlflow_ui"):
        print(f"See runs, metrics and artifacts in MLflow:\n    {result['mlflow_ui']}")


if __name__ == "__main__":
    sys.exit(main())
