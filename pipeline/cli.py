"""The `ownlm` command: one subcommand per stage, plus `run` for the whole pipeline."""
from __future__ import annotations

import argparse
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
        if stage == "generate":
            p.add_argument("--model", metavar="CKPT", help="checkpoint folder (default: <root>/model)")
            p.add_argument("--prompt", help="prompt text (default: generate.prompt)")
    sub.add_parser("config", parents=[common], help="print the resolved config (after --set and --root)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pipeline.config import ConfigError, dump_config, load_config

    try:
        cfg = load_config(args.config, args.overrides, root=args.root)
    except ConfigError as e:
        print(f"ownlm: {e}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(dump_config(cfg), end="")
        return 0
    try:
        if args.command == "generate" and (args.model or args.prompt):
            return _generate(cfg, args)
        from pipeline.run import run_pipeline

        if args.command == "run":
            result = run_pipeline(cfg, from_stage=args.from_stage)
        else:
            result = run_pipeline(cfg, from_stage=args.command if args.force else None, only=[args.command])
    except KeyboardInterrupt:
        print("\nownlm: interrupted; rerun the same command to continue where it stopped", file=sys.stderr)
        return 130
    except user_errors() as e:
        print(f"ownlm: error: {e}", file=sys.stderr)
        return 1
    _print_summary(cfg, result)
    return 0


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by input or state, told in one line; anything else is a bug and keeps its traceback."""
    from pipeline.curate.stage import CurateError
    from pipeline.tokenize import TokenizeError
    from pipeline.train.launch import TrainError

    return (CurateError, TokenizeError, TrainError, FileNotFoundError)


def _generate(cfg, args) -> int:
    from model.checkpoint import load_model, load_tokenizer
    from model.generate import generate_text
    from pipeline.layout import Layout

    path = args.model or Layout(cfg.root).model
    g = cfg.generate
    prompt = args.prompt if args.prompt is not None else g.prompt
    model, _ = load_model(path)
    text = generate_text(model, load_tokenizer(path), prompt, max_new_tokens=g.max_new_tokens,
                         temperature=g.temperature, top_k=g.top_k, seed=g.seed)
    print(prompt + text)
    return 0


def _print_summary(cfg, result: dict) -> None:
    from pipeline.layout import Layout

    layout = Layout(cfg.root)
    ran = ", ".join(result["ran"]) or "nothing (all stages unchanged)"
    print(f"\nownlm: ran {ran}. Everything is under {layout.root}")
    if result.get("mlflow_ui"):
        print(f"See runs, metrics and artifacts in MLflow:\n    {result['mlflow_ui']}")


if __name__ == "__main__":
    sys.exit(main())
