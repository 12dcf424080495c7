"""The `tokenizer` stage: a byte-level BPE (Hugging Face `tokenizers`) trained on the curated text,
with ownlm's special tokens (end-of-text, padding, mask, chat roles)."""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from model.atomic import discard_dir, publish_dir, staging_dir
from model.tokenizer import SPECIAL_TOKENS
from model.tokenizer import Tokenizer as OwnTokenizer
from pipeline.config import TokenizerConfig
from pipeline.layout import Location
from pipeline.options import ConfigFlag, PathFlag
from pipeline.stage import Context, Stage
from pipeline.storage import StoragePath, copy_file, local_output, resolve
from pipeline.tokenize.curated import TokenizeError, iter_texts


def train_tokenizer(curated_dir: StoragePath, output_dir: StoragePath, cfg: TokenizerConfig) -> dict:
    """Train (or copy, when `tokenizer.path` is set) a byte-level BPE tokenizer into output_dir/tokenizer.json."""
    with local_output(output_dir) as out:  # `tokenizers` saves to a local file
        tmp = staging_dir(out)
        try:
            info = _train_into(tmp, curated_dir, cfg)
        except BaseException:
            discard_dir(tmp)
            raise
        publish_dir(tmp, out)
    return info


def _train_into(tmp: Path, curated_dir: StoragePath, cfg: TokenizerConfig) -> dict:
    if cfg.path:
        src = resolve(cfg.path)
        if not src.is_file():
            raise TokenizeError(f"tokenizer.path {src} does not exist")
        copy_file(src, tmp / "tokenizer.json")
    else:
        tok = Tokenizer(models.BPE())
        # GPT-2 style: bytes, never an unknown token; the regex keeps words, numbers and punctuation apart.
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency, special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(iter_texts(curated_dir, cfg.max_docs), trainer=trainer)
        tok.save(str(tmp / "tokenizer.json"))
    try:
        own = OwnTokenizer.from_file(tmp / "tokenizer.json")  # checks the special tokens are there
    except ValueError as e:
        raise TokenizeError(str(e)) from e
    info = {"vocab_size": own.vocab_size, "fingerprint": own.fingerprint,
            "trained": cfg.path is None, "eot_id": own.eot_id, "pad_id": own.pad_id}
    (tmp / "tokenizer_info.json").write_text(json.dumps(info, indent=2))
    return info


def train(ctx: Context) -> dict:
    info = train_tokenizer(ctx.layout.curated, ctx.layout.tokenizer, ctx.cfg.tokenizer)
    ctx.tracker.log_artifact(ctx.layout.tokenizer, "tokenizer")
    ctx.tracker.log_metrics({"tokenizer/vocab_size": info["vocab_size"]})
    print(f"   vocabulary {info['vocab_size']:,} (fingerprint {info['fingerprint'][:12]})", flush=True)
    return info


STAGE = Stage(
    name="tokenizer",
    help="train a byte-level BPE tokenizer on the curated text",
    action=train,
    upstream=("curate",),
    sections=("tokenizer",),
    locations=(Location("tokenizer", "tokenizer", "tokenizer.json"),),
    outputs=(("tokenizer", "tokenizer.json"),),
    flags=(PathFlag("--input", "curated", "curated folder to train on"),
           PathFlag("--output", "tokenizer", "folder for tokenizer.json"),
           ConfigFlag("--vocab-size", "tokenizer.vocab_size", type=int)),
)
