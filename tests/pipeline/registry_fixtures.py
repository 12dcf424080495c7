"""Builders for the registry and monitor tests, without Ray: a tokenizer, packed tokens and checkpoints
trained by a plain torch loop, so that "better" and "worse" are real (the same model trained for more
or fewer steps on the same data)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

NAMES = ["alpha", "beta", "gamma", "delta", "count", "total", "items", "value", "index", "result"]
OPS = ["+", "-", "*"]


def python_like(n: int, seed: int) -> list[str]:
    """Small, regular Python functions: a distribution a debug model learns in a hundred steps."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        a, b, c = rng.sample(NAMES, 3)
        op = rng.choice(OPS)
        docs.append(f"def {a}_{b}({a}, {b}):\n    {c} = {a} {op} {b}\n    return {c}\n")
    return docs


def shuffled_characters(docs: list[str], seed: int) -> list[str]:
    """The same characters in random order: another distribution with the same alphabet."""
    rng = random.Random(seed)
    out = []
    for d in docs:
        chars = list(d)
        rng.shuffle(chars)
        out.append("".join(chars))
    return out


def train_tokenizer(path: Path, docs: list[str], vocab_size: int = 320) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from model.tokenizer import SPECIAL_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def write_tokens(tokens_dir: Path, tokenizer_path: Path, train_docs: list[str], val_docs: list[str],
                 seq_len: int = 32) -> Path:
    """A packed tokens folder as `ownlm tokenize` writes it (one source, one shard per split)."""
    import shutil

    from model.tokenizer import Tokenizer
    from pipeline.packed import Manifest
    from pipeline.tokenize.pack import pack_rows, token_dtype

    tok = Tokenizer.from_file(tokenizer_path)
    dtype = token_dtype(tok.vocab_size)
    splits = {}
    for split, docs in (("train", train_docs), ("val", val_docs)):
        rows, _ = pack_rows([tok.encode(d) for d in docs], tok.eot_id, seq_len + 1, dtype)
        (tokens_dir / split / "code").mkdir(parents=True, exist_ok=True)
        np.save(tokens_dir / split / "code" / "shard-00000.npy", rows)
        files = [f"{split}/code/shard-00000.npy"]
        splits[split] = {"files": files, "rows": len(rows), "tokens": int(rows.size), "documents": len(docs),
                         "sources": {"code": {"files": files}}}
    Manifest(seq_len=seq_len, dtype=dtype.name, eot_id=tok.eot_id, pad_id=tok.pad_id,
             tokenizer_fingerprint=tok.fingerprint, splits=splits).write(tokens_dir)
    shutil.copy(tokenizer_path, tokens_dir / "tokenizer.json")
    return tokens_dir


def train_checkpoint(folder: Path, tokens_dir: Path, steps: int, seed: int = 0) -> Path:
    """The debug model trained `steps` AdamW steps on the train split (a plain torch loop), saved."""
    import torch

    from model.checkpoint import save_checkpoint
    from model.config import get_preset
    from model.objectives import training_loss
    from model.tokenizer import Tokenizer
    from model.transformer import Transformer
    from pipeline.packed import PackedSplit

    tok = Tokenizer.from_file(tokens_dir / "tokenizer.json")
    cfg = get_preset("debug", vocab_size=tok.vocab_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small: one thread beats two fighting over shared cores
    torch.manual_seed(seed)
    model = Transformer(cfg)
    split = PackedSplit(tokens_dir, "train")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        rows = torch.as_tensor(split.rows(rng.integers(0, len(split), 16)), dtype=torch.long)
        loss = training_loss(model, rows, family=cfg.family, pad_id=tok.pad_id, mask_id=cfg.mask_id)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    save_checkpoint(folder, model.eval(), cfg, tokenizer_path=tokens_dir / "tokenizer.json",
                    metadata={"preset": "debug"})
    return folder


WORDS = ("account order customer invoice report window buffer packet record session ticket query cache "
         "message channel worker task queue batch stream frame token vector matrix table column").split()


def python_modules(n: int, seed: int) -> list[str]:
    """Longer, varied Python modules of the same style as `python_like`, distinct enough to pass
    curation's quality and near-duplicate filters (new raw data for the monitor)."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        funcs = []
        for _ in range(rng.randint(3, 5)):
            a, b, c = rng.sample(WORDS, 3)
            op = rng.choice(OPS)
            k = rng.randint(2, 99)
            funcs.append(f"def {a}_{b}_{k}({a}, {b}):\n    \"\"\"Combine the {a} with the {b}.\"\"\"\n"
                         f"    {c} = {a} {op} {b} * {k}\n    if {c} > {rng.randint(100, 999)}:\n"
                         f"        return {c} - {k}\n    return {c}\n")
        docs.append(f"# module {i}: {' '.join(rng.sample(WORDS, 4))}\n\n" + "\n\n".join(funcs))
    return docs
