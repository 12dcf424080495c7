"""The base model the fine-tuning tests and bench/finetune.py start from: a `debug` model
pretrained briefly, in this process, on structured text in which context matters.

A base pretrained on words drawn independently at random ignores its context, and LoRA on it
stays at chance on the ticket task (bench/RESULTS.md): with the tied embeddings frozen, a word
the base never predicted with confidence stays out of reach (no hidden state gives a label more
than a few percent), and a base that never saw the chat's <|end|> cannot learn to end an
answer. A real base has read text whose next word depends on earlier ones; this corpus has that
in two simple forms, over an English-like vocabulary that holds the task's words (as a real
tokenizer's would: labels and keywords are single tokens) but never the task:

    pairs   lines "word partner": every word has one fixed partner, so the base learns to
            predict each word, labels included, with confidence;
    chat    exchanges in the chat template (model.tokenizer.chat_prompt) whose reply is the
            partner of the user's first word: the reply depends on the user's turn, and the
            role tokens, <|end|> included, are trained.

No word of a ticket has a label as its partner (`_partners`): the base knows nothing of which
keyword goes with which label, and its task accuracy stays near chance.
"""
from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.pipeline.finetune_task import KEYWORDS, TEST_WORDS, TRAIN_WORDS

OTHER_WORDS = ["red", "blue", "green", "small", "large", "old", "new", "fast", "slow", "warm", "cold",
               "open", "close", "read", "write", "send", "take", "give", "find", "keep", "call", "work",
               "home", "door", "table", "chair", "water", "light", "river", "stone", "apple", "bread",
               "music", "paper", "window", "garden", "street", "office", "friend", "letter", "number"]
TICKET_WORDS = {*TRAIN_WORDS, *TEST_WORDS, "Ticket", *(w for ws in KEYWORDS.values() for w in ws)}
VOCAB = sorted({*OTHER_WORDS, *TICKET_WORDS, *KEYWORDS, "ticket"})


def _partners(seed: int = 0) -> dict[str, str]:
    """A fixed partner for every word (a cycle through the shuffled vocabulary), drawn again
    until no word of a ticket has a label as its partner."""
    while True:
        order = VOCAB[:]
        random.Random(seed).shuffle(order)
        partner = {w: order[(i + 1) % len(order)] for i, w in enumerate(order)}
        if not any(partner[w] in KEYWORDS for w in TICKET_WORDS):
            return partner
        seed += 1


PARTNER = _partners()


def pairs_doc(rng: random.Random) -> str:
    return "\n".join(f"{w} {PARTNER[w]}" for w in rng.sample(VOCAB, rng.randint(3, 6)))


def chat_doc(rng: random.Random) -> str:
    """One to three exchanges; each reply is the partner of its user turn's first word."""
    from model.tokenizer import chat_prompt

    messages = []
    for _ in range(rng.randint(1, 3)):
        words = rng.sample(VOCAB, rng.randint(1, 4))
        messages += [{"role": "user", "content": " ".join(words)}, {"role": "assistant", "content": PARTNER[words[0]]}]
    return chat_prompt(messages, add_generation_prompt=False)


def corpus(n_docs: int, seed: int = 0) -> list[str]:
    """Pairs and chat documents, alternating."""
    rng = random.Random(seed)
    return [(pairs_doc, chat_doc)[i % 2](rng) for i in range(n_docs)]


def write_curated_texts(path: Path, texts: list[str]) -> None:
    """texts as a curated folder (the parquet layout the tokenizer stage reads)."""
    table = pa.table({"id": [f"doc-{i:05d}" for i in range(len(texts))], "text": texts,
                      "source": ["structured"] * len(texts), "kind": ["web"] * len(texts)})
    path.mkdir(parents=True)
    pq.write_table(table, path / "part-00000.parquet")


def write_structured_tokens(d: Path, n_docs: int = 2000, seq_len: int = 64, vocab_size: int = 1000) -> Path:
    """Packed rows of the corpus (a BPE trained on it) under d/tokens, without Ray: 1 in 10
    documents held out for validation. Returns the tokens folder."""
    from pipeline.config import TokenizerConfig
    from pipeline.tokenize.tokenizer import train_tokenizer
    from tests.pipeline.test_train_loop import pack_texts

    texts = corpus(n_docs)
    write_curated_texts(d / "curated", texts)
    train_tokenizer(d / "curated", d / "tok", TokenizerConfig(vocab_size=vocab_size))
    return pack_texts(list(texts), d / "tok", d / "tokens", seq_len)


def pretrain_base(d: Path, steps: int = 400, lr: float = 1e-2, n_docs: int = 2000, seq_len: int = 64) -> Path:
    """A `debug` model pretrained `steps` steps on the corpus by the training loop, in this
    process (no Ray), exported as a plain checkpoint under d/base. Returns that folder."""
    from pipeline.config import load_config
    from pipeline.train.checkpoints import export_model
    from pipeline.train.launch import build_job
    from pipeline.train.loop import Trainer
    from pipeline.train.session import LocalSession

    tokens = write_structured_tokens(d, n_docs=n_docs, seq_len=seq_len)
    cfg = load_config(None, ["model.preset=debug", f"tokenize.seq_len={seq_len}", "tracking.enabled=false",
                             "train.num_workers=1", f"train.max_steps={steps}", "train.warmup_steps=20",
                             f"train.lr={lr}", "train.batch_size=16", f"train.eval_every={steps}",
                             f"train.checkpoint_every={steps}", f"train.log_every={steps}",
                             "train.eval_batches=2"], root=str(d))
    session = LocalSession(d / "runs")
    Trainer(build_job(cfg, tokens, None), session).fit()
    return export_model(session.checkpoints()[-1], d / "base")
