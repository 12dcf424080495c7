"""The drift reference a promotion stores: the new champion's losses on fixed-length token windows of
its validation split, which `ownlm monitor` later compares the losses on new data with
(pipeline/monitor/drift.py, statistics in evaluation/drift.py)."""
from __future__ import annotations

from pathlib import Path

from evaluation.drift import rows_without_padding, sample_evenly, window_losses
from model.errors import InputError
from pipeline.packed import PackedSplit

REFERENCE_FILE = "drift/reference.json"
"""The artifact of a promotion run that holds its champion's reference window losses."""


def reference_losses(model, tokens_dir: Path, n: int) -> dict:
    """Window losses on up to n whole rows of the validation split, spread evenly across it (so across
    its sources in the mixture's proportions). The window is the packed row: seq_len + 1 tokens."""
    val = PackedSplit(tokens_dir, "val")
    rows = rows_without_padding(val.rows(sample_evenly(len(val), n)), val.pad_id)
    if len(rows) < 2:
        raise InputError(f"{tokens_dir}: too few validation rows for a drift reference ({len(rows)})")
    return {"window_tokens": int(rows.shape[1]), "tokenizer_fingerprint": val.manifest.tokenizer_fingerprint,
            "losses": window_losses(model, rows).tolist()}
