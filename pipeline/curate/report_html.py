"""`report.html`: the curation report as one page a person reads at a glance.

Self-contained (inline CSS, bars as plain HTML, no script, nothing fetched), so it opens from
an MLflow artifact view or a file browser alike: the funnel of documents and bytes kept after
each step, drops by reason (with the setting behind each), sources, kinds, languages, duplicate-cluster
sizes, PII, time per step.
"""
from __future__ import annotations

from html import escape

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.1em;margin-top:2em;border-bottom:1px solid #ddd}
.cards{display:flex;gap:1em;flex-wrap:wrap} .card{background:#f4f6f8;border-radius:6px;padding:.6em 1em}
.card b{display:block;font-size:1.4em} table{border-collapse:collapse;width:100%;margin:.5em 0}
td,th{padding:3px 8px;text-align:left;border-bottom:1px solid #eee;vertical-align:middle}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap;width:7em}
.bar{height:12px;background:#4a7fb5;border-radius:2px;min-width:1px} .bar.b{background:#9cb8d6}
.bar.r{background:#c0504d} .bar.g{background:#6a9f58} .muted{color:#777}
"""


def _n(x) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:,.2f}"


def _mb(b: int) -> str:
    return f"{b / 1e6:,.2f} MB"


def _bar(value: float, top: float, cls: str = "") -> str:
    width = 100 * value / top if top else 0
    return f'<div class="bar {cls}" style="width:{width:.1f}%"></div>'


def _bars(rows: list[tuple[str, float]], cls: str = "", fmt=_n, notes: dict | None = None) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    top = max(v for _, v in rows) or 1
    note = (lambda k: f"<td class=muted>{escape(notes.get(k, ''))}</td>") if notes is not None else (lambda k: "")
    body = "".join(f"<tr><td>{escape(str(k))}</td><td class=n>{fmt(v)}</td><td>{_bar(v, top, cls)}</td>{note(k)}</tr>"
                   for k, v in rows)
    return f"<table>{body}</table>"


def _components(run: dict | None) -> str:
    """Where the clusters were found: scipy on the driver, or Ray Data in large/small-star rounds."""
    if not run:
        return ""
    return ", clusters by scipy" if run["method"] == "scipy" else f", clusters on Ray in {run['rounds']} rounds"


def render_html(report: dict) -> str:
    inp, out = report["input"], report["output"]
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>Curation report</title>"
             f"<style>{_CSS}</style></head><body><h1>Curation report</h1>",
             f'<p class="muted">{escape(out["path"])} &middot; {report["seconds"]} s</p><div class=cards>']
    kept_share = out["docs"] / inp["docs"] if inp["docs"] else 0
    for label, value in (("input documents", _n(inp["docs"])), ("input bytes", _mb(inp["bytes"])),
                         ("output documents", _n(out["docs"])), ("output bytes", _mb(out["bytes"])),
                         ("documents kept", f"{kept_share:.0%}"), ("rejected rows", _n(report["rejected"]["docs"]))):
        parts.append(f"<div class=card>{label}<b>{value}</b></div>")
    parts.append("</div><h2>Kept after each step</h2><p class=muted>input: every record read, rejects included; "
                 "each step: the documents and bytes still in after it</p><table><tr><th>step</th><th>documents</th><th></th>"
                 "<th>bytes</th><th></th></tr>")
    steps = report["steps"]
    top_docs = max([inp["docs"]] + [s["docs"] for s in steps.values()]) or 1
    top_bytes = max([inp["bytes"]] + [s["bytes"] for s in steps.values()]) or 1
    for name, s in [("input", inp), *steps.items()]:
        parts.append(f"<tr><td>{escape(name)}</td><td class=n>{_n(s['docs'])}</td><td>{_bar(s['docs'], top_docs)}</td>"
                     f"<td class=n>{_mb(s['bytes'])}</td><td>{_bar(s['bytes'], top_bytes, 'b')}</td></tr>")
    parts.append("</table>")
    causes = report.get("reject_causes") or {}
    drops = sorted(report["rejects"].items(), key=lambda kv: -kv[1])
    parts.append("<h2>Drops by reason</h2><p class=muted>beside each reason, the setting behind it or its cause "
                 "in the input</p>" + _bars(drops, "r", notes=causes))
    parts.append("<h2>Sources</h2><table><tr><th>source</th><th>format</th><th>kind</th><th>files</th>"
                 "<th>documents</th><th>kept</th><th>input</th><th>kept bytes</th><th>top drops</th></tr>")
    for name, s in report["sources"].items():
        drops = report["rejects_by_source"].get(name, {})
        top = ", ".join(f"{escape(r)} {n:,}" for r, n in sorted(drops.items(), key=lambda kv: -kv[1])[:3])
        kind = escape(s["kind"])
        if s.get("kinds") and list(s["kinds"]) != [s["kind"]]:
            kind += " <span class=muted>(" + ", ".join(f"{escape(k)} {n:,}" for k, n in s["kinds"].items()) + ")</span>"
        parts.append(f"<tr><td>{escape(name)}</td><td>{escape(s['format'])}</td><td>{kind}</td>"
                     f"<td class=n>{_n(s['files'])}</td><td class=n>{_n(s['docs'])}</td>"
                     f"<td class=n>{_n(s['kept_docs'])}</td><td class=n>{_mb(s['bytes'])}</td>"
                     f"<td class=n>{_mb(s['kept_bytes'])}</td><td class=muted>{top}</td></tr>")
    parts.append("</table>")
    kinds = report.get("kinds") or {}
    if kinds:
        parts.append("<h2>Kinds (documents; which rules judged them)</h2><p class=muted>detected: the kind came from "
                     "the document's content or file name (kind: auto); record: from the record's kind field; "
                     "source: the source's kind</p><table><tr><th>kind</th><th>documents</th><th>kept</th>"
                     "<th>detected</th><th>record</th><th>source</th><th></th></tr>")
        top = max(k["docs"] for k in kinds.values()) or 1
        for name, k in kinds.items():
            by = k.get("by", {})
            parts.append(f"<tr><td>{escape(name)}</td><td class=n>{_n(k['docs'])}</td><td class=n>{_n(k['kept'])}</td>"
                         + "".join(f"<td class=n>{_n(by.get(b, 0))}</td>" for b in ("detected", "record", "source"))
                         + f"<td>{_bar(k['docs'], top)}</td></tr>")
        parts.append("</table>")
    langs = report.get("languages") or {}
    parts.append("<h2>Languages (documents identified / kept)</h2>"
                 + _bars([(f"{k} ({v['kept']:,} kept)", v["docs"]) for k, v in langs.items()], "g"))
    dedup = report.get("dedup") or {}
    for kind, label in (("exact", "Exact duplicate clusters"), ("fuzzy", "Near-duplicate clusters")):
        info = dedup.get(kind)
        if info is None:
            continue
        extra = ""
        if kind == "fuzzy":
            extra = (f' <span class=muted>threshold {info["threshold"]}, {info["bands"]} bands x {info["rows"]} rows, '
                     f'{info["candidate_pairs"]:,} candidate pairs'
                     + (f', {info["verified_pairs"]:,} verified' if "verified_pairs" in info else "")
                     + _components(info.get("components")) + "</span>")
        sizes = sorted((int(k), v) for k, v in info["clusters"].items())
        parts.append(f"<h2>{label}: {info['duplicates']:,} removed{extra}</h2>"
                     + _bars([(f"size {k}", v) for k, v in sizes]))
    parts.append("<h2>Personal data redacted</h2>" + _bars([(k, v) for k, v in report["pii"].items() if v]))
    timing = report.get("timing") or {}
    parts.append("<h2>CPU seconds per step</h2>"
                 + _bars(sorted(timing.get("cpu_seconds", {}).items(), key=lambda kv: -kv[1]), "b"))
    decon = report.get("decontamination")
    if decon:
        files = ", ".join(escape(f.rsplit("/", 1)[-1]) for f in decon["files"])
        parts.append(f"<h2>Decontamination</h2><p>{decon['texts']:,} evaluation texts from {files}; "
                     f"{decon['ngram']}-grams; mode {escape(decon['mode'])}; "
                     f"{report['rejects'].get('contaminated', 0):,} documents dropped.</p>")
    parts.append("</body></html>\n")
    return "".join(parts)
