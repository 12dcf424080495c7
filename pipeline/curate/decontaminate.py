"""Decontamination: training documents must not contain the evaluation sets.

The evaluation texts (every string field of each record in the configured task files, or the
named fields) are cut into lowercased word n-grams, 13 by default as in GPT-3 (Brown et al.
2020, appendix C) and lm-evaluation-harness; a text shorter than n words but at least
`min_words` long is matched whole, as GPT-3 lowered n for short examples. A training document
sharing any of them is dropped (`contaminated`) or, in `cut` mode, loses the matching word
spans and keeps the rest (`meta.decontaminated` counts the spans).

The index is built once, on the driver, from the (small) evaluation files: a vocabulary of
the evaluation words and a sorted array of 64-bit n-gram keys over their ids. A document's
words outside that vocabulary cannot be part of a match, so most windows are ruled out
before any hashing.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from evaluation.tasks import TASKS_DIR
from pipeline.config.curate import DecontaminateConfig
from pipeline.curate.records import KEPT, CurateError, set_column, with_meta

_WORD = re.compile(r"\w+")
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class EvalIndex:
    vocab: dict[str, int]
    keys: dict[int, np.ndarray]
    """Per n-gram length, the sorted keys of the evaluation n-grams of that length."""
    texts: int = 0
    files: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(len(k) for k in self.keys.values())


def ngram_keys(ids: np.ndarray, n: int) -> np.ndarray:
    """Key of each window of `n` word ids (windows holding an unknown word, id -1, get key 0)."""
    if len(ids) < n:
        return np.zeros(0, dtype=np.uint64)
    m = len(ids) - n + 1
    keys = np.full(m, np.uint64(n), dtype=np.uint64)
    unknown = np.zeros(m, dtype=bool)
    with np.errstate(over="ignore"):
        for j in range(n):
            window = ids[j: j + m]
            unknown |= window < 0
            keys = (keys ^ window.astype(np.uint64)) * _MIX
    keys[unknown] = 0
    return keys


def build_index(cfg: DecontaminateConfig, root: Path) -> EvalIndex:
    """The n-gram index of the configured evaluation files; CurateError for a missing or unreadable one."""
    texts: list[str] = []
    files = []
    for raw in cfg.files:
        path = Path(raw.replace("{tasks}", str(TASKS_DIR)).replace("{root}", str(root))).expanduser()
        if not path.is_file():
            raise CurateError(f"curate.decontaminate.files: {raw!r} (= {path}) does not exist")
        try:
            texts += eval_texts(path, cfg.fields)
        except (OSError, ValueError) as e:
            raise CurateError(f"curate.decontaminate.files: cannot read {path}: {e}") from e
        files.append(str(path))
    vocab: dict[str, int] = {}
    keys: dict[int, list[np.ndarray]] = {}
    for text in texts:
        words = _WORD.findall(text.lower())
        if len(words) < cfg.min_words:
            continue
        ids = np.array([vocab.setdefault(w, len(vocab)) for w in words], dtype=np.int64)
        n = min(cfg.ngram, len(ids))
        keys.setdefault(n, []).append(ngram_keys(ids, n))
    return EvalIndex(vocab, {n: np.unique(np.concatenate(k)) for n, k in keys.items()}, len(texts), files)


def eval_texts(path: Path, fields: list[str] | None) -> list[str]:
    """The evaluation strings of one file: JSONL/JSON records (string fields, lists of strings),
    Parquet columns, or the non-blank lines of a text file."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        records = pq.read_table(path).to_pylist()
    elif name.endswith((".jsonl", ".ndjson")):
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif name.endswith(".json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        records = data if isinstance(data, list) else [data]
    else:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out: list[str] = []
    for rec in records:
        if not isinstance(rec, dict):
            rec = {"text": rec}
        for key, value in rec.items():
            if fields is not None and key not in fields:
                continue
            values = value if isinstance(value, list) else [value]
            out += [v for v in values if isinstance(v, str)]
    return out


def matches(text: str, index: EvalIndex) -> list[tuple[int, int]]:
    """Word spans [start, end) of `text` that form an evaluation n-gram (overlapping spans merged)."""
    words = _WORD.findall(text.lower())
    ids = np.fromiter(map(index.vocab.get, words, [-1] * len(words)), dtype=np.int64, count=len(words))
    if not index.keys or longest_known_run(ids) < min(index.keys):
        return []  # no window of evaluation words long enough: the common case, found cheaply
    spans = []
    for n, keys in index.keys.items():
        doc_keys = ngram_keys(ids, n)
        hit = np.isin(doc_keys, keys) & (doc_keys != 0)
        spans += [(int(i), int(i) + n) for i in np.flatnonzero(hit)]
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def longest_known_run(ids: np.ndarray) -> int:
    """Length of the longest run of consecutive words that occur in the evaluation texts."""
    if len(ids) == 0:
        return 0
    edges = np.flatnonzero(np.diff(np.concatenate([[False], ids >= 0, [False]]).astype(np.int8)))
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0


def cut_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` without the characters of the given word spans."""
    bounds = [(m.start(), m.end()) for m in _WORD.finditer(text.lower())]
    pieces, pos = [], 0
    for start, end in spans:
        pieces.append(text[pos: bounds[start][0]])
        pos = bounds[end - 1][1]
    pieces.append(text[pos:])
    return "".join(pieces)


@dataclass(frozen=True)
class Decontaminate:
    """The decontaminate step over kept rows (drop, or cut the matching spans)."""

    index: EvalIndex
    mode: str = "drop"

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts, reasons = batch["text"].to_pylist(), batch["reason"].to_pylist()
        metas = batch["meta"].to_pylist()
        changed = False
        for i, reason in enumerate(reasons):
            if reason != KEPT:
                continue
            spans = matches(texts[i], self.index)
            if not spans:
                continue
            changed = True
            if self.mode == "drop":
                reasons[i] = "contaminated"
                metas[i] = with_meta(metas[i], contaminated=len(spans))
            else:
                texts[i] = cut_spans(texts[i], spans)
                metas[i] = with_meta(metas[i], decontaminated=len(spans))
        if not changed:
            return batch
        batch = set_column(batch, "text", texts, pa.large_string())
        batch = set_column(batch, "meta", metas, pa.string())
        return set_column(batch, "reason", reasons, pa.string())
