"""tune.png: the metric against each searched hyperparameter, and every trial's curve over steps."""
from __future__ import annotations

import io
import math

from pipeline.storage import StoragePath, write_bytes
from pipeline.tune.results import FAILED, TrialRecord


def plot(records: list[TrialRecord], metric: str, path: StoragePath, best_id: str | None) -> StoragePath:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    keys = sorted({k for r in records for k in r.config})
    panels = len(keys) + 1
    cols = min(3, panels)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    axes = [a for row in axes for a in row]
    scored = [r for r in records if r.metric is not None]
    for ax, key in zip(axes, keys):
        values = [r.config.get(key) for r in scored]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        labels = sorted({str(v) for v in values})
        xs = values if numeric else [labels.index(str(v)) for v in values]
        colors = ["tab:red" if r.status == FAILED else "tab:blue" for r in scored]
        ax.scatter(xs, [r.metric for r in scored], c=colors)
        if numeric and values and key.endswith("lr") and min(values) > 0:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(key)
        ax.set_ylabel(f"best {metric}")
    curves = axes[len(keys)]
    for r in records:
        if r.curve:
            steps, values = zip(*r.curve)
            curves.plot(steps, values, marker=".", lw=2.5 if r.trial_id == best_id else 1,
                        label=r.trial_id + (" (best)" if r.trial_id == best_id else ""))
    curves.set_xlabel("step")
    curves.set_ylabel(metric)
    curves.set_title("every trial's reports")
    if len(records) <= 12:
        curves.legend(fontsize=7)
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, dpi=90, format="png")
    plt.close(fig)
    return write_bytes(path, image.getvalue())  # whole or not at all, locally or on a store
