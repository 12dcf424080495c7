"""Drift statistics: is the model's loss on new data distributed like its loss on the data it was
validated on?

Like is compared with like: both sides are fixed-length token windows (the packed rows' length,
documents joined by end-of-text exactly as `ownlm tokenize` packs them), each scored by the model's
mean next-token loss. The reference side is sampled evenly across the validation split, so its
sources weigh as in the training mixture; the new side is sampled evenly across the new documents.
Two tests of the two samples of window losses: the two-sample Kolmogorov-Smirnov test
(`scipy.stats.ks_2samp`) and the population stability index over the reference's deciles. An alarm
needs both significance and size, so that a large sample of unchanged data never alarms on a
trivial shift: p below `p_max`, and a KS statistic of at least `min_effect` or a PSI of at least
`min_psi`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

PSI_BINS = 10
_PSI_FLOOR = 1e-4
"""Smallest bin share in the PSI, so an empty bin gives a large but finite term."""


@dataclass(frozen=True)
class Drift:
    ks_statistic: float
    p_value: float
    psi: float
    alarm: bool
    n_reference: int
    n_current: int
    reference_mean: float
    current_mean: float

    def to_dict(self) -> dict:
        return asdict(self)


def sample_evenly(n_items: int, n: int) -> np.ndarray:
    """At most n indices spread evenly over range(n_items) (all of them when there are fewer)."""
    if n_items <= n:
        return np.arange(n_items)
    return np.unique(np.linspace(0, n_items - 1, n).round().astype(np.int64))


def rows_without_padding(rows: np.ndarray, pad_id: int) -> np.ndarray:
    """Packed rows that are whole windows (a split's last row may end in padding)."""
    return rows[~(rows == pad_id).any(axis=1)]


def windows_from_documents(documents: list[list[int]], eot_id: int, length: int, n: int) -> np.ndarray:
    """Up to n windows of `length` token ids from documents joined by end-of-text, as packing joins
    them, picked evenly across the stream (so across the documents)."""
    stream: list[int] = []
    for ids in documents:
        stream.extend(ids)
        stream.append(eot_id)
    count = len(stream) // length
    windows = np.asarray(stream[: count * length], dtype=np.int64).reshape(count, length)
    return windows[sample_evenly(count, n)]


def window_losses(model, windows: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The model's mean next-token loss (nats) over each window: shape (len(windows),)."""
    import torch
    import torch.nn.functional as F

    out = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(windows), batch_size):
                rows = torch.as_tensor(windows[start: start + batch_size], dtype=torch.long)
                logits = model(rows[:, :-1])  # (B, T, V)
                nll = F.cross_entropy(logits.float().flatten(0, 1), rows[:, 1:].flatten(), reduction="none")
                out.append(nll.view(len(rows), -1).mean(dim=1).numpy())  # (B,)
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.empty(0)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of `current` against `reference`, over the reference's quantile bins."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # a constant reference: everything else is one shifted bin
        return 0.0 if np.allclose(current, reference[0]) else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    ref = np.histogram(reference, edges)[0] / len(reference)
    cur = np.histogram(current, edges)[0] / len(current)
    ref, cur = np.clip(ref, _PSI_FLOOR, None), np.clip(cur, _PSI_FLOOR, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def drift(reference: np.ndarray, current: np.ndarray, *, p_max: float = 0.01, min_effect: float = 0.1,
          min_psi: float = 0.2) -> Drift:
    """Compare two samples of window losses; `alarm` needs significance and size (module docstring)."""
    from scipy.stats import ks_2samp

    reference, current = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if len(reference) < 2 or len(current) < 2:
        raise ValueError(f"drift needs at least 2 windows a side (reference {len(reference)}, new {len(current)})")
    test = ks_2samp(reference, current)
    index = psi(reference, current)
    alarm = bool(test.pvalue < p_max and (test.statistic >= min_effect or index >= min_psi))
    return Drift(ks_statistic=float(test.statistic), p_value=float(test.pvalue), psi=index, alarm=alarm,
                 n_reference=len(reference), n_current=len(current), reference_mean=float(reference.mean()),
                 current_mean=float(current.mean()))
