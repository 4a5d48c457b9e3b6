"""Robustness: accuracy against the attack budget, DeepFool's perturbation norms, examples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
from torch import Tensor

from visrep.plots._save import save, show_image

Curve = Sequence[tuple[float, float]]  # (eps, accuracy) points


def _accuracy_axes(ax: plt.Axes, norm: str, title: str) -> None:
    ax.set_xlabel(f"eps ({norm}, pixels in [0, 1])")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)


def plot_robustness(
    curves: Mapping[str, Curve],
    clean_acc: float,
    norm: str,
    deepfool_norms: Tensor | None,
    path: Path,
) -> Path:
    """Accuracy against the budget for every attack; DeepFool's ``||r||_2`` histogram beside it.

    Args:
        curves: attack name -> ``[(eps, accuracy)]``.
        clean_acc: accuracy without attack (a dashed line).
        norm: the budget's norm, for the axis label.
        deepfool_norms: ``(N,)`` L2 norms of DeepFool's successful perturbations, or None.
        path: the PNG to write.
    """
    panels = 2 if deepfool_norms is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.8), squeeze=False)
    ax = axes[0, 0]
    for name, pts in curves.items():
        label = "deepfool (upper bound)" if name == "deepfool" else name
        ax.plot([e for e, _ in pts], [a for _, a in pts], marker="o", ms=3, label=label)
    ax.axhline(clean_acc, color="gray", ls="--", lw=1, label="clean")
    _accuracy_axes(ax, norm, "accuracy under attack")
    if deepfool_norms is not None:
        ax = axes[0, 1]
        norms = deepfool_norms.detach().cpu()
        if len(norms):
            ax.hist(norms.numpy(), bins=30, color="tab:green", alpha=0.8)
            med = float(norms.median())
            ax.axvline(med, color="black", ls="--", lw=1, label=f"median {med:.3g}")
            ax.legend(fontsize=8)
        ax.set_xlabel("DeepFool ||r||_2 (successful samples)")
        ax.set_ylabel("samples")
        ax.set_title("minimal perturbations (DeepFool)")
    return save(fig, path)


def plot_robustness_comparison(
    runs: Mapping[str, Mapping[tuple[str, str], Curve]], norm: str, path: Path
) -> Path:
    """One panel per attack (FGSM, PGD) with each run's accuracy-against-budget curve.

    Args:
        runs: run name -> ``(attack, norm) -> [(eps, accuracy)]``.
        norm: the norm whose curves are drawn.
        path: the PNG to write.
    """
    names = [a for a in ("fgsm", "pgd") if any((a, norm) in c for c in runs.values())]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(5.2 * len(names), 3.8), squeeze=False)
    for ax, attack in zip(axes[0], names, strict=False):
        for run_name, curves in runs.items():
            pts = curves.get((attack, norm))
            if pts:
                ax.plot([e for e, _ in pts], [a for _, a in pts], marker="o", ms=3, label=run_name)
        _accuracy_axes(ax, norm, f"{attack}: accuracy under attack")
    return save(fig, path)


def plot_adversarial_examples(
    x: Tensor,
    y: Tensor,
    adversarial: Mapping[str, Tensor],
    probs: Mapping[str, Tensor],
    class_names: Sequence[str],
    path: Path,
    suffix: str = "",
) -> Path:
    """Rows of samples: the clean image, then per attack the amplified perturbation and the result.

    Args:
        x: clean images ``(N, C, H, W)`` in [0, 1].
        y: true classes ``(N,)``.
        adversarial: attack name -> adversarial images ``(N, C, H, W)``.
        probs: ``"clean"`` and every attack name -> predicted probabilities ``(N, classes)``.
        class_names: names of the classes (empty: the class indices).
        path: the PNG to write.
        suffix: appended to the figure title (e.g. the budget shown).
    """

    def name(c: int) -> str:
        return class_names[c] if class_names else str(c)

    cols = 1 + 2 * len(adversarial)
    fig, axes = plt.subplots(len(x), cols, figsize=(cols * 1.35, len(x) * 1.55), squeeze=False)
    for i in range(len(x)):
        conf, pred = probs["clean"][i].max(-1)
        title = f"clean: {name(int(pred))} ({float(conf):.2f})\ntrue {name(int(y[i]))}"
        show_image(axes[i, 0], x[i], title)
        for j, (attack, xa) in enumerate(adversarial.items()):
            r = xa[i] - x[i]
            amp = float(r.abs().max())
            show_image(
                axes[i, 1 + 2 * j], 0.5 + r / (2 * max(amp, 1e-12)), f"{attack} r\n|r|inf {amp:.3f}"
            )
            conf, pred = probs[attack][i].max(-1)
            fooled = int(pred) != int(y[i])
            show_image(axes[i, 2 + 2 * j], xa[i], f"{attack}: {name(int(pred))} ({float(conf):.2f})",
                       "red" if fooled else "black")  # fmt: skip
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(
        f"clean | perturbation (amplified to full range) | adversarial{suffix}", fontsize=9
    )
    return save(fig, path)
