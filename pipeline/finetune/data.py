"""Fine-tuning data: JSONL lines -> conversations -> token ids with a loss mask -> packed rows.

Each line is detected on its own:

    chat            {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}
    instruction     {"prompt": str, "completion": str}
    classification  {"input": str, "label": str}  (the config's template around the input)

and becomes a conversation, rendered in the tokenizer's role tokens by the one chat template
(model.tokenizer.chat_spans, the same text `ownlm chat` and serving prompt with). The loss
covers the assistant's content and its closing <|end|> only: every assistant turn, or the last
one (`finetune.loss_on`). A line that cannot be used is counted under its reason with its line
number (`Rejects`); nothing usable left is one clear error, before any training starts.

Rows: `seq_len + 1` tokens each, three planes per row (ids, loss mask, example id): packed,
examples are laid end to end (first fit, in the file's order) and the example ids keep them
apart (model.objectives.sft_terms); unpacked, one example per row, padded.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.taskfile import Rejects, classification_problem, read_lines, render_input
from model.atomic import publish_dir, staging_dir
from model.errors import InputError
from model.tokenizer import ROLES

IDS, MASK, SEGMENT = 0, 1, 2
DATA_JSON = "data.json"


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    mask: list[bool]
    """mask[t]: token t is a target of the loss."""


def to_messages(row, template: str) -> tuple[list[dict] | None, str | None]:
    """(conversation, None) for a usable line, else (None, the reject reason)."""
    if not isinstance(row, dict):
        return None, "not_an_object"
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            return None, "bad_messages"
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                return None, "bad_message"
            if m.get("role") not in ROLES:
                return None, "unknown_role"
        if not any(m["role"] == "assistant" for m in messages):
            return None, "no_assistant_turn"
        return [{"role": m["role"], "content": m["content"]} for m in messages], None
    if "prompt" in row or "completion" in row:
        if not isinstance(row.get("prompt"), str) or not isinstance(row.get("completion"), str):
            return None, "bad_instruction"
        return [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}], None
    if "input" in row or "label" in row:
        problem = classification_problem(row)
        if problem:
            return None, problem
        return [{"role": "user", "content": render_input(template, row["input"])},
                {"role": "assistant", "content": row["label"]}], None
    return None, "unknown_format"


def encode(tokenizer, messages: list[dict], loss_on: str = "all") -> Encoded:
    """The conversation's ids and loss mask: the assistant's pieces (all, or the last) are targets."""
    spans = tokenizer.encode_chat_spans(messages, add_generation_prompt=False)
    assistant = [i for i, (_, role) in enumerate(spans) if role == "assistant"]
    trained = set(assistant if loss_on == "all" else assistant[-1:])
    ids, mask = [], []
    for i, (piece, _) in enumerate(spans):
        ids += piece
        mask += [i in trained] * len(piece)
    return Encoded(ids, mask)


def read_examples(path: str | Path, tokenizer, *, template: str, loss_on: str, max_tokens: int
                  ) -> tuple[list[Encoded], Rejects]:
    """Every usable line of path, encoded; lines longer than max_tokens are rejected (`too_long`):
    cutting one would cut the answer it is there to teach."""
    examples, rejects = [], Rejects()
    for n, row in read_lines(path):
        if row is None:
            rejects.add("not_json", n)
            continue
        messages, reason = to_messages(row, template)
        if reason:
            rejects.add(reason, n)
            continue
        enc = encode(tokenizer, messages, loss_on)
        if len(enc.ids) > max_tokens:
            rejects.add("too_long", n)
        elif not any(enc.mask[1:]):
            rejects.add("empty_answer", n)
        else:
            examples.append(enc)
    if not examples:
        detail = f" ({rejects.summary()})" if rejects.total else " (the file is empty)"
        raise InputError(f"{path} has no usable fine-tuning example{detail}: each line must be a chat "
                         '{"messages": [...]} with an assistant turn, an instruction {"prompt", "completion"} '
                         'or a classification {"input", "label"}')
    return examples, rejects


def pack(examples: list[Encoded], row_len: int, pad_id: int, packed: bool = True) -> np.ndarray:
    """(rows, 3, row_len) int64: ids, loss mask, example id (1.. in each row; 0 is padding).
    Packed: first fit in order, a new row when an example does not fit in any open one."""
    rows: list[list[Encoded]] = []
    free: list[int] = []
    for ex in examples:
        if packed:
            slot = next((i for i, room in enumerate(free) if room >= len(ex.ids)), None)
        else:
            slot = None
        if slot is None:
            rows.append([])
            free.append(row_len)
            slot = len(rows) - 1
        rows[slot].append(ex)
        free[slot] -= len(ex.ids)
    out = np.zeros((len(rows), 3, row_len), dtype=np.int64)
    out[:, IDS] = pad_id
    for r, members in enumerate(rows):
        at = 0
        for k, ex in enumerate(members, 1):
            n = len(ex.ids)
            out[r, IDS, at:at + n] = ex.ids
            out[r, MASK, at:at + n] = ex.mask
            out[r, SEGMENT, at:at + n] = k
            at += n
    return out


class ExampleSplit:
    """Rows of one prepared split, read as the training loop's loader reads a PackedSplit
    (pipeline.train.data.ShuffledBatches): `rows`, `source_rows`, `len`, `split`."""

    def __init__(self, folder: str | Path, split: str):
        self.dir, self.split = Path(folder), split
        self.info = json.loads((self.dir / DATA_JSON).read_text())
        self.pad_id = self.info["pad_id"]
        self._rows = np.load(self.dir / f"{split}.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self._rows)

    def source_rows(self) -> dict[str, np.ndarray]:
        return {"": np.arange(len(self))}

    def rows(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(self._rows[np.asarray(indices, dtype=np.int64)], dtype=np.int64)

    def blank_row(self) -> np.ndarray:
        """One row that scores nothing (all padding): a worker with no rows left validates on it."""
        row = np.zeros((1, 3, self._rows.shape[-1]), dtype=np.int64)
        row[:, IDS] = self.pad_id
        return row


def prepare(data: str | Path, val: str | Path | None, tokenizer, out_dir: str | Path, *, template: str,
            loss_on: str, seq_len: int, packing: bool, val_fraction: float, seed: int) -> dict:
    """Read, encode and pack the training file (and the validation file, or a held-out slice of
    the training examples) into out_dir: train.npy, val.npy, data.json. Returns data.json's record."""
    examples, rejects = read_examples(data, tokenizer, template=template, loss_on=loss_on, max_tokens=seq_len + 1)
    val_rejects = Rejects()
    if val is not None:
        val_examples, val_rejects = read_examples(val, tokenizer, template=template, loss_on=loss_on,
                                                  max_tokens=seq_len + 1)
    else:
        order = np.random.default_rng(seed).permutation(len(examples))
        held = max(1, round(val_fraction * len(examples))) if len(examples) > 1 else 0
        val_examples = [examples[i] for i in sorted(order[:held])] or examples[:1]
        examples = [examples[i] for i in sorted(order[held:])]
    train_rows = pack(examples, seq_len + 1, tokenizer.pad_id, packing)
    val_rows = pack(val_examples, seq_len + 1, tokenizer.pad_id, packing)
    record = {"seq_len": seq_len, "pad_id": tokenizer.pad_id, "tokenizer_fingerprint": tokenizer.fingerprint,
              "packing": packing, "loss_on": loss_on,
              "train": {"examples": len(examples), "rows": len(train_rows),
                        "target_tokens": int(train_rows[:, MASK].sum()), "rejects": rejects.to_dict()},
              "val": {"examples": len(val_examples), "rows": len(val_rows),
                      "source": str(val) if val is not None else f"{val_fraction:.0%} of {data}",
                      "rejects": val_rejects.to_dict()}}
    out_dir = Path(out_dir)
    tmp = staging_dir(out_dir)
    np.save(tmp / "train.npy", train_rows)
    np.save(tmp / "val.npy", val_rows)
    (tmp / DATA_JSON).write_text(json.dumps(record, indent=2) + "\n")
    publish_dir(tmp, out_dir)
    return {**record, "rejects": rejects, "val_rejects": val_rejects}
