"""The whole pipeline, stage by stage, skipping stages whose inputs and config are unchanged."""
from __future__ import annotations

import contextlib

from pipeline.config import Config
from pipeline.layout import Layout
from pipeline.stages import STAGES, Context, Stage, StageRecords, run_stage
from pipeline.tracking import Tracker

# ---------------------------------------------------------------- stage actions


def do_sample(ctx: Context) -> dict:
    from pipeline.sample import build_sample

    info = build_sample(ctx.layout.sample)
    print(f"   sample corpus at {ctx.layout.sample}", flush=True)
    return info


def do_curate(ctx: Context) -> dict:
    from pipeline.curate.stage import run_curate

    report = run_curate(ctx.cfg, ctx.layout.curated, progress=lambda line: print(f"   {line}", flush=True))
    out = report.get("output", {})
    metrics = {"curate/docs_out": out.get("docs", 0), "curate/bytes_out": out.get("bytes", 0)}
    metrics.update({f"curate/rejects/{reason}": n for reason, n in report.get("rejects", {}).items()})
    metrics.update({f"curate/pii/{kind}": n for kind, n in report.get("pii", {}).items()})
    metrics.update({f"curate/languages/{lang}": c["kept"] for lang, c in report.get("languages", {}).items()})
    metrics.update({f"curate/steps/{step}/docs": s["docs"] for step, s in report.get("steps", {}).items()})
    metrics.update({f"curate/dedup/{kind}/duplicates": d["duplicates"]
                    for kind, d in (report.get("dedup") or {}).items() if isinstance(d, dict) and "duplicates" in d})
    ctx.tracker.log_metrics(metrics)
    for name in ("report.json", "report.html"):
        ctx.tracker.log_artifact(ctx.layout.curated / name, "curate")
    print(f"   kept {out.get('docs', 0):,} documents ({out.get('bytes', 0) / 1e6:.1f} MB); rejects: "
          + (", ".join(f"{k} {v}" for k, v in sorted(report.get("rejects", {}).items())) or "none"), flush=True)
    print(f"   report: {ctx.layout.curated / 'report.html'}", flush=True)
    return {"output": out, "rejects": report.get("rejects", {})}


def do_tokenizer(ctx: Context) -> dict:
    from pipeline.tokenize import train_tokenizer

    info = train_tokenizer(ctx.layout.curated, ctx.layout.tokenizer, ctx.cfg.tokenizer)
    ctx.tracker.log_artifact(ctx.layout.tokenizer, "tokenizer")
    ctx.tracker.log_metrics({"tokenizer/vocab_size": info["vocab_size"]})
    print(f"   vocabulary {info['vocab_size']:,} (fingerprint {info['fingerprint'][:12]})", flush=True)
    return info


def do_tokenize(ctx: Context) -> dict:
    from pipeline.tokenize import tokenize_and_pack

    manifest = tokenize_and_pack(ctx.layout.curated, ctx.layout.tokenizer, ctx.layout.tokens, ctx.cfg.tokenize)
    splits = {s: {k: v for k, v in info.items() if k in ("rows", "tokens", "documents")}
              for s, info in manifest.splits.items()}
    ctx.tracker.log_metrics({f"tokenize/{s}_{k}": v for s, info in splits.items() for k, v in info.items()})
    ctx.tracker.log_artifact(ctx.layout.tokens / "manifest.json", "tokens")
    print("   " + "; ".join(f"{s}: {i['tokens']:,} tokens in {i['rows']:,} sequences of {manifest.seq_len}"
                            for s, i in splits.items()), flush=True)
    return splits


def do_train(ctx: Context) -> dict:
    from pipeline.train.launch import run_train

    # Named by the stage fingerprint: an interrupted run with the same inputs resumes its checkpoints.
    run_name = "train-" + ctx.fingerprint[:12]
    # Forced means start over, not resume the run's last checkpoint.
    metrics = run_train(ctx.cfg, ctx.layout.tokens, ctx.layout.model, ctx.layout.train_runs,
                        run_name=run_name, run_id=ctx.tracker.run_id, fresh=ctx.forced)
    ctx.tracker.log_artifact(ctx.layout.model, "checkpoint")
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def do_eval(ctx: Context) -> dict:
    from pipeline.evaluate import evaluate_checkpoint

    tokens = ctx.layout.tokens
    if ctx.cfg.eval.perplexity and not (tokens / "manifest.json").is_file():
        print(f"   perplexity skipped: no packed tokens at {tokens} (pass --data TOKENS_DIR)", flush=True)
        tokens = None
    results = evaluate_checkpoint(ctx.cfg.eval, ctx.layout.model, tokens, ctx.layout.eval)
    ctx.tracker.log_metrics(results["metrics"])
    ctx.tracker.log_artifact(ctx.layout.eval / "results.json", "eval")
    for name, value in sorted(results["metrics"].items()):
        print(f"   {name}: {value:.4f}", flush=True)
    return results["metrics"]


