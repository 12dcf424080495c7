"""Model tools on the command line: `ownlm embed`, `ownlm chat`, `ownlm export`, `ownlm import`,
and the body of `ownlm generate --model CKPT --prompt TEXT`.

Thin shells over model/ (model.embed, model.generate, model.hf): they parse, load, call, print.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("embed", parents=[common], help="turn texts into vectors with a checkpoint",
                       description="Embed texts: the mean of the model's final hidden states over each text's "
                                   "tokens, normalized to unit length (a dot product is a cosine similarity).")
    p.add_argument("--model", metavar="CKPT", help="checkpoint folder (default: <root>/model)")
    p.add_argument("--input", metavar="FILE", required=True,
                   help="texts: a .jsonl file with a 'text' field per line, or plain text with one text per "
                        "line (blank lines skipped); '-' reads standard input")
    p.add_argument("--output", metavar="FILE",
                   help="where to write: FILE.npy for a (texts, dim) float32 array, anything else for JSON lines "
                        "{index, text, embedding} (default: JSON lines on standard output)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    p.set_defaults(handler=embed_command)

    p = sub.add_parser("chat", parents=[common], help="talk to a checkpoint, one line per message",
                       description="Interactive chat in the role tokens (<|system|>, <|user|>, <|assistant|>, "
                                   "<|end|>): each line of standard input is a user message, the reply streams "
                                   "back. /reset clears the conversation, /exit (or end of input) quits.")
    p.add_argument("--model", metavar="CKPT", help="checkpoint folder (default: <root>/model)")
    p.add_argument("--system", metavar="TEXT", help="a system message that opens the conversation")
    _sampling_options(p)
    p.set_defaults(handler=chat_command)

    p = sub.add_parser("export", parents=[common], help="write a checkpoint in another format (Hugging Face)",
                       description="Write an ownlm checkpoint as a Hugging Face Llama folder (config.json, "
                                   "model.safetensors, tokenizer files) that transformers' "
                                   "AutoModelForCausalLM.from_pretrained loads.")
    p.add_argument("checkpoint", metavar="CKPT", help="ownlm checkpoint folder")
    p.add_argument("--format", choices=["hf"], default="hf", help="hf: Hugging Face Llama (the only one)")
    p.add_argument("--output", metavar="DIR", required=True, help="folder to write (replaced if it exists)")
    p.add_argument("--dtype", choices=DTYPES, help="weights' dtype in the export (default: as stored)")
    p.set_defaults(handler=export_command)

    p = sub.add_parser("import", parents=[common], help="read a local Hugging Face Llama into a checkpoint",
                       description="Read a local Hugging Face Llama folder (config.json, safetensors or "
                                   "pytorch_model.bin, tokenizer.json) into an ownlm checkpoint, to continue "
                                   "pretraining or fine-tune it. Our special tokens that its tokenizer lacks "
                                   "are added, and the embedding grows to cover them.")
    p.add_argument("hf_dir", metavar="HF_DIR", help="Hugging Face model folder")
    p.add_argument("--output", metavar="CKPT", required=True, help="checkpoint folder to write")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="stored weights' dtype (default float32, what training wants)")
    p.set_defaults(handler=import_command)


def _sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, help="longest reply in tokens (default: generate.max_new_tokens)")
    p.add_argument("--temperature", type=float, help="0 is greedy (default: generate.temperature)")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens (default: generate.top_k)")
    p.add_argument("--top-p", type=float, help="sample within the nucleus of this probability mass")
    p.add_argument("--seed", type=int, help="repeatable sampling (default: generate.seed)")


def _model_path(cfg, args) -> Path:
    from pipeline.layout import Layout

    return Path(args.model) if args.model else Layout(cfg.root).model


def _fail(message: str) -> int:
    print(f"ownlm: error: {message}", file=sys.stderr)
    return 1


# ---- generate ----

def generate_command(cfg, args) -> int:
    """`ownlm generate --model CKPT --prompt TEXT`: the prompt, then the completion as it is decoded."""
    from model.checkpoint import load_model, load_tokenizer
    from model.generate import generate_stream

    path = _model_path(cfg, args)
    g = cfg.generate
    prompt = args.prompt if args.prompt is not None else g.prompt
    model, _ = load_model(path)
    tok = load_tokenizer(path)
    try:
        stream = generate_stream(model, tok.encode(prompt) or [tok.eot_id], g.max_new_tokens,
                                 temperature=g.temperature, top_k=g.top_k, eos_id=tok.eot_id, seed=g.seed)
    except ValueError as e:
        return _fail(str(e))
    print(prompt, end="", flush=True)
    _print_stream(stream, tok, stop_ids={tok.eot_id})
    print()
    return 0


def _print_stream(stream, tok, stop_ids: set[int]) -> str:
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
            print(text[shown:ready], end="", flush=True)
            shown = ready
    print(text[shown:], end="", flush=True)
    return text


# ---- chat ----

def chat_command(cfg, args) -> int:
    from model.checkpoint import load_model, load_tokenizer
    from model.generate import generate_stream
    from model.tokenizer import chat_prompt

    path = _model_path(cfg, args)
    model, _ = load_model(path)
    tok = load_tokenizer(path)
    g = cfg.generate
    max_new = args.max_new_tokens or g.max_new_tokens
    temperature = g.temperature if args.temperature is None else args.temperature
    top_k = g.top_k if args.top_k is None else args.top_k
    seed = g.seed if args.seed is None else args.seed
    stops = {tok.eot_id} | ({tok.end_of_turn_id} if tok.end_of_turn_id is not None else set())
    opening = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(opening)
    interactive, turn = sys.stdin.isatty(), 0
    if interactive:
        print(f"ownlm chat with {path} (/reset clears, /exit or Ctrl-D quits)", file=sys.stderr)
    while True:
        if interactive:
            print("you> ", end="", flush=True, file=sys.stderr)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            return 0
        line = line.rstrip("\n")
        if line.strip() == "/reset":
            messages = list(opening)
            continue
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        turn += 1  # a new seed per reply: the same seed every turn would repeat the same draws
        try:
            stream = generate_stream(model, tok.encode(chat_prompt(messages)), max_new, temperature=temperature,
                                     top_k=top_k, top_p=args.top_p, eos_id=sorted(stops), seed=seed + turn)
        except ValueError as e:
            return _fail(str(e))
        print("assistant> ", end="", flush=True)
        reply = _print_stream(stream, tok, stop_ids=stops)
        print(flush=True)
        messages.append({"role": "assistant", "content": reply})


# ---- embed ----

def read_texts(path: str) -> list[str]:
    """Texts from a .jsonl file ('text' field per line), or one per line of a plain file ('-': stdin)."""
    if path == "-":
        lines = sys.stdin.read().splitlines()
    else:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"no input file at {file}")
        lines = file.read_text(encoding="utf-8").splitlines()
    if path.endswith(".jsonl"):
        texts = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {n} is not JSON: {e}") from e
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f"{path} line {n} has no string 'text' field")
            texts.append(row["text"])
        return texts
    return [line for line in lines if line.strip()]


def embed_command(cfg, args) -> int:
    from model.checkpoint import load_model, load_tokenizer
    from model.embed import embed

    try:
        texts = read_texts(args.input)
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    except ValueError as e:
        return _fail(str(e))
    path = _model_path(cfg, args)
    model, _ = load_model(path)
    vectors = embed(model, load_tokenizer(path), texts, batch_size=args.batch_size).cpu()
    if args.output and args.output.endswith(".npy"):
        import numpy as np

        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        np.save(args.output, vectors.numpy())
        print(f"ownlm: {len(texts)} embeddings of dim {vectors.shape[1]} -> {args.output}", file=sys.stderr)
        return 0
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for i, (text, v) in enumerate(zip(texts, vectors.tolist())):
            out.write(json.dumps({"index": i, "text": text, "embedding": v}, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


# ---- export / import ----

def _dtype(name: str | None):
    import torch

    return None if name is None else getattr(torch, name)


def export_command(cfg, args) -> int:
    from model.hf import export_hf

    out = export_hf(args.checkpoint, args.output, dtype=_dtype(args.dtype))
    print(f"ownlm: exported {args.checkpoint} as a Hugging Face Llama to {out}\n"
          f"    load it with transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


def import_command(cfg, args) -> int:
    from model.hf import HFFormatError, import_hf

    try:
        report = import_hf(args.hf_dir, args.output, dtype=_dtype(args.dtype))
    except HFFormatError as e:
        return _fail(str(e))
    c = report["config"]
    print(f"ownlm: imported {args.hf_dir} -> {args.output} ({c.n_layers} layers, dim {c.dim}, "
          f"vocab {c.vocab_size})")
    if report["roles"]:
        print("    its tokens for ownlm's roles: " + ", ".join(f"{r}={t}" for r, t in report["roles"].items() if t))
    for note in report["notes"]:
        print(f"    {note}")
    if not report["tokenizer"]:
        print("    the folder had no tokenizer.json: the checkpoint has no tokenizer (generate/chat/embed need one)")
    return 0
