"""The NAIS-Net stability report of a classifier: every measurement of ``visrep inspect stability``.

Ciccone et al., "NAIS-Net: Stable Deep Networks from Non-Autonomous Differential Equations",
NeurIPS 2018. :func:`stability_analysis` measures, on a trained classifier, what the paper claims
for NAIS-Net: the reprojected weights satisfy the sufficient conditions of Sec. 5 (constraint
margins >= 0), the state-transfer Jacobian is contractive at visited states (Sec. 4),
trajectories converge to input-dependent attractors and stay bounded under input noise
(input-output stability), and the stopping criterion ``||x(k+1) - x(k)||_2 < tol`` gives a
pattern-dependent depth that saves compute at (near) equal accuracy. The measurements
themselves are :mod:`visrep.analysis.stability`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from visrep.analysis.compare import evaluate
from visrep.analysis.runs import LoadedRun
from visrep.analysis.samples import (
    backbone_name,
    batches,
    classifier,
    random_batch,
    split_dataset,
)
from visrep.analysis.stability import (
    block_inputs,
    compute_profile,
    constraint_margins,
    depth_histogram,
    model_spectral_radii,
    model_trajectories,
    noise_response,
    unroll_settings,
)
from visrep.errors import ConfigError
from visrep.models.layers.naisnet import iter_naisnet_blocks

__all__ = ["naisnet_classifier", "stability_analysis", "stability_metrics", "stability_of_run"]


def naisnet_classifier(run: LoadedRun) -> nn.Module:
    """The run's classifier (eval mode) after checking it has NAIS-Net blocks.

    Raises:
        ConfigError: not an image classifier, or one without NAIS-Net blocks.
    """
    net = classifier(run, "visrep inspect stability")
    if not any(True for _ in iter_naisnet_blocks(net)):
        raise ConfigError(
            f"run {str(run.run.root)!r}: backbone {backbone_name(run.task)!r} has no "
            "NAIS-Net blocks (train one with --model.backbone naisnet or naisnet_fc)"
        )
    return net


def stability_of_run(run: LoadedRun, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`stability_analysis` of a run's classifier on its test split (``options`` as there)."""
    return stability_analysis(naisnet_classifier(run), split_dataset(run, "test"), **options)


