"""The self-contained HTML report of a run directory (images embedded as base64)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from visrep.errors import DataError
from visrep.plots.training import plot_learning_curves
from visrep.runs import RunDir

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}img{max-width:100%;border:1px solid #eee;margin:.4em 0}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}figure{margin:0 0 1em}
figcaption{font-size:.85em;color:#555}
"""


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v[:50]) + (" ..." if len(v) > 50 else "")
    return str(v)


def build_report(run_dir: str | Path) -> Path:
    """Redraw the learning curves from metrics.csv and write ``report.html``; returns its path."""
    run = RunDir(run_dir)
    if not run.root.is_dir():
        raise DataError(f"run directory {str(run.root)!r} does not exist")
    plot_learning_curves(run.read_epochs(), run.plots / "learning_curves.png")
    metrics = run.read_metrics()
    parts = [f"<h1>visrep run: {html.escape(run.root.name)}</h1>"]
    if metrics:
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>"
            for k, v in sorted(metrics.items())
        )
        parts.append(f"<h2>Metrics</h2><table>{rows}</table>")
    pngs = sorted(run.plots.glob("*.png")) if run.plots.is_dir() else []
    if pngs:
        parts.append("<h2>Plots</h2>")
        for p in pngs:
            data = base64.b64encode(p.read_bytes()).decode()
            parts.append(
                f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(p.stem.replace('_', ' '))}</figcaption></figure>"
            )
    epochs = run.read_epochs()
    if epochs:
        head = "".join(f"<th>{html.escape(k)}</th>" for k in epochs[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt_cell(v))}</td>" for v in r.values()) + "</tr>"
            for r in epochs
        )
        parts.append(f"<h2>Per-epoch metrics</h2><table><tr>{head}</tr>{body}</table>")
    cfg = run.root / "config.yaml"
    if cfg.is_file():
        parts.append(f"<h2>Configuration</h2><pre>{html.escape(cfg.read_text())}</pre>")
    doc = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>visrep: {html.escape(run.root.name)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )
    run.write_text(run.report, doc)
    return run.report


def _fmt_cell(v: str | None) -> str:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return v or ""
    return str(int(f)) if f.is_integer() else f"{f:.4f}"
