"""Model tools on the command line: `ownlm embed`, `ownlm chat`, `ownlm export`, `ownlm import`.

Thin shells over model/ (model.embed, model.generate, model.hf): they parse, load, call, print.
Sampling flags are shorthands for the `generate` config section, so a config file and the
flags meet in one `SamplingParams`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model.errors import InputError, MissingInput, UsageError
from model.tokenizer import chat_prompt
from pipeline.commands.command import Command, Invocation
from pipeline.generate import COMPILE_FLAGS, print_stream
from pipeline.options import ConfigFlag, PathFlag
from pipeline.storage import local_copy
from pipeline.tracking.registry import resolve_checkpoint

DTYPES = ("float32", "bfloat16", "float16")
MODEL = PathFlag("--model", "model", "checkpoint folder or URI (s3://...), or models:/NAME@ALIAS, "
                 "models:/NAME/VERSION (default: <root>/model)", metavar="CKPT")
SAMPLING = (
    ConfigFlag("--max-new-tokens", "generate.max_new_tokens", type=int,
               help="longest reply in tokens (default: generate.max_new_tokens)"),
    ConfigFlag("--temperature", "generate.temperature", type=float, help="0 is greedy (default: generate.temperature)"),
    ConfigFlag("--top-k", "generate.top_k", type=int,
               help="sample among the k most likely tokens (default: generate.top_k)"),
    ConfigFlag("--top-p", "generate.top_p", type=float,
               help="sample within the nucleus of this probability mass (default: generate.top_p)"),
    ConfigFlag("--seed", "generate.seed", type=int, help="repeatable sampling (default: generate.seed)"),
)


# ---- chat ----

def chat_command(inv: Invocation) -> int:
    from model.checkpoint import load_model, load_tokenizer
    from model.decode_compile import use_compiled  # torch: only when chatting
    from model.generate import generate_stream

    args, path = inv.args, local_copy(inv.layout.model)  # a URI: through this node's cache
    model, _ = load_model(path)
    tok = load_tokenizer(path)
    sampling = inv.cfg.generate.sampling()
    compile = use_compiled(inv.cfg.generate.compile, model.tok_embeddings.weight.device)
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
        stream = generate_stream(model, tok.encode(chat_prompt(messages)), sampling.replace(seed=sampling.seed + turn),
                                 eos_id=sorted(stops), compile=compile)
        print("assistant> ", end="", flush=True)
        reply = print_stream(stream, tok, stop_ids=stops)
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
            raise MissingInput(f"no input file at {file}")
        lines = file.read_text(encoding="utf-8").splitlines()
    if path.endswith(".jsonl"):
        texts = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path} line {n} is not JSON: {e}") from e
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise InputError(f"{path} line {n} has no string 'text' field")
            texts.append(row["text"])
        return texts
    return [line for line in lines if line.strip()]


def embed_command(inv: Invocation) -> int:
    from model.checkpoint import load_model, load_tokenizer  # torch: only when embedding
    from model.embed import embed

    args, path = inv.args, local_copy(inv.layout.model)  # a URI: through this node's cache
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    texts = read_texts(args.input)
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


def export_command(inv: Invocation) -> int:
    from model.checkpoint import LORA_KEY, read_metadata
    from model.hf import export_hf  # torch
    from model.lora_export import PEFT_DIR, export_hf_with_adapter, merge_checkpoint

    args = inv.args
    checkpoint = resolve_checkpoint(inv.cfg, args.checkpoint)
    adapter = LORA_KEY in read_metadata(checkpoint)
    if args.format == "ownlm":
        if not adapter:
            raise UsageError(f"{args.checkpoint} holds no LoRA adapters: --format ownlm is for merging them "
                             "(--merge); it is already a plain checkpoint")
        out = merge_checkpoint(checkpoint, args.output)
        print(f"ownlm: merged the adapters of {args.checkpoint} into a plain checkpoint at {out}")
        return 0
    if adapter and not args.merge:
        out = export_hf_with_adapter(checkpoint, args.output, dtype=_dtype(args.dtype))
        print(f"ownlm: exported the base of {args.checkpoint} as a Hugging Face Llama to {out}, its LoRA "
              f"adapters in PEFT's layout to {out / PEFT_DIR}\n    load them with peft.PeftModel.from_pretrained("
              f"AutoModelForCausalLM.from_pretrained({str(out)!r}), {str(out / PEFT_DIR)!r}); --merge folds them in")
        return 0
    out = export_hf(checkpoint, args.output, dtype=_dtype(args.dtype), merge=args.merge)
    print(f"ownlm: exported {args.checkpoint} as a Hugging Face Llama to {out}" + (" (adapters merged)" if adapter
                                                                                     else "") +
          f"\n    load it with transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


def import_command(inv: Invocation) -> int:
    from model.hf import import_hf  # torch

    args = inv.args
    report = import_hf(args.hf_dir, args.output, dtype=_dtype(args.dtype))
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


# ---- the commands ----

def _embed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", metavar="FILE", required=True,
                   help="texts: a .jsonl file with a 'text' field per line, or plain text with one text per "
                        "line (blank lines skipped); '-' reads standard input")
    p.add_argument("--output", metavar="FILE",
                   help="where to write: FILE.npy for a (texts, dim) float32 array, anything else for JSON lines "
                        "{index, text, embedding} (default: JSON lines on standard output)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")


def _chat_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--system", metavar="TEXT", help="a system message that opens the conversation")


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="ownlm checkpoint folder, or models:/NAME@ALIAS or "
                                                      "models:/NAME/VERSION")
    p.add_argument("--format", choices=["hf", "ownlm"], default="hf",
                   help="hf: Hugging Face Llama (an adapter checkpoint: its base, and the adapters in PEFT's layout "
                        "under DIR/adapter); ownlm: a plain ownlm checkpoint with the adapters merged")
    p.add_argument("--merge", action="store_true",
                   help="fold a LoRA checkpoint's adapters into the weights (merged logits equal the adapters')")
    p.add_argument("--output", metavar="DIR", required=True, help="folder to write (replaced if it exists)")
    p.add_argument("--dtype", choices=DTYPES, help="weights' dtype in the export (default: as stored)")


def _import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("hf_dir", metavar="HF_DIR", help="Hugging Face model folder")
    p.add_argument("--output", metavar="CKPT", required=True, help="checkpoint folder to write")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="stored weights' dtype (default float32, what training wants)")


EMBED = Command(
    name="embed", help="turn texts into vectors with a checkpoint", run=embed_command, arguments=_embed_arguments,
    flags=(MODEL,),
    description="Embed texts: the mean of the model's final hidden states over each text's tokens, normalized "
                "to unit length (a dot product is a cosine similarity).")
CHAT = Command(
    name="chat", help="talk to a checkpoint, one line per message", run=chat_command, arguments=_chat_arguments,
    flags=(MODEL, *SAMPLING, *COMPILE_FLAGS),
    description="Interactive chat in the role tokens (<|system|>, <|user|>, <|assistant|>, <|end|>): each line of "
                "standard input is a user message, the reply streams back. /reset clears the conversation, /exit "
                "(or end of input) quits.")
EXPORT = Command(
    name="export", help="write a checkpoint in another format (Hugging Face)", run=export_command,
    arguments=_export_arguments,
    description="Write an ownlm checkpoint as a Hugging Face Llama folder (config.json, model.safetensors, "
                "tokenizer files) that transformers' AutoModelForCausalLM.from_pretrained loads.")
IMPORT = Command(
    name="import", help="read a local Hugging Face Llama into a checkpoint", run=import_command,
    arguments=_import_arguments,
    description="Read a local Hugging Face Llama folder (config.json, safetensors or pytorch_model.bin, "
                "tokenizer.json) into an ownlm checkpoint, to continue pretraining or fine-tune it. The model is "
                "kept exactly (vocabulary, shapes, tied or untied head): ownlm's roles (end-of-text, padding, chat "
                "turns) map onto tokens its tokenizer already has, and `export` gives back what came in.")