def do_generate(ctx: Context) -> dict:
    from model.checkpoint import load_model, load_tokenizer
    from model.generate import generate_text

    g = ctx.cfg.generate
    model, _ = load_model(ctx.layout.model)
    tok = load_tokenizer(ctx.layout.model)
    text = generate_text(model, tok, g.prompt, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                         top_k=g.top_k, seed=g.seed)
    sample = g.prompt + text
    ctx.layout.eval.mkdir(parents=True, exist_ok=True)
    (ctx.layout.eval / "sample.txt").write_text(sample)
    ctx.tracker.log_text(sample, "generate/sample.txt")
    print("   --- generated sample ---\n" + _indent(sample) + "\n   ------------------------", flush=True)
    return {"prompt": g.prompt, "text": text}


def _indent(text: str) -> str:
    return "\n".join("   " + line for line in text.splitlines())


PIPELINE: dict[str, Stage] = {s.name: s for s in [
    Stage("sample", (), ("data",), lambda l: [l.sample / "_SUCCESS"], do_sample),
    Stage("curate", ("sample",), ("data", "curate"), lambda l: [l.curated / "report.json"], do_curate),
    Stage("tokenizer", ("curate",), ("tokenizer",), lambda l: [l.tokenizer / "tokenizer.json"], do_tokenizer),
    Stage("tokenize", ("tokenizer", "curate"), ("tokenize",), lambda l: [l.tokens / "manifest.json"],
          do_tokenize),
    Stage("train", ("tokenize",), ("model", "train"), lambda l: [l.model / "config.json"], do_train),
    Stage("eval", ("train", "tokenize"), ("eval",), lambda l: [l.eval / "results.json"], do_eval),
    Stage("generate", ("train",), ("generate",), lambda l: [l.eval / "sample.txt"], do_generate),
]}
assert list(PIPELINE) == STAGES


def stages_for(cfg: Config) -> list[str]:
    return [s for s in STAGES if s != "sample" or cfg.data.sample]


def run_pipeline(cfg: Config, from_stage: str | None = None, only: list[str] | None = None,
                 layout: Layout | None = None, direct: bool = False) -> dict:
    """Run every stage (or `only` these) in order; `from_stage` forces it and everything after it.

    `ownlm run` opens one parent MLflow run with a nested run per stage; a single-stage
    command (`ownlm curate`, ...) gets one top-level run for its stage. `direct` runs the
    stages on the given layout every time and leaves no stage record (explicit paths).
    """
    from pipeline.raysession import ensure_ray

    layout = layout or Layout(cfg.root)
    layout.root.mkdir(parents=True, exist_ok=True)
    names = only or stages_for(cfg)
    if from_stage and from_stage not in names:
        raise ValueError(f"--from {from_stage}: not one of {', '.join(names)}")
    forced = set(names[names.index(from_stage):]) if from_stage else set()
    if "curate" in names:
        check_sources(cfg, layout, sample_pending="sample" in names)
    tracker = Tracker(cfg)
    records = StageRecords(layout)
    ctx = Context(cfg, layout, tracker)
    ensure_ray(cfg)
    summaries, ran = {}, []
    parent = tracker.run("ownlm run", stage="run") if only is None else contextlib.nullcontext()
    with parent:
        for name in names:
            did, summaries[name] = run_stage(PIPELINE[name], ctx, records, force=name in forced,
                                             record=not direct)
            if did:
                ran.append(name)
        if only is None:
            tracker.set_tags({"ownlm.ran": ",".join(ran) or "(none)"})
            _log_headline(ctx, summaries)
    outputs = list(dict.fromkeys(str(p.parent) for name in ran for p in PIPELINE[name].outputs(layout)))
    return {"ran": ran, "summaries": summaries, "layout": layout, "outputs": outputs,
            "mlflow_ui": tracker.ui_command() if tracker.enabled else None}


def check_sources(cfg: Config, layout: Layout, sample_pending: bool) -> None:
    """Fail before starting Ray when a configured source is missing or empty, naming every one."""
    from pipeline.curate.sources import list_source
    from pipeline.curate.stage import CurateError

    problems = []
    for src in cfg.data.sources:
        if sample_pending and "{sample}" in src.path:
            continue  # the sample stage is about to build it
        try:
            list_source(src, layout)
        except CurateError as e:
            problems.append(str(e))
    if problems:
        raise CurateError("; ".join(problems) if len(problems) == 1 else
                          f"{len(problems)} sources cannot be read:\n  - " + "\n  - ".join(problems))


def _log_headline(ctx: Context, summaries: dict) -> None:
    """The numbers a user looks for first, on the parent run too."""
    metrics = {}
    for stage in ("train", "eval"):
        for k, v in (summaries.get(stage) or {}).items():
            if isinstance(v, (int, float)) and "/" in k:
                metrics[k] = v
    ctx.tracker.log_metrics(metrics)
