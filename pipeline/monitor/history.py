"""`<root>/monitor/history.png` and `history.html`: every metric of checks.jsonl over the cycles,
coloured by the champion version that was measured, with each promotion marked."""
from __future__ import annotations

import base64
import html
import io
import json

from pipeline import storage
from pipeline.storage import StoragePath

MAX_PANELS = 12
"""Metrics plotted (the gated and headline ones come first); the HTML table has them all."""


def read_checks(path: StoragePath) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def series(checks: list[dict]) -> dict[str, list[tuple[int, float, int]]]:
    """metric -> [(cycle index, value, champion version)]; drift statistics as `drift/...`."""
    out: dict[str, list[tuple[int, float, int]]] = {}
    for i, check in enumerate(checks, 1):
        values = dict(check.get("metrics") or {})
        for key in ("ks_statistic", "psi"):
            if check.get("drift"):
                values[f"drift/{key}"] = check["drift"][key]
        for name, value in values.items():
            if isinstance(value, (int, float)):
                out.setdefault(name, []).append((i, float(value), int(check["champion"])))
    return out


def write_history(checks_path: StoragePath, folder: StoragePath) -> list[StoragePath]:
    """Write history.png and history.html from checks.jsonl (local or on a store, each file written
    whole); returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    checks = read_checks(checks_path)
    if not checks:
        return []
    data = series(checks)
    names = sorted(data, key=lambda n: (not n.startswith(("eval/perplexity", "drift/")), n))[:MAX_PANELS]
    promotions = [i for i, c in enumerate(checks, 1) if c.get("action") == "promoted"]
    cols = min(3, max(1, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for version in sorted({v for _, _, v in data[name]}):
            points = [(x, y) for x, y, v in data[name] if v == version]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"v{version}")
        for x in promotions:
            ax.axvline(x + 0.5, color="grey", linestyle="--", linewidth=1)  # the next cycle sees the new champion
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("cycle")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle("ownlm monitor: metrics by cycle (dashed: a promotion)")
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=80)
    plt.close(fig)
    png = storage.write_bytes(folder / "history.png", image.getvalue())
    page = storage.write_text(folder / "history.html",
                              _page(checks, sorted(data), base64.b64encode(image.getvalue()).decode()))
    return [png, page]


def _page(checks: list[dict], names: list[str], png_b64: str) -> str:
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["time", "champion", "action", "drift alarm", *names])
    body = []
    for c in checks:
        values = {**(c.get("metrics") or {}), **{f"drift/{k}": v for k, v in (c.get("drift") or {}).items()}}
        cells = [c["time"], f"v{c['champion']}", c["action"], str(bool(c.get("drift") and c["drift"]["alarm"]))]
        cells += [f"{values[n]:.4f}" if isinstance(values.get(n), (int, float)) else "" for n in names]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in cells) + "</tr>")
    return ("<!doctype html><meta charset='utf-8'><title>ownlm monitor history</title>"
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd;"
            "font-size:12px}</style><h1>ownlm monitor history</h1>"
            f"<img src='data:image/png;base64,{png_b64}' alt='metrics by cycle'>"
            f"<table><tr>{head}</tr>{''.join(body)}</table>")
