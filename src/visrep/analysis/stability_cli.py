"""``visrep inspect stability RUN_DIR`` and ``visrep inspect compare RUN_A RUN_B ...`` (seed 000).

Ciccone et al., "NAIS-Net: Stable Deep Networks from Non-Autonomous Differential Equations",
NeurIPS 2018. ``stability`` measures, on a trained run, what the paper claims for NAIS-Net: the
reprojected weights satisfy the sufficient conditions of Sec. 5 (constraint margins >= 0), the
state-transfer Jacobian is contractive at visited states (Sec. 4), trajectories converge to
input-dependent attractors and stay bounded under input noise (input-output stability), and the
stopping criterion ``||x(k+1) - x(k)||_2 < tol`` gives a pattern-dependent depth that saves
compute at (near) equal accuracy. ``compare`` puts runs side by side: train / test accuracy,
generalisation gap, parameters, FLOPs, depth and robustness to Gaussian input noise.

``visrep.analysis.inspect_cli`` dispatches both subcommands here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jsonargparse import ArgumentParser
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from visrep.analysis.model_stats import model_stats
from visrep.analysis.runs import LoadedRun, load_run
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
from visrep.plots.stability import plot_depth, plot_noise, plot_spectral, plot_trajectories
from visrep.report import build_report

__all__ = ["evaluate", "main_compare", "main_stability", "stability_analysis"]


# --------------------------------------------------------------------------- shared helpers
def _net(run: LoadedRun) -> nn.Module:
    net = getattr(run.task, "net", None)
    if net is None or not hasattr(net, "forward_features"):
        raise ConfigError(f"{run.checkpoint}: the task has no image classifier `net` to analyse")
    return net.eval()


def _split(run: LoadedRun, split: str) -> Dataset:
    if run.datamodule is None:
        raise ConfigError(f"run {str(run.run.root)!r} has no config.yaml to rebuild its data from")
    run.datamodule.setup()
    ds = getattr(run.datamodule, f"{split}_set", None)
    if ds is None:
        raise ConfigError(f"run {str(run.run.root)!r}: the data module has no {split} split")
    return ds


def _batches(ds: Dataset, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    yield from DataLoader(ds, batch_size=batch_size, shuffle=False)


def _sample(ds: Dataset, n: int, seed: int) -> tuple[Tensor, Tensor]:
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    return next(iter(DataLoader(Subset(ds, idx.tolist()), batch_size=len(idx))))


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
    for x, y in _batches(ds, batch_size):
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


def _short(name: str) -> str:
    return name.removeprefix("backbone.")


def _console() -> Any:
    from rich.console import Console

    con = Console()
    return con if con.is_terminal else Console(width=160)  # pipes and logs: no truncated cells


# --------------------------------------------------------------------------- stability
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
    x, _ = _sample(test_set, num_samples, seed)

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
        hist = depth_histogram(net, _batches(test_set, batch_size))
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
              "hist": hist, "tol": next(iter(tols.values())), "at": at}  # fmt: skip
    return summary, curves


def _metric_keys(s: dict[str, Any]) -> dict[str, Any]:
    keys = ("margin_min", "rho_max", "rho_mean", "rho_active_max", "mean_depth", "block_steps_fixed",
            "block_steps_adaptive", "flops_fixed", "flops_adaptive", "flops_saved", "acc_fixed",
            "acc_adaptive", "agreement")  # fmt: skip
    out = {f"stability/{k}": s[k] for k in keys}
    for n, b in s["blocks"].items():
        for k in ("margin_min", "margin_mean", "rho_max", "rho_active_max", "mean_depth"):
            out[f"stability/{_short(n)}/{k}"] = b[k]
    return out


def _print_stability(s: dict[str, Any], run_dir: str) -> None:
    from rich.table import Table

    t = Table(title=f"NAIS-Net stability: {run_dir}")
    for h in ("block", "kind", "K_max", "tol", "margin min", "margin mean", "rho max", "rho mean",
              "rho active max", "mean depth", "stopped early"):  # fmt: skip
        t.add_column(h, justify="left" if h in ("block", "kind") else "right")
    for n, b in s["blocks"].items():
        t.add_row(_short(n), b["kind"], str(b["max_steps"]), f"{b['tol']:g}",
                  f"{b['margin_min']:.3g}", f"{b['margin_mean']:.3g}", f"{b['rho_max']:.4f}",
                  f"{b['rho_mean']:.4f}", f"{b['rho_active_max']:.4f}", f"{b['mean_depth']:.2f}",
                  f"{100 * b['stopped_early']:.1f}%")  # fmt: skip
    c = Table(title=f"fixed K_max vs adaptive depth (test set, {s['num_test']} samples)")
    for h in ("", "test acc", "block-steps", "FLOPs/sample"):
        c.add_column(h, justify="left" if not h else "right")
    c.add_row("fixed K_max", f"{s['acc_fixed']:.4f}", str(s["block_steps_fixed"]),
              f"{s['flops_fixed']:,.0f}")  # fmt: skip
    c.add_row("adaptive", f"{s['acc_adaptive']:.4f}", f"{s['block_steps_adaptive']:.2f}",
              f"{s['flops_adaptive']:,.0f}")  # fmt: skip
    for r in s["tol_sweep"]:
        c.add_row(f"adaptive tol={r['tol']:g}", f"{r['acc']:.4f}", f"{r['block_steps']:.2f}",
                  f"{r['flops']:,.0f}")  # fmt: skip
    con = _console()
    con.print(t)
    con.print(c)
    con.print(
        f"FLOPs saved by adaptive depth: {100 * s['flops_saved']:.1f}%  "
        f"(prediction agreement with K_max: {100 * s['agreement']:.1f}%)"
    )


def build_stability_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="visrep inspect stability",
        description="NAIS-Net stability of a trained run: constraint margins, Jacobian spectral "
        "radius, trajectories, noise response, pattern-dependent depth and the compute it saves.",
        exit_on_error=False,
    )
    p.add_argument("run_dir", type=str, help="a run directory (or checkpoint) of a NAIS-Net model")
    p.add_argument("--num_samples", type=int, default=256, help="test samples for curves")
    p.add_argument("--noise_levels", type=list[float], default=[0.0, 0.05, 0.1, 0.2, 0.5, 1.0],
                   help="noise norms as fractions of the mean input norm")  # fmt: skip
    p.add_argument("--tol", type=float | None, default=None,
                   help="stopping threshold (default: the model's own, else 1e-3)")  # fmt: skip
    p.add_argument("--max_steps", type=int | None, default=None, help="K_max (default: model's)")
    p.add_argument("--tol_sweep", type=list[float], default=[], help="more thresholds to report")
    p.add_argument("--n_iter", type=int, default=50, help="power iterations per Jacobian")
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    return p


def main_stability(argv: list[str]) -> int:
    """``visrep inspect stability RUN_DIR [...]``: tables, plots, metrics and report."""
    a = build_stability_parser().parse_args(argv)
    if a.num_samples < 1:
        raise ConfigError(f"--num_samples must be >= 1, got {a.num_samples}")
    run = load_run(a.run_dir)
    net = _net(run)
    if not any(True for _ in iter_naisnet_blocks(net)):
        raise ConfigError(
            f"run {str(run.run.root)!r}: backbone {run.task.hparams.get('backbone')!r} has no "
            "NAIS-Net blocks (train one with --model.backbone naisnet or naisnet_fc)"
        )
    test_set = _split(run, "test")
    s, c = stability_analysis(net, test_set, a.num_samples, a.noise_levels, a.tol, a.max_steps,
                              a.tol_sweep, a.n_iter, a.batch_size, a.seed)  # fmt: skip
    rd = run.run
    plot_trajectories(c["traj"], c["tol"], rd.plots / "stability_trajectories.png")
    plot_noise(c["noise_blocks"], c["noise_model"], rd.plots / "stability_noise.png")
    names = list(run.task.hparams.get("class_names") or [])
    names = names or [str(i) for i in range(max(s["classes"]) + 1)]
    plot_depth(c["hist"].counts, c["hist"].classes, names, rd.plots / "stability_depth.png")
    plot_spectral(c["rho"], c["at"], rd.plots / "stability_spectral_radius.png")
    rd.write_text(rd.root / "stability.json", json.dumps(s, indent=2) + "\n")
    rd.update_metrics(_metric_keys(s))
    report = build_report(rd.root)
    _print_stability(s, str(rd.root))
    print(f"wrote {rd.root / 'stability.json'}, {rd.plots}/stability_*.png, {report}")
    return 0


# --------------------------------------------------------------------------- compare
def _flops(net: nn.Module, x: Tensor, mean_depth: dict[str, float]) -> float:
    if mean_depth:
        return compute_profile(net, x, mean_depth).flops_adaptive
    return float(model_stats(net, x[:1]).total_flops)


def compare_run(
    run: LoadedRun, sigmas: Sequence[float], batch_size: int = 256, seed: int = 0
) -> dict[str, Any]:
    """One row of ``visrep inspect compare``: accuracy, gap, size, depth, noise robustness."""
    net = _net(run)
    train_set, test_set = _split(run, "train"), _split(run, "test")
    train = evaluate(net, train_set, batch_size)
    test = evaluate(net, test_set, batch_size)
    x, _ = _sample(test_set, 1, seed)
    noise = []
    for s in sigmas:
        r = evaluate(net, test_set, batch_size, sigma=s, seed=seed) if s > 0 else test
        noise.append({"sigma": s, "acc": r["acc"], "dist": r["dist"], "rel_dist": r["rel_dist"]})
    depth = test["mean_depth"]
    return {
        "run": str(run.run.root),
        "backbone": run.task.hparams.get("backbone"),
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


def _rows(
    rows: list[dict[str, Any]],
) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
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
    return head, body, nhead, nbody


def _markdown(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body]) + "\n"


def build_compare_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="visrep inspect compare",
        description="Compare trained runs: train/test accuracy (best checkpoint, eval mode), "
        "generalisation gap, parameters, FLOPs, NAIS-Net depth and Gaussian-noise robustness.",
        exit_on_error=False,
    )
    p.add_argument("runs", type=str, nargs="+", help="run directories (or checkpoints)")
    p.add_argument("--sigmas", type=list[float], default=[0.0, 0.1, 0.2, 0.3],
                   help="std of the Gaussian pixel noise (images in [0, 1])")  # fmt: skip
    p.add_argument("--out", type=str | None, default=None,
                   help="write comparison.md and comparison.json into this directory")  # fmt: skip
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    return p


def main_compare(argv: list[str]) -> int:
    """``visrep inspect compare RUN_A RUN_B [...] [--out DIR]``."""
    a = build_compare_parser().parse_args(argv)
    if any(s < 0 for s in a.sigmas):
        raise ConfigError(f"--sigmas must be >= 0, got {a.sigmas}")
    rows = [compare_run(load_run(r), a.sigmas, a.batch_size, a.seed) for r in a.runs]
    head, body, nhead, nbody = _rows(rows)

    from rich.table import Table

    con = _console()
    for title, h, b in (("runs", head, body), ("robustness to Gaussian input noise", nhead, nbody)):
        t = Table(title=title)
        for i, col in enumerate(h):
            t.add_column(col, justify="left" if i < 2 else "right")
        for r in b:
            t.add_row(*r)
        con.print(t)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        md = (
            "# Comparison\n\n"
            + _markdown(head, body)
            + "\n## Robustness to Gaussian input noise\n\n"
        )
        (out / "comparison.md").write_text(md + _markdown(nhead, nbody))
        (out / "comparison.json").write_text(
            json.dumps({"sigmas": a.sigmas, "runs": rows}, indent=2) + "\n"
        )
        print(f"wrote {out / 'comparison.md'} and {out / 'comparison.json'}")
    return 0
