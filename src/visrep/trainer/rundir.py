"""The run directory: where a run's config, checkpoints, metrics, plots and report live.

Layout (DESIGN.md): ``config.yaml``, ``checkpoints/{best,last}.ckpt``, ``metrics.csv``,
``metrics.json``, ``plots/*.png``, ``report.html``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from visrep.trainer.checkpoint_io import atomic_write_bytes


class RunDir:
    """Paths and atomic file helpers of one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def best_ckpt(self) -> Path:
        return self.checkpoints / "best.ckpt"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def metrics_json(self) -> Path:
        return self.root / "metrics.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    def write_text(self, path: Path, text: str) -> None:
        atomic_write_bytes(path, lambda f: f.write(text.encode()))

    def read_metrics(self) -> dict[str, Any]:
        if not self.metrics_json.is_file():
            return {}
        return json.loads(self.metrics_json.read_text())

    def update_metrics(self, values: dict[str, Any]) -> dict[str, Any]:
        """Merge ``values`` into metrics.json (NaN and inf become null) and return the result."""
        merged = self.read_metrics()
        for k, v in values.items():
            merged[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        self.write_text(self.metrics_json, json.dumps(merged, indent=2, sort_keys=True) + "\n")
        return merged

    def read_epochs(self) -> list[dict[str, str]]:
        if not self.metrics_csv.is_file():
            return []
        with open(self.metrics_csv, newline="") as f:
            return list(csv.DictReader(f))

    def write_epochs(self, rows: list[dict[str, Any]]) -> None:
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        keys = ["epoch", *sorted(k for k in keys if k != "epoch")]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
        self.write_text(self.metrics_csv, buf.getvalue())
