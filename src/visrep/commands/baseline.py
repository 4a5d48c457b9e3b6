"""``visrep baseline RUN_OR_CONFIG --features F --classifier C``: seed 002's shallow baselines.

One row of the "representation matters" table per command: k-NN or a linear classifier (linear
SVM or logistic regression trained with SGD) on raw pixels, polar coordinates (2-D points),
a bag of visual words, Fisher vectors or a trained run's features, on the train / val / test
splits of any run's or config's data module. Writes a run directory: ``config.yaml`` (the
options), ``metrics.json``, ``confusion_matrix.csv``, ``plots/confusion_matrix.png``,
``plots/decision_boundary.png`` for 2-D inputs, ``encoders/*.npz`` (fitted codebooks / GMMs,
reused by a later command with the same options on the same data) and ``report.html``.

Examples::

    visrep baseline quickstart --features pixels --classifier knn --k 1
    visrep baseline quickstart --features bovw --classifier linear --words 1000
    visrep baseline runs/cifar10 --features run:runs/cifar10 --classifier linear
    visrep baseline polar_rings_mlp --features polar --classifier linear
    visrep baseline nmnist_hats --data root=DIR --features hats --classifier linear
    visrep baseline nmnist_hats --data root=DIR --features hots --classifier histogram \
        --distance bhattacharyya
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from visrep.analysis.baseline import (
    DEFAULT_ALPHAS,
    HistogramClassifier,
    SplitInputs,
    classification_scores,
    fit_classifier,
    split_inputs,
    subsample_split,
)
from visrep.analysis.baseline_features import FeatureOptions, data_differences, make_featurizer
from visrep.analysis.runs import build_datamodule, saved_data_section
from visrep.commands._common import Command, Which, check_positive, resolve_device, run_command
from visrep.configs import read_config, resolve_config
from visrep.data.base import stratified_split
from visrep.errors import ConfigError, DataError
from visrep.events.hots import DISTANCES
from visrep.plots.baseline import plot_decision_function
from visrep.report import build_report
from visrep.runs import RunDir
from visrep.tasks.base import write_confusion_matrix

__all__ = ["baseline", "data_section", "main"]


def split_items(text: str) -> list[str]:
    """``key=value`` items separated by commas outside brackets and quotes.

    >>> split_items("root=/data,radii=[1, 3],split.seed=1")
    ['root=/data', 'radii=[1, 3]', 'split.seed=1']
    """
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [t.strip() for t in items if t.strip()]


def _override(init_args: dict[str, Any], text: str | None) -> dict[str, Any]:
    """``key=value,...`` (YAML values; dotted keys reach nested options) over ``init_args``."""
    out = json.loads(json.dumps(init_args))  # a deep copy of plain data
    for item in split_items(text or ""):
        key, eq, raw = item.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", key):
            raise ConfigError(f"--data must be key=value items (e.g. root=DIR), got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError:
            raise ConfigError(f"--data {item!r}: the value is not valid YAML") from None
        *parents, last = key.split(".")
        node = out
        for p in parents:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ConfigError(f"--data {item!r}: {p} is not a mapping of options")
            node = node[p]
        node[last] = value
    return out


def data_section(run_or_config: str, overrides: str | None = None) -> tuple[dict, str, str]:
    """The ``data`` section of a run directory's ``config.yaml`` or of an experiment config
    (a shipped name or a path), ``overrides`` applied; returns ``(section, source, name)``."""
    p = Path(run_or_config)
    if p.is_dir():
        source = str(p / "config.yaml")
        section = saved_data_section(RunDir(p))
        if section is None:
            raise ConfigError(f"{run_or_config}: no config.yaml with a data section in this run")
        name = p.name
    else:
        path = resolve_config(run_or_config)
        if path is None:
            raise ConfigError(
                f"{run_or_config!r} is neither a run directory nor a config (a file or a shipped "
                "config's name)"
            )
        section = read_config(path).get("data")
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: no data section (class_path, init_args)")
        source, name = path, Path(path).stem
    init_args = section.get("init_args") or {}
    if not isinstance(init_args, dict):
        raise ConfigError(f"{source}: data.init_args must be a mapping of options")
    section = {**section, "init_args": _override(init_args, overrides)}
    return section, source, name


def _finite(v: Any) -> Any:
    """NaN and infinities as null (JSON has no NaN), in nested dicts and lists too."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


