"""NAIS-Net stability (Ciccone et al., NeurIPS 2018): trajectories, noise response, depth, spectra."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

from visrep.plots._save import save


class NoiseCurve(Protocol):
    """Output distance against input-noise norm (``visrep.analysis.stability.NoiseResponse``)."""

    noise_norms: np.ndarray
    mean_distance: np.ndarray
    max_distance: np.ndarray


def _short(name: str) -> str:
    return name.removeprefix("backbone.")


def plot_trajectories(norms: Mapping[str, Tensor], tol: float | None, path: Path) -> Path:
    """``||x(k+1) - x(k)||_2`` against ``k`` per block: median and 10-90% band over samples.

    Args:
        norms: block name -> step norms ``(B, steps)``.
        tol: the stopping threshold (a dashed line), or None.
        path: the PNG to write.
    """
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, t in norms.items():
        k = np.arange(1, t.shape[1] + 1)
        q = np.quantile(np.asarray(t), [0.1, 0.5, 0.9], axis=0)
        ax.plot(k, q[1], label=_short(name))
        ax.fill_between(k, q[0], q[2], alpha=0.2)
    if tol is not None:
        ax.axhline(tol, color="k", ls="--", lw=1, label=f"tol = {tol:g}")
    ax.set_yscale("log")
    ax.set_xlabel("stage k")
    ax.set_ylabel("||x(k+1) - x(k)||")
    ax.set_title("NAIS-Net trajectories (median, 10-90%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_noise(blocks: Mapping[str, NoiseCurve], model: NoiseCurve, path: Path) -> Path:
    """Output distance against input-noise norm, per block (at its input ``u``) and for the logits."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, r in blocks.items():
        axes[0].plot(r.noise_norms, r.mean_distance, marker="o", ms=3, label=_short(name))
    axes[1].plot(model.noise_norms, model.mean_distance, marker="o", ms=3, label="mean")
    axes[1].plot(model.noise_norms, model.max_distance, marker="o", ms=3, ls="--", label="max")
    titles = ("block output vs noise on its input u", "logits vs noise on the image")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xlabel("input noise norm")
        ax.set_ylabel("output distance")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, path)


def plot_depth(
    counts: Mapping[str, np.ndarray],
    classes: Sequence[int],
    class_names: Sequence[str],
    path: Path,
) -> Path:
    """Per-class histogram of the processing depth of every block (rows: classes).

    Args:
        counts: block name -> ``(len(classes), max_steps + 1)`` counts; ``[i, d]`` is the number
            of samples of ``classes[i]`` that ran ``d`` stages.
        classes: the class index of each row.
        class_names: names indexed by class index.
        path: the PNG to write.
    """
    n = len(counts)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 0.3 * len(classes) + 2), squeeze=False)
    for ax, (name, c) in zip(axes[0], counts.items(), strict=True):
        c = np.asarray(c)
        used = np.nonzero(c.sum(0))[0]
        lo, hi = (int(used.min()), int(used.max())) if used.size else (0, c.shape[1] - 1)
        frac = c / np.maximum(c.sum(1, keepdims=True), 1)
        mean = (c * np.arange(c.shape[1])).sum(1) / np.maximum(c.sum(1), 1)
        ax.imshow(frac[:, lo : hi + 1], aspect="auto", cmap="viridis",
                  extent=(lo - 0.5, hi + 0.5, len(classes) - 0.5, -0.5))  # fmt: skip
        ax.plot(mean, np.arange(len(classes)), "w.", ms=6, label="mean")
        ax.set_yticks(range(len(classes)), [class_names[k] for k in classes])
        ax.set_xlabel("depth (stages run)")
        ax.set_title(_short(name), fontsize=9)
    axes[0][0].set_ylabel("class")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("pattern-dependent processing depth (fraction of the class)")
    return save(fig, path)


def plot_spectral(rho: Mapping[str, Tensor], at_steps: Sequence[int], path: Path) -> Path:
    """Histogram of ``rho(J(x(k), u))`` per block at the sampled stages ``k``.

    Args:
        rho: block name -> ``(len(at_steps), B)`` spectral radii.
        at_steps: the stages ``k``.
        path: the PNG to write.
    """
    n = len(rho)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.2), squeeze=False)
    for ax, (name, r) in zip(axes[0], rho.items(), strict=True):
        lo, hi = float(r.min()), float(r.max())
        pad = max(hi - lo, 1e-3) * 0.05  # ReLU blocks: often all exactly 1
        for k, row in zip(at_steps, r, strict=True):
            ax.hist(np.asarray(row), bins=30, range=(lo - pad, hi + pad), alpha=0.5,
                    label=f"k = {k}")  # fmt: skip
        ax.axvline(1.0, color="k", ls="--", lw=1)
        ax.set_xlabel("spectral radius of J")
        ax.set_title(_short(name), fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("state-transfer Jacobian at visited states (stable: < 1)")
    return save(fig, path)
