"""The `generate` stage: a short sample from the trained model, printed and logged; given a
checkpoint or a prompt (`ownlm generate --model CKPT --prompt TEXT`), a completion streamed to
the terminal as it is decoded, and nothing recorded."""
from __future__ import annotations

import sys

from pipeline.options import ConfigFlag, PathFlag
from pipeline.stage import Context, Stage

COMPILE_FLAGS = (
    ConfigFlag("--compile", "generate.compile", switch=True,
               help="decode with the torch.compile'd step (default: generate.compile; unset: on CUDA only)"),
    ConfigFlag("--no-compile", values=lambda _: {"generate.compile": False}, switch=True,
               help="decode eagerly (shorthand for --set generate.compile=false)"),
)


def sample_text(ctx: Context) -> dict:
    from model.checkpoint import load_model, load_tokenizer
    from model.decode_compile import use_compiled  # torch: only when generating
    from model.generate import generate_text

    g = ctx.cfg.generate
    model, _ = load_model(ctx.layout.model)
    text = generate_text(model, load_tokenizer(ctx.layout.model), g.prompt, g.sampling(),
                         compile=use_compiled(g.compile, model.tok_embeddings.weight.device))
    sample = g.prompt + text
    ctx.layout.eval.mkdir(parents=True, exist_ok=True)
    (ctx.layout.eval / "sample.txt").write_text(sample)
    ctx.tracker.log_text(sample, "generate/sample.txt")
    print("   --- generated sample ---\n" + _indent(sample) + "\n   ------------------------", flush=True)
    return {"prompt": g.prompt, "text": text}


def _indent(text: str) -> str:
    return "\n".join("   " + line for line in text.splitlines())


def stream_completion(ctx: Context) -> dict:
    """The prompt, then the completion as it is decoded."""
    from model.checkpoint import load_model, load_tokenizer
    from model.decode_compile import use_compiled
    from model.generate import generate_stream

    g = ctx.cfg.generate
    model, _ = load_model(ctx.layout.model)
    tok = load_tokenizer(ctx.layout.model)
    stream = generate_stream(model, tok.encode(g.prompt) or [tok.eot_id], g.sampling(), eos_id=tok.eot_id,
                             compile=use_compiled(g.compile, model.tok_embeddings.weight.device))
    print(g.prompt, end="", flush=True)
    text = print_stream(stream, tok, stop_ids={tok.eot_id})
    print()
    return {"prompt": g.prompt, "text": text}


def print_stream(stream, tok, stop_ids: set[int]) -> str:
    """Print decoded text as tokens arrive; returns the whole text. A byte-level token can end
    inside a multi-byte character, which decodes as U+FFFD until the rest arrives: hold it back."""
    ids: list[int] = []
    shown = 0
    text = ""
    for token in stream:
        if token in stop_ids:
            break
        ids.append(token)
        text = tok.decode(ids)
        ready = len(text.rstrip("\ufffd"))
        if ready > shown:
            sys.stdout.write(text[shown:ready])
            sys.stdout.flush()
            shown = ready
    sys.stdout.write(text[shown:])
    sys.stdout.flush()
    return text


STAGE = Stage(
    name="generate",
    help="generate text from the trained model",
    action=sample_text,
    upstream=("train",),
    sections=("generate",),
    outputs=(("eval", "sample.txt"),),
    flags=(PathFlag("--model", "model", "checkpoint folder, or models:/NAME@ALIAS, models:/NAME/VERSION "
                    "(default: <root>/model)", metavar="CKPT"),
           ConfigFlag("--prompt", "generate.prompt", help="prompt text (default: generate.prompt)", metavar="PROMPT",
                      explicit=True), *COMPILE_FLAGS),
    direct=stream_completion,
)
