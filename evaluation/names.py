"""Metric names: the one place that decides what a name may hold.

MLflow refuses commas in metric names (lm-eval reports `acc,none`) and this project keeps
spaces out of them too. A name is parts joined by `/` (`eval/<task>/<metric>`,
`eval/source/<source>/loss`); each part keeps only letters, digits and `_ - .`, anything else
(a `/` in a source or model name included) becomes `_`, so a free-text part never adds a level.
"""
from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-.]")


def metric_name(*parts: str) -> str:
    """`metric_name("eval", "arc_easy", "acc norm")` -> `"eval/arc_easy/acc_norm"`."""
    return "/".join(_UNSAFE.sub("_", str(p)) for p in parts)


def clean_metric_name(name: str) -> str:
    """A whole `a/b/c` name made safe part by part (the tracker's last line of defence)."""
    return metric_name(*name.split("/"))
