"""``visrep explain RUN_DIR``: Grad-CAM, occlusion, saliency, integrated gradients, feature-space
neighbours and PCA / t-SNE of a trained run, written to ``RUN_DIR/plots/`` and its report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from visrep.analysis.explain import ATTRIBUTIONS, PROJECTIONS, attribution_maps, neighbours
from visrep.analysis.explain import projection as project
from visrep.analysis.runs import load_run
from visrep.analysis.samples import class_names, classifier, split_dataset, spread_batch
from visrep.commands._common import (
    Command,
    Split,
    Which,
    check_positive,
    resolve_device,
    run_command,
)
from visrep.errors import ConfigError
from visrep.plots import plot_attributions, plot_embedding, plot_neighbours
from visrep.report import build_report

FEATURE_METHODS = ("neighbours", "tsne", "pca")
METHODS = (*ATTRIBUTIONS, *FEATURE_METHODS)


def explain(
    run_dir: str,
    *,
    methods: Sequence[str] | None = None,
    num_images: int = 8,
    split: Split = "test",
    layer: str | None = None,
    max_points: int = 2000,
    window: int = 4,
    stride: int = 2,
    baseline: float = 0.0,
    ig_steps: int = 32,
    k: int = 5,
    metric: Literal["cosine", "l2"] = "cosine",
    batch_size: int = 256,
    device: str = "auto",
    which: Which = "best",
    seed: int = 0,
) -> int:
    """Explain a trained run: attribution maps, neighbours and 2-D embeddings.

    Args:
        run_dir: a run directory (or a checkpoint inside one).
        methods: any of gradcam, occlusion, saliency, integrated_gradients, neighbours, tsne, pca
            (default: all; for runs without class scores, such as embedding, autoencoder and VAE
            runs, neighbours, tsne and pca).
        num_images: images to explain (spread over the split).
        split: split of the explained images and of the PCA / t-SNE points.
        layer: Grad-CAM layer, a module name such as layer4 (default: the last feature map).
        max_points: points in the PCA / t-SNE plots.
        window: occlusion window (pixels).
        stride: occlusion stride (pixels).
        baseline: occlusion / integrated-gradients baseline pixel value.
        ig_steps: integrated-gradients steps.
        k: neighbours per image (from the training split).
        metric: neighbour distance.
        batch_size: images per forward pass.
        device: auto, cpu, cuda or cuda:N.
        which: the checkpoint of the run.
        seed: seed of the PCA / t-SNE subset and of t-SNE.
    """
    unknown = [m for m in methods or () if m not in METHODS]
    if unknown or (methods is not None and not methods):
        raise ConfigError(
            f"--methods: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(METHODS)}"
        )
    methods = list(dict.fromkeys(methods)) if methods is not None else None
    check_positive(num_images=num_images, batch_size=batch_size, ig_steps=ig_steps, k=k,
                   window=window, stride=stride)  # fmt: skip
    if max_points < 4:
        raise ConfigError(f"--max_points must be >= 4, got {max_points}")
    dev = resolve_device(device)
    loaded = load_run(run_dir, which)
    loaded.run.lock().check()  # before the work, not after
    task = loaded.task
    if not task.embeds:  # e.g. R-CNN: its net.embed reads box crops
        raise ConfigError(
            f"{loaded.checkpoint}: visrep explain needs a model with one embedding per image "
            f"(classification, embedding, autoencoder or VAE runs), got {type(task).__name__}"
        )
    # Attribution maps explain a class score: only a classifier has one. Embedding, autoencoder
    # and VAE runs (net.embed, no logits) get the feature-space methods only.
    scores = task.class_scores
    if methods is None:
        methods = list(METHODS if scores else FEATURE_METHODS)
    attributions = [m for m in methods if m in ATTRIBUTIONS]
    if attributions and not scores:
        raise ConfigError(
            f"--methods {','.join(attributions)}: attribution maps explain a class score and "
            f"{type(loaded.task).__name__} runs have none; neighbours, tsne and pca work on "
            "their embeddings"
        )
    ds = split_dataset(loaded, split)
    net = classifier(loaded, "visrep explain", needs="embed").to(dev)
    names = class_names(loaded.task)

    def label(c: int) -> str:
        return names[c] if c < len(names) else str(c)

    x, y = spread_batch(ds, num_images)
    x = x.to(dev)
    titles = [label(int(t)) for t in y]
    if scores:
        with torch.no_grad():
            conf, pred = net(x).softmax(-1).max(-1)
        titles = [f"{t} → {label(int(p))} ({float(c):.2f})"
                  for t, p, c in zip(titles, pred, conf, strict=True)]  # fmt: skip
    else:
        pred = y
    maps, layer_used, skipped = attribution_maps(
        net, x, pred, [m for m in methods if m in ATTRIBUTIONS], layer, window, stride, baseline,
        ig_steps, batch_size,
    )  # fmt: skip
    if skipped:
        print(f"note: Grad-CAM skipped: {skipped} (pass --layer NAME of a spatial layer)")
    elif "gradcam" in maps:
        print(f"Grad-CAM layer: {layer_used or 'the output of forward_features'}")
    near = None
    if "neighbours" in methods:
        train = split_dataset(loaded, "train")
        near = neighbours(net, train, x, y, k, metric, batch_size)
        print(f"neighbours: {near.agreement:.1%} of the {k} nearest training images share the "
              "true class")  # fmt: skip
    points = {m: project(net, ds, m, max_points, seed, batch_size) for m in PROJECTIONS
              if m in methods}  # fmt: skip
    run = loaded.run
    with run.lock():
        plots = run.plots
        written: list[Path] = [
            plot_attributions(x.cpu(), {name: m}, plots / f"explain_{name}.png", titles)
            for name, m in maps.items()
        ]
        if near is not None:
            written.append(plot_neighbours(
                x.cpu(), near.images, plots / "explain_neighbours.png",
                [f"query: {label(int(t))}" for t in y],
                [[f"{label(int(c))} {float(d):.3f}" for c, d in zip(r, dr, strict=True)]
                 for r, dr in zip(near.labels, near.distances, strict=True)],
            ))  # fmt: skip
        for m in ("pca", "tsne"):  # the order explain always wrote them in
            if m in points:
                p2, zy, detail = points[m]
                title = f"{'PCA' if m == 'pca' else 't-SNE'} of {split} embeddings ({detail})"
                written.append(plot_embedding(p2, zy, plots / f"embedding_{m}.png", names, title))
        for path in written:
            print(f"wrote {path}")
        print(f"report: {build_report(run.root)}")
    return 0


def main(argv: Sequence[str]) -> int:
    """Run ``visrep explain ...``; returns the exit code."""
    return run_command(Command(explain), "visrep explain", argv)