def stability_analysis(
    net: nn.Module,
    test_set: Dataset,
    num_samples: int = 256,
    noise_levels: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0),
    tol: float | None = None,
    max_steps: int | None = None,
    tol_sweep: Sequence[float] = (),
    n_iter: int = 50,
    batch_size: int = 256,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """All stability measurements of a NAIS-Net classifier (in pixel space, eval mode).

    Args:
        net: the classifier (``forward_features``, NAIS-Net blocks inside).
        test_set: the data the depth, accuracy and compute are measured on.
        num_samples: test samples for trajectories, Jacobians and noise.
        noise_levels: noise norms as fractions of the mean input norm (image or block input).
        tol: the stopping threshold; default each block's own (1e-3 where none is set).
        max_steps: ``K_max``; default each block's own.
        tol_sweep: extra thresholds to report accuracy and compute for.
        n_iter: power iterations per Jacobian.
        batch_size: evaluation batch size.
        seed: samples, noise and power-iteration start vectors.

    Returns:
        ``(summary, curves)``: JSON-ready results and the raw curves for the plots.
    """
    blocks = dict(iter_naisnet_blocks(net))
    if tol is None and all(b.tol is None for b in blocks.values()):
        tol = 1e-3
    tol_arg: float | str = "keep" if tol is None else tol
    g = torch.Generator().manual_seed(seed)
    x, _ = random_batch(test_set, num_samples, seed)

    margins = {m.name: m for m in constraint_margins(net)}
    with unroll_settings(net, tol=None, max_steps=max_steps):
        kmax = min(b.max_steps for b in blocks.values())
        at = sorted({0, kmax // 2, kmax - 1})
        traj = model_trajectories(net, x)
        rho = model_spectral_radii(net, x, at, n_iter, g)
        rho_active = model_spectral_radii(net, x, at, n_iter, g, active=True)
        fixed = evaluate(net, test_set, batch_size)
        us = block_inputs(net, x)
        noise_blocks = {
            n: noise_response(
                blocks[n], u, [lv * float(u.flatten(1).norm(dim=1).mean()) for lv in noise_levels],
                generator=g,
            )
            for n, u in us.items()
        }  # fmt: skip
        x_norm = float(x.flatten(1).norm(dim=1).mean())
        noise_model = noise_response(net, x, [lv * x_norm for lv in noise_levels], generator=g)
    with unroll_settings(net, tol=tol_arg, max_steps=max_steps):
        tols = {n: b.tol for n, b in blocks.items()}
        kmaxes = {n: b.max_steps for n, b in blocks.items()}
        adaptive = evaluate(net, test_set, batch_size)
        hist = depth_histogram(net, batches(test_set, batch_size))
        profile = compute_profile(net, x[:1], adaptive["mean_depth"])
    sweep = []
    for t in tol_sweep:
        with unroll_settings(net, tol=t, max_steps=max_steps):
            r = evaluate(net, test_set, batch_size)
            p = compute_profile(net, x[:1], r["mean_depth"])
        sweep.append(
            {"tol": t, "acc": r["acc"], "block_steps": p.block_steps_adaptive,
             "flops": p.flops_adaptive, "flops_saved": p.saved_fraction}
        )  # fmt: skip

    per_block = {}
    for n in blocks:
        m = margins[n]
        stopped = hist.counts[n][:, : kmaxes[n]].sum() / max(hist.counts[n].sum(), 1)
        per_block[n] = {
            "kind": m.kind,
            "constrained": m.constrained,
            "margin_min": m.margin,
            "margin_mean": float(np.mean(m.per_map)) if m.per_map else m.margin,
            "delta_margin": m.delta_margin,
            "rho_max": float(rho[n].max()),
            "rho_mean": float(rho[n].mean()),
            "rho_at_steps": {str(k): float(r.max()) for k, r in zip(at, rho[n], strict=True)},
            "rho_active_max": float(rho_active[n].max()),
            "rho_active_mean": float(rho_active[n].mean()),
            "max_steps": kmaxes[n],
            "tol": tols[n],
            "tol_mode": blocks[n].tol_mode,
            "mean_depth": adaptive["mean_depth"][n],
            "mean_depth_per_class": hist.mean_depth()[n].tolist(),
            "depth_counts": hist.counts[n].tolist(),
            "stopped_early": float(stopped),
            "step_flops": profile.step_flops[n],
            "trajectory_median": np.median(traj[n].numpy(), axis=0).tolist(),
            "noise_norms": noise_blocks[n].noise_norms.tolist(),
            "noise_mean_distance": noise_blocks[n].mean_distance.tolist(),
        }
    summary = {
        "blocks": per_block,
        "classes": hist.classes,
        "margin_min": min(v["margin_min"] for v in per_block.values()),
        "rho_max": max(v["rho_max"] for v in per_block.values()),
        "rho_mean": float(np.mean([v["rho_mean"] for v in per_block.values()])),
        "rho_active_max": max(v["rho_active_max"] for v in per_block.values()),
        "mean_depth": float(np.mean([v["mean_depth"] for v in per_block.values()])),
        "block_steps_fixed": profile.block_steps_fixed,
        "block_steps_adaptive": profile.block_steps_adaptive,
        "flops_fixed": profile.flops_fixed,
        "flops_adaptive": profile.flops_adaptive,
        "flops_saved": profile.saved_fraction,
        "acc_fixed": fixed["acc"],
        "acc_adaptive": adaptive["acc"],
        "agreement": float((fixed["pred"] == adaptive["pred"]).float().mean()),
        "rho_at_steps": at,
        "noise_levels": list(noise_levels),
        "model_noise_norms": noise_model.noise_norms.tolist(),
        "model_noise_mean_distance": noise_model.mean_distance.tolist(),
        "model_noise_max_distance": noise_model.max_distance.tolist(),
        "tol_sweep": sweep,
        "num_samples": len(x),
        "num_test": len(test_set),
    }
    curves = {"traj": traj, "rho": rho, "noise_blocks": noise_blocks, "noise_model": noise_model,
              "hist": hist, "at": at,
              # the trajectory plot shows absolute step norms: a relative tol is no line on it
              "tol": None if any(b.tol_mode == "relative" for b in blocks.values())
              else next(iter(tols.values()))}  # fmt: skip
    return summary, curves


def stability_metrics(s: dict[str, Any]) -> dict[str, Any]:
    """The ``stability/...`` keys of ``metrics.json`` from a :func:`stability_analysis` summary."""
    keys = ("margin_min", "rho_max", "rho_mean", "rho_active_max", "mean_depth", "block_steps_fixed",
            "block_steps_adaptive", "flops_fixed", "flops_adaptive", "flops_saved", "acc_fixed",
            "acc_adaptive", "agreement")  # fmt: skip
    out = {f"stability/{k}": s[k] for k in keys}
    for n, b in s["blocks"].items():
        for k in ("margin_min", "margin_mean", "rho_max", "rho_active_max", "mean_depth"):
            out[f"stability/{n.removeprefix('backbone.')}/{k}"] = b[k]
    return out
