"""Trained runs side by side: accuracy, generalisation gap, size, FLOPs, depth, noise robustness.

:func:`evaluate` measures one classifier on one dataset (accuracy, predictions, the mean
NAIS-Net depth, the logit distance under Gaussian pixel noise); :func:`compare_runs` does it for
the train and test splits of several runs and :func:`comparison_markdown` renders the tables.
Any classification run works; the depth columns are empty for models without NAIS-Net blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from visrep.analysis.model_stats import model_stats
from visrep.analysis.runs import LoadedRun, load_run
from visrep.analysis.samples import (
    backbone_name,
    batches,
    classifier,
    random_batch,
    split_dataset,
)
from visrep.analysis.stability import compute_profile
from visrep.errors import ConfigError
from visrep.models.layers.naisnet import iter_naisnet_blocks

__all__ = ["compare_run", "compare_runs", "comparison_markdown", "comparison_tables", "evaluate"]


@torch.no_grad()
def evaluate(
    net: nn.Module,
    ds: Dataset,
    batch_size: int = 256,
    sigma: float = 0.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy, predictions and mean NAIS-Net depth of ``net`` (eval mode) on a dataset.

    With ``sigma > 0`` every image gets seeded Gaussian noise ``sigma * N(0, I)`` in pixel space
    (not clipped) and the mean logit distance ``||f(x + n) - f(x)||_2`` (also relative to
    ``||f(x)||_2``) is reported.

    Returns:
        ``{"acc", "pred" (N,), "mean_depth" {block: float}, "dist", "rel_dist"}``.
    """
    g = torch.Generator().manual_seed(seed)
    blocks = dict(iter_naisnet_blocks(net))
    correct, preds, dist, rel = 0, [], [], []
    depth = {n: 0.0 for n in blocks}
    for x, y in batches(ds, batch_size):
        logits = net(x)
        if sigma > 0:
            clean = logits
            logits = net(x + sigma * torch.randn(x.shape, generator=g))
            d = (logits - clean).norm(dim=1)
            dist.append(d)
            rel.append(d / clean.norm(dim=1).clamp_min(1e-12))
        for n, b in blocks.items():
            depth[n] += float(b.last_depth.float().sum())
        preds.append(logits.argmax(1))
        correct += int((preds[-1] == y).sum())
    n = len(ds)
    return {
        "acc": correct / n,
        "pred": torch.cat(preds),
        "mean_depth": {k: v / n for k, v in depth.items()},
        "dist": float(torch.cat(dist).mean()) if dist else 0.0,
        "rel_dist": float(torch.cat(rel).mean()) if rel else 0.0,
    }


def _flops(net: nn.Module, x: Tensor, mean_depth: dict[str, float]) -> float:
    if mean_depth:
        return compute_profile(net, x, mean_depth).flops_adaptive
    return float(model_stats(net, x[:1]).total_flops)


def compare_run(
    run: LoadedRun, sigmas: Sequence[float], batch_size: int = 256, seed: int = 0
) -> dict[str, Any]:
    """One row of the comparison: accuracy, gap, size, FLOPs, depth, noise robustness.

    Args:
        run: a loaded classification run (with its data).
        sigmas: standard deviations of the Gaussian pixel noise (0: the clean test accuracy).
        batch_size: evaluation batch size.
        seed: the noise and the sample FLOPs are measured on.
    """
    if any(not s >= 0 for s in sigmas):
        raise ConfigError(f"--sigmas must be >= 0, got {list(sigmas)}")
    net = classifier(run, "visrep inspect compare", needs="forward")
    train_set, test_set = split_dataset(run, "train"), split_dataset(run, "test")
    train = evaluate(net, train_set, batch_size)
    test = evaluate(net, test_set, batch_size)
    x, _ = random_batch(test_set, 1, seed)
    noise = []
    for s in sigmas:
        r = evaluate(net, test_set, batch_size, sigma=s, seed=seed) if s > 0 else test
        noise.append({"sigma": s, "acc": r["acc"], "dist": r["dist"], "rel_dist": r["rel_dist"]})
    depth = test["mean_depth"]
    return {
        "run": str(run.run.root),
        "backbone": backbone_name(run.task),
        "params": sum(p.numel() for p in net.parameters()),
        "train_acc": train["acc"],
        "test_acc": test["acc"],
        "gap": train["acc"] - test["acc"],
        "mean_depth": float(np.mean(list(depth.values()))) if depth else None,
        "block_steps": float(sum(depth.values())) if depth else None,
        "flops": _flops(net, x, depth),
        "num_train": len(train_set),
        "num_test": len(test_set),
        "noise": noise,
    }


def compare_runs(
    runs: Sequence[str | Path],
    sigmas: Sequence[float] = (0.0, 0.1, 0.2, 0.3),
    batch_size: int = 256,
    seed: int = 0,
    which: str = "best",
) -> list[dict[str, Any]]:
    """:func:`compare_run` for each run directory (or checkpoint), loaded with ``load_run``."""
    if any(not s >= 0 for s in sigmas):  # before loading anything
        raise ConfigError(f"--sigmas must be >= 0, got {list(sigmas)}")
    return [compare_run(load_run(r, which), sigmas, batch_size, seed) for r in runs]


Table = tuple[list[str], list[list[str]]]


def comparison_tables(rows: Sequence[dict[str, Any]]) -> tuple[Table, Table]:
    """The runs table and the noise-robustness table of :func:`compare_runs` rows, as text cells."""
    head = ["run", "backbone", "params", "FLOPs/sample", "train acc", "test acc", "gap",
            "mean depth"]  # fmt: skip
    body = [
        [Path(r["run"]).name, str(r["backbone"]), f"{r['params']:,}", f"{r['flops']:,.0f}",
         f"{r['train_acc']:.4f}", f"{r['test_acc']:.4f}", f"{r['gap']:+.4f}",
         "-" if r["mean_depth"] is None else f"{r['mean_depth']:.2f}"]
        for r in rows
    ]  # fmt: skip
    nhead = ["run", "sigma", "test acc", "logit distance", "relative distance"]
    nbody = [
        [Path(r["run"]).name, f"{n['sigma']:g}", f"{n['acc']:.4f}", f"{n['dist']:.4f}",
         f"{n['rel_dist']:.4f}"]
        for r in rows for n in r["noise"]
    ]  # fmt: skip
    return (head, body), (nhead, nbody)


def _markdown(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body]) + "\n"


def comparison_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """``comparison.md``: both tables of :func:`comparison_tables` in Markdown."""
    runs, noise = comparison_tables(rows)
    return (
        "# Comparison\n\n"
        + _markdown(*runs)
        + "\n## Robustness to Gaussian input noise\n\n"
        + _markdown(*noise)
    )
