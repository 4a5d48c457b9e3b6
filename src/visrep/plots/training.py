"""Training curves of a run: loss and accuracy per epoch from ``metrics.csv`` rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from visrep.plots._save import save


def plot_learning_curves(rows: Sequence[dict[str, str]], path: Path) -> Path | None:
    """Loss and accuracy per epoch for every split found in metrics.csv rows (None if no rows)."""
    if not rows:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    groups: dict[str, list[str]] = {"loss": [], "acc": []}
    for key in rows[0]:
        if "/" in key:
            metric = key.split("/", 1)[1]
            if metric in groups:
                groups[metric].append(key)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (metric, keys) in zip(axes, groups.items(), strict=True):
        for k in sorted(keys):
            vals = [float(r[k]) if r.get(k) not in (None, "") else np.nan for r in rows]
            ax.plot(epochs, vals, marker="o", ms=3, label=k)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        if keys:
            ax.legend()
    return save(fig, path)
