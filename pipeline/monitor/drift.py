"""The new side of the drift test: the champion's window losses on the curated documents a monitor
cycle found, in windows as long as the reference's (pipeline/registry/reference.py) and joined by
end-of-text as packing joins documents, so that like is compared with like."""
from __future__ import annotations

import numpy as np

from evaluation.drift import window_losses, windows_from_documents


def new_data_losses(model, tokenizer, texts: list[str], window_tokens: int, n: int) -> np.ndarray:
    """Window losses of new documents: up to n windows of `window_tokens` ids, spread across them."""
    documents = [tokenizer.encode(t) for t in texts if t.strip()]
    windows = windows_from_documents(documents, tokenizer.eot_id, window_tokens, n)
    return window_losses(model, windows)