def _slug(features: str) -> str:
    if features.startswith("run:"):
        return "run-" + Path(features[4:].rstrip("/")).name
    return features


def _val_split(
    train: SplitInputs, val: SplitInputs | None, seed: int
) -> tuple[SplitInputs, SplitInputs]:
    """The validation split; 10% of the training split (stratified, seeded) when the data has none."""
    if val is not None and len(val):
        return train, val
    keep, held = stratified_split(train.labels.numpy(), 0.1, seed, "validation split")
    part = [SplitInputs(train.inputs[i], train.labels[i], train.key)
            for i in (torch.from_numpy(keep), torch.from_numpy(held))]  # fmt: skip
    return part[0], part[1]


def baseline(
    run_or_config: str,
    *,
    features: str = "pixels",
    classifier: Literal["knn", "linear", "histogram"] = "linear",
    run_dir: str | None = None,
    data: str | None = None,
    k: int = 1,
    loss: Literal["hinge", "log"] = "hinge",
    alphas: list[float] | None = None,
    max_iter: int = 50,
    train_limit: int | None = None,
    step: int = 4,
    bin_sizes: list[int] | None = None,
    root_sift: bool = False,
    words: int = 1000,
    assignment: Literal["hard", "soft"] = "hard",
    pyramid: list[int] | None = None,
    components: int = 64,
    pca_dim: int = 64,
    gmm_iter: int = 100,
    fit_descriptors: int = 1_000_000,
    seed: int = 0,
    batch_size: int = 256,
    which: Which = "best",
    device: str = "auto",
    allow_other_data: bool = False,
    standardize: bool | None = None,
    distance: Literal["standard", "normalised", "bhattacharyya"] = "bhattacharyya",
    reference: Literal["class", "samples"] = "class",
    hats_cell_size: int = 6,
    hats_radius: int = 2,
    hats_tau: float = 1e5,
    hats_delta_t: int = 100_000,
    hots_prototypes: list[int] | None = None,
    hots_radius: list[int] | None = None,
    hots_tau: list[float] | None = None,
    hots_learning: Literal["online", "kmeans"] = "online",
    hots_fit_events: int = 100_000,
) -> int:
    """Shallow baselines: k-NN / linear on pixels, BoVW, Fisher vectors or a run's features.

    Features of the train / val / test splits are computed without training augmentation; the
    classifier is fitted on train (options chosen on val: 10% of train when the data has no
    val split) and scored on test.

    Args:
        run_or_config: a run directory (its data) or an experiment config (name or path).
        features: pixels, polar (2-D points as rho, theta), bovw, fisher, hats / hots (event
            data: HATS, Sironi et al. 2018; HOTS histograms, Lagorce et al. 2016), or run:PATH
            (the representation net.embed of a trained run directory or checkpoint).
        classifier: knn, linear (SGD; on standardised features except bovw and fisher,
            encodings that are already normalised) or histogram (HOTS: the nearest class
            signature under --distance).
        run_dir: where to write (default runs/baseline-<data>-<features>-<classifier>; a later
            command in the same directory reuses its fitted encoders).
        data: key=value overrides of the data's options, comma separated (YAML values; dotted
            keys for nested options), e.g. root=DIR,split.seed=1,radii=[1,3].
        k: neighbours of knn.
        loss: hinge (linear SVM) or log (logistic regression) for linear.
        alphas: regularisation strengths tried on the val split (default 1e-6,...,1e-2);
            extended tenfold, at most 3 extra fits, while the best is the smallest or largest.
        max_iter: SGD epochs at most.
        train_limit: use at most this many training samples (seeded, stratified).
        step: dense SIFT grid spacing in pixels.
        bin_sizes: SIFT bin width of each scale in pixels (default 4,6,8: 3 scales).
        root_sift: RootSIFT descriptors.
        words: codebook size of bovw.
        assignment: hard or soft bovw histograms.
        pyramid: spatial pyramid grids, e.g. 1,2,4 (default 1: none).
        components: GMM components of fisher.
        pca_dim: PCA dimension before the GMM of fisher.
        gmm_iter: EM iterations of the GMM.
        fit_descriptors: descriptors the codebook / GMM is fitted on at most.
        seed: seeds subsampling, encoders and SGD.
        batch_size: images per feature batch.
        which: the checkpoint of run:PATH.
        device: device of run:PATH features (auto, cpu, cuda, cuda:N).
        allow_other_data: accept run:PATH features of a run trained on another data section
            than the baseline's (its training set may then hold test images).
        standardize: scale each feature to zero mean and unit variance (on train) before the
            linear classifier; default: yes for pixels, polar and run features, no for bovw and
            fisher (normalised encodings, fed to the linear SVM as they are in Perronnin et al.
            2010; on CIFAR-10 BoVW did better standardised, see the README).
        distance: histogram distance of --classifier histogram: standard, normalised or
            bhattacharyya (Lagorce et al. 2016, Sec. 3.3).
        reference: class (mean training histogram per class, the paper) or samples (1-NN).
        hats_cell_size: HATS cell side K in pixels.
        hats_radius: HATS neighbourhood radius R.
        hats_tau: HATS decay in microseconds.
        hats_delta_t: HATS memory window in microseconds.
        hots_prototypes: HOTS prototypes per layer (default 4,8,16).
        hots_radius: HOTS radius per layer (default 2,4,8).
        hots_tau: HOTS tau per layer in microseconds (default 1e4,1e5,1e6).
        hots_learning: online (the paper's Alg. 1) or kmeans (mini-batch k-means).
        hots_fit_events: events each HOTS layer is fitted on at most.
    """
    check_positive(k=k, max_iter=max_iter, train_limit=train_limit, batch_size=batch_size)
    options = FeatureOptions(
        step=step,
        bin_sizes=tuple(bin_sizes or (4, 6, 8)),
        root_sift=root_sift,
        words=words,
        assignment=assignment,
        pyramid=tuple(pyramid or (1,)),
        components=components,
        pca_dim=pca_dim,
        gmm_iter=gmm_iter,
        fit_descriptors=fit_descriptors,
        seed=seed,
        batch_size=batch_size,
        hats_cell_size=hats_cell_size,
        hats_radius=hats_radius,
        hats_tau=hats_tau,
        hats_delta_t=hats_delta_t,
        hots_prototypes=tuple(hots_prototypes or (4, 8, 16)),
        hots_radius=tuple(hots_radius or (2, 4, 8)),
        hots_tau=tuple(hots_tau or (1e4, 1e5, 1e6)),
        hots_learning=hots_learning,
        hots_fit_events=hots_fit_events,
    )
    alphas = list(alphas) if alphas is not None else list(DEFAULT_ALPHAS)
    if not alphas or min(alphas) <= 0:
        raise ConfigError(f"--alphas must be numbers > 0, got {alphas}")
    section, source, name = data_section(run_or_config, data)
    featurizer = make_featurizer(features, options, which, resolve_device(device))
    run = RunDir(run_dir or Path("runs") / f"baseline-{name}-{_slug(features)}-{classifier}")
    if run.checkpoints.is_dir() and any(run.checkpoints.iterdir()):
        raise ConfigError(
            f"--run_dir {str(run.root)!r} is a training run; choose another --run_dir"
        )
    dm = build_datamodule(section, source)
    same_data = _same_data(featurizer, section, allow_other_data)
    created = not run.root.exists()
    with run.lock():
        run.remove_stale_temp_files()
        try:
            metrics = _run(
                run,
                dm,
                featurizer,
                classifier,
                k,
                loss,
                alphas,
                max_iter,
                train_limit,
                seed,
                standardize,
                distance,
                reference,
            )
            if same_data is not None:
                metrics["same_data"] = same_data
        except BaseException:
            if created and [p.name for p in run.root.iterdir()] == [".lock"]:
                (run.root / ".lock").unlink()  # leave no empty run directory behind
                run.root.rmdir()
            raise
        config = {
            "command": "baseline",
            "run_or_config": run_or_config,
            "data": section,
            "features": features,
            "classifier": classifier,
            "k": k,
            "loss": loss,
            "distance": distance,
            "reference": reference,
            "alphas": alphas,
            "max_iter": max_iter,
            "train_limit": train_limit,
            "feature_options": {
                kk: list(v) if isinstance(v, tuple) else v for kk, v in vars(options).items()
            },
            "which": which,
            "allow_other_data": allow_other_data,
            "written": datetime.now().isoformat(timespec="seconds"),
        }
        run.write_text(run.root / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        text = json.dumps(_finite(metrics), indent=2, sort_keys=True) + "\n"
        run.write_text(run.metrics_json, text)
        build_report(run.root)
    chosen = ", ".join(f"{kk}={v:g}" if isinstance(v, float) else f"{kk}={v}"
                       for kk, v in metrics["chosen"].items())  # fmt: skip
    if "alpha_at_grid_edge" in metrics:
        chosen += f", alpha_at_grid_edge={metrics['alpha_at_grid_edge'] or 'null'}"
    print(
        f"baseline {features} + {classifier} ({chosen}) on {name}: test acc "
        f"{metrics['test/acc']:.4f} (mean class {metrics['test/acc_mean_class']:.4f}), val acc "
        f"{metrics['val/acc']:.4f}, {metrics['feature_dim']} features, "
        f"features {metrics['feature_time_s']:.1f} s, fit {metrics['fit_time_s']:.1f} s "
        f"-> {run.root}"
    )
    return 0


def _same_data(featurizer: Any, section: dict, allow_other_data: bool) -> bool | None:
    """Whether a ``run:PATH`` featurizer's run was trained on the baseline's data section (None
    for other features); a difference is refused unless ``allow_other_data``."""
    run = getattr(featurizer, "run", None)
    if run is None:
        return None
    saved = saved_data_section(run)
    diffs = ["the run's config.yaml has no data section"] if saved is None else []
    diffs = diffs or data_differences(saved, section)
    if diffs and not allow_other_data:
        raise ConfigError(
            f"--features {featurizer.name}: the run was trained on other data than the "
            f"baseline's ({'; '.join(diffs)}, run's vs baseline's); its training set may hold "
            "the baseline's test images: give the run's data or --allow_other_data"
        )
    return not diffs


def _run(
    run: RunDir,
    dm: Any,
    featurizer: Any,
    classifier: str,
    k: int,
    loss: str,
    alphas: list[float],
    max_iter: int,
    train_limit: int | None,
    seed: int,
    standardize: bool | None = None,
    distance: str = "bhattacharyya",
    reference: str = "class",
) -> dict[str, Any]:
    """Features, classifier, scores and plots; returns the metrics."""
    start = time.perf_counter()
    dm.setup()  # every split, as the analysis tools set a run's data up
    collate_fn = type(dm).collate_fn
    splits = {}
    for split in ("train", "val", "test"):
        ds = getattr(dm, f"{split}_set", None)
        splits[split] = split_inputs(ds, collate_fn) if ds is not None and len(ds) else None
    if splits["test"] is None:
        raise ConfigError(f"{type(dm).__name__}: the data has no test split")
    train, val = _val_split(splits["train"], splits["val"], seed)
    if train_limit is not None:
        train = subsample_split(train, train_limit, seed)
    if classifier == "linear" and len(torch.unique(train.labels)) < 2:
        raise DataError(
            "--classifier linear needs at least 2 classes in the training split, got "
            f"{len(torch.unique(train.labels))} ({len(train)} samples; raise --train_limit)"
        )
    test = splits["test"]
    names = list(getattr(dm, "class_names", None) or [])
    num_classes = max(len(names), int(torch.cat([train.labels, test.labels]).max()) + 1)
    names += [str(c) for c in range(len(names), num_classes)]  # labels the names do not cover
    data_time = time.perf_counter() - start

    featurizer.fit(train, run.root / "encoders")
    start = time.perf_counter()
    z = {
        s: featurizer.transform(x.inputs)
        for s, x in (("train", train), ("val", val), ("test", test))
    }
    feature_time = time.perf_counter() - start
    if standardize is None:
        standardize = featurizer.name not in ("bovw", "fisher")  # those come normalised
    fitted = fit_classifier(
        classifier, z["train"], train.labels, z["val"], val.labels, num_classes,
        k=k, loss=loss, alphas=alphas, seed=seed, max_iter=max_iter, standardize=standardize,
        distance=distance, reference=reference,
    )  # fmt: skip
    start = time.perf_counter()
    pred = fitted.model.predict(z["test"])
    predict_time = time.perf_counter() - start
    scores = classification_scores(pred, test.labels, num_classes)
    write_confusion_matrix(run, names, scores["confusion_matrix"])
    metrics: dict[str, Any] = {
        "test/acc": scores["acc"],
        "test/acc_mean_class": scores["acc_mean_class"],
        "test/acc_per_class": dict(zip(names, scores["acc_per_class"], strict=True)),
        "val/acc": fitted.val_acc,
        "chosen": fitted.chosen,
        "features": featurizer.name,
        "classifier": classifier,
        "feature_dim": int(z["train"].shape[1]),
        "train_size": len(train),
        "val_size": len(val),
        "test_size": len(test),
        "data_time_s": round(data_time, 3),
        "feature_time_s": round(feature_time, 3),
        "fit_time_s": round(featurizer.fit_time_s + fitted.fit_time_s, 3),
        "encoder_fit_time_s": round(featurizer.fit_time_s, 3),
        "classifier_fit_time_s": round(fitted.fit_time_s, 3),
        "test_predict_time_s": round(predict_time, 3),
    }
    hots = getattr(featurizer, "hots", None)
    if hots is not None:  # how many events the prototypes of each layer were fitted on
        metrics["hots_fitted_events"] = hots.fitted_events
    if classifier == "histogram":  # the paper's table: every distance on the same histograms
        per = {}
        for d in DISTANCES:
            m = HistogramClassifier(d, fitted.model.reference).fit(z["train"], train.labels)
            per[d] = float((m.predict(z["test"]) == test.labels).double().mean())
        metrics["test/acc_per_distance"] = per
    if classifier == "linear":
        metrics["val/acc_per_alpha"] = fitted.grid
        metrics["alpha_at_grid_edge"] = fitted.edge
        metrics["standardized"] = standardize
    if featurizer.cached is not None:
        metrics["encoder_cached"] = featurizer.cached
        metrics["encoder_file"] = str(featurizer.cache_file) if featurizer.cache_file else None
    if test.is_2d:  # the regions over the input plane, whatever the features
        shape = test.inputs.shape[1:]
        model = fitted.model
        plot_decision_function(
            lambda p: model.predict(featurizer.transform(torch.from_numpy(p).reshape(-1, *shape))),
            test.inputs.reshape(-1, 2).numpy(),
            test.labels.numpy(), names, run.plots / "decision_boundary.png",
            f"{classifier} on {featurizer.name}: test acc {scores['acc']:.3f}",
        )  # fmt: skip
    return metrics


def main(argv: Sequence[str]) -> int:
    """Run ``visrep baseline ...``; returns the exit code."""
    return run_command(Command(baseline), "visrep baseline", argv)
