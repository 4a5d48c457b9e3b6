"""``visrep explain RUN_DIR``: Grad-CAM, occlusion, saliency, integrated gradients, feature-space
neighbours and PCA / t-SNE of a trained run, written to ``RUN_DIR/plots/`` and its report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jsonargparse import ArgumentParser
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from visrep.analysis import interpret as I
from visrep.analysis.runs import load_run, spread_indices
from visrep.errors import ConfigError, DataError, ShapeError
from visrep.plots import plot_attributions, plot_embedding, plot_neighbours
from visrep.report import build_report

ATTRIBUTIONS = ("gradcam", "occlusion", "saliency", "integrated_gradients")
METHODS = (*ATTRIBUTIONS, "neighbours", "tsne", "pca")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="visrep explain", description=__doc__.splitlines()[0], exit_on_error=False
    )
    p.add_argument("run_dir", type=str, help="a run directory (or a checkpoint inside one)")
    p.add_argument(
        "--methods",
        type=str,
        default=",".join(METHODS),
        help="comma-separated: " + ", ".join(METHODS),
    )
    p.add_argument(
        "--num_images", type=int, default=8, help="images to explain (spread over the split)"
    )
    p.add_argument("--split", type=Literal["train", "val", "test"], default="test",
                   help="split of the explained images and of the PCA / t-SNE points")  # fmt: skip
    p.add_argument("--layer", type=str | None, default=None,
                   help="Grad-CAM layer, a module name such as layer4 (default: the last feature map)")  # fmt: skip
    p.add_argument("--max_points", type=int, default=2000, help="points in the PCA / t-SNE plots")
    p.add_argument("--window", type=int, default=4, help="occlusion window (pixels)")
    p.add_argument("--stride", type=int, default=2, help="occlusion stride (pixels)")
    p.add_argument("--baseline", type=float, default=0.0,
                   help="occlusion / integrated-gradients baseline pixel value")  # fmt: skip
    p.add_argument("--ig_steps", type=int, default=32, help="integrated-gradients steps")
    p.add_argument(
        "--k", type=int, default=5, help="neighbours per image (from the training split)"
    )
    p.add_argument(
        "--metric", type=Literal["cosine", "l2"], default="cosine", help="neighbour distance"
    )
    p.add_argument("--batch_size", type=int, default=256, help="images per forward pass")
    p.add_argument("--device", type=str, default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--which", type=Literal["best", "last"], default="best", help="checkpoint of the run"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the PCA / t-SNE subset and of t-SNE"
    )
    return p


def _methods(spec: str) -> list[str]:
    names = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ConfigError(
            f"--methods: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(METHODS)}"
        )
    return list(dict.fromkeys(names))


def _batch(ds: Dataset, indices: list[int]) -> tuple[Tensor, Tensor]:
    x, y = next(iter(DataLoader(Subset(ds, indices), batch_size=len(indices))))
    return x, torch.as_tensor(y)


def _attributions(
    net: nn.Module, x: Tensor, pred: Tensor, methods: list[str], cfg: Any
) -> dict[str, Tensor]:
    """Maps ``(B, H, W)`` on the CPU for the attribution methods asked for (the predicted class)."""
    maps: dict[str, Tensor] = {}
    for m in methods:
        if m == "gradcam":
            layer = cfg.layer or I.default_gradcam_layer(net, x)
            try:
                maps[m] = I.gradcam(net, x, pred, layer=layer)
            except ShapeError as e:
                if cfg.layer is not None:
                    raise
                print(f"note: Grad-CAM skipped: {e} (pass --layer NAME of a spatial layer)")
                continue
            print(f"Grad-CAM layer: {layer or 'the output of forward_features'}")
        elif m == "occlusion":
            maps[m] = I.occlusion(net, x, pred, cfg.window, cfg.stride, cfg.baseline,
                                  batch_size=cfg.batch_size)  # fmt: skip
        elif m == "saliency":
            maps[m] = I.saliency(net, x, pred)
        elif m == "integrated_gradients":
            ig = I.integrated_gradients(net, x, pred, cfg.baseline, cfg.ig_steps, cfg.batch_size)
            maps[m] = ig.sum(1)
    return {k: v.cpu() for k, v in maps.items()}


def _neighbours(
    net: nn.Module, train: Dataset, x: Tensor, y: Tensor, cfg: Any, label: Callable, path: Path
) -> Path:
    """The ``k`` nearest training images of each explained image in ``net.embed`` space."""
    if train is None or cfg.k > len(train):
        raise ConfigError(f"--k {cfg.k}: the training split has fewer images")
    bank, bank_y = I.embed(net, train, cfg.batch_size, x.device)
    q, _ = I.embed(net, x, cfg.batch_size)
    dist, idx = I.nearest_neighbours(q, bank, cfg.k, cfg.metric)
    near, _ = _batch(train, idx.flatten().tolist())
    near_y = bank_y[idx]
    agree = float((near_y == y[:, None]).float().mean())
    print(f"neighbours: {agree:.1%} of the {cfg.k} nearest training images share the true class")
    return plot_neighbours(
        x.cpu(), near.reshape(*idx.shape, *near.shape[1:]), path,
        [f"query: {label(int(t))}" for t in y],
        [[f"{label(int(c))} {float(d):.3f}" for c, d in zip(r, dr, strict=True)]
         for r, dr in zip(near_y, dist, strict=True)],
    )  # fmt: skip


def _projections(
    net: nn.Module, ds: Dataset, methods: list[str], cfg: Any, names: list[str], plots: Path
) -> list[Path]:
    """PCA / t-SNE scatter plots of at most ``max_points`` embeddings of the split."""
    points = np.arange(len(ds))
    if len(points) > cfg.max_points:
        rng = np.random.default_rng(cfg.seed)
        points = np.sort(rng.choice(points, cfg.max_points, replace=False))
    z, zy = I.embed(net, Subset(ds, points.tolist()), cfg.batch_size)
    out = []
    for m in methods:
        if m == "pca":
            p2, ratio = I.pca(z, 2)
            title = f"PCA of {cfg.split} embeddings (N={len(z)}, {ratio.sum():.0%} of variance)"
        else:
            p2 = I.tsne(z, seed=cfg.seed)
            title = f"t-SNE of {cfg.split} embeddings (N={len(z)})"
        out.append(plot_embedding(p2, zy, plots / f"embedding_{m}.png", names, title))
    return out


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"--device {name!r} is not a device (auto, cpu, cuda, cuda:1 ...)") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here")
    return device


def main(argv: list[str]) -> int:
    try:
        cfg = build_parser().parse_args(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    methods = _methods(cfg.methods)
    for name in ("num_images", "batch_size", "ig_steps", "k"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.max_points < 4:
        raise ConfigError(f"--max_points must be >= 4, got {cfg.max_points}")
    device = _device(cfg.device)
    loaded = load_run(cfg.run_dir, cfg.which)
    dm = loaded.datamodule
    if dm is None:
        raise DataError(
            f"{loaded.run.root}/config.yaml has no data section: explain needs the data"
        )
    dm.setup()
    ds = getattr(dm, f"{cfg.split}_set", None)
    if ds is None or len(ds) == 0:
        raise ConfigError(f"--split {cfg.split}: the run's data module has no such split")
    net = getattr(loaded.task, "net", None)
    if not hasattr(net, "embed"):
        raise ConfigError(
            f"{loaded.checkpoint}: explain needs an image classifier (task.net with embed), "
            f"got {type(loaded.task).__name__}"
        )
    net = net.to(device).eval()
    names = list(loaded.task.hparams.get("class_names") or [])

    def label(c: int) -> str:
        return names[c] if c < len(names) else str(c)

    x, y = _batch(ds, spread_indices(len(ds), cfg.num_images))
    x = x.to(device)
    with torch.no_grad():
        conf, pred = net(x).softmax(-1).max(-1)
    titles = [f"{label(int(t))} → {label(int(p))} ({float(c):.2f})"
              for t, p, c in zip(y, pred, conf, strict=True)]  # fmt: skip
    plots = loaded.run.plots
    written = [
        plot_attributions(x.cpu(), {name: m}, plots / f"explain_{name}.png", titles)
        for name, m in _attributions(net, x, pred, [m for m in methods if m in ATTRIBUTIONS], cfg).items()
    ]  # fmt: skip
    if "neighbours" in methods:
        path = plots / "explain_neighbours.png"
        written.append(_neighbours(net, dm.train_set, x, y, cfg, label, path))
    projections = [m for m in ("pca", "tsne") if m in methods]
    if projections:
        written += _projections(net, ds, projections, cfg, names, plots)
    for path in written:
        print(f"wrote {path}")
    print(f"report: {build_report(loaded.run.root)}")
    return 0
