"""The features of ``visrep baseline``: pixels, polar coordinates, BoVW, Fisher vectors, a run's.

Seed 002's "representation matters" table compares one classifier on several representations
of the same images:

* ``pixels``: the flattened image in [0, 1];
* ``polar``: 2-D points as ``(rho, theta)`` (the rings example);
* ``bovw``: dense SIFT at 3 scales (:class:`~visrep.models.shallow.DenseSift`) -> a MiniBatch
  k-means codebook (:class:`~visrep.models.shallow.Codebook`, 1,000 words from up to 1 million
  descriptors, as the seed) -> hard or soft histograms, optionally a spatial pyramid;
* ``fisher``: dense SIFT -> PCA to 64 dimensions and a diagonal GMM (Perronnin et al. 2010,
  Sec. 4; :class:`~visrep.models.shallow.FisherEncoder`) -> improved Fisher vectors;
* ``hats`` (event data): HATS histograms of averaged time surfaces (Sironi et al. 2018,
  :func:`~visrep.events.representations.to_hats`) flattened, the input of the paper's linear SVM;
* ``hots`` (event data): HOTS (Lagorce et al. 2016, :class:`~visrep.events.hots.HOTS`): the
  last layer's prototype histogram per recording, prototypes learnt on the training split
  (classified by ``--classifier histogram`` as the paper, or by k-NN / linear);
* ``run:PATH``: a trained visrep run's representation ``net.embed`` (the pooled penultimate
  features of a classifier, an embedding, an autoencoder's code). The run must have been
  trained on the same data section as the baseline's (:func:`data_differences`): a source
  without a test split is carved by ``split.seed`` / fractions, so other options could put the
  baseline's test images in the run's training set.

A :class:`Featurizer` is fitted on the training split's inputs (the codebook / PCA + GMM are
learnt on a seeded sample of training images) and then maps any inputs to ``(N, D)`` features.
Fitted encoders are cached as ``.npz`` (no pickle) under a name that is a hash of their options
and of the images they were fitted on, so the same options on the same data reuse them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from visrep.analysis.baseline import EventInputs, SplitInputs, pixel_features, polar_features
from visrep.errors import ConfigError, ShapeError
from visrep.events.hots import HOTS
from visrep.events.representations.hats import to_hats
from visrep.models.shallow import Codebook, DenseSift, FisherEncoder
from visrep.runs import RunDir

__all__ = [
    "IGNORED_DATA_OPTIONS",
    "FeatureOptions",
    "Featurizer",
    "data_differences",
    "make_featurizer",
]


@dataclass(frozen=True)
class FeatureOptions:
    """Options of the fitted encoders (``bovw``, ``fisher``); see ``visrep baseline --help``.

    Attributes:
        step: dense SIFT grid spacing in pixels.
        bin_sizes: SIFT spatial bin width of each scale (the patch is ``4 * bin``): 3 scales.
        root_sift: RootSIFT descriptors.
        words: codebook size (seed 002: 1,000).
        assignment: ``hard`` or ``soft`` histograms.
        pyramid: spatial pyramid grids, e.g. ``(1, 2, 4)``; ``(1,)``: none.
        components: GMM components of the Fisher vectors.
        pca_dim: PCA dimension of the descriptors before the GMM (Perronnin et al.: 64).
        gmm_iter: EM iterations of the GMM.
        fit_descriptors: descriptors the codebook / GMM is fitted on at most (seed 002: 1
            million); the images they come from are a seeded sample of the training split.
        seed: seeds the sample, k-means, PCA and the GMM.
        batch_size: images per dense-SIFT + encoding batch (recordings per HATS / HOTS batch).
        hats_cell_size, hats_radius, hats_tau, hats_delta_t: HATS's ``K``, ``R``, ``tau`` (us)
            and ``delta_t`` (us); defaults those of the ``nmnist_hats`` config.
        hots_prototypes, hots_radius, hots_tau: HOTS's ``N_l``, ``R_l``, ``tau_l`` (us) per layer.
        hots_learning: ``online`` (the paper's rule) or ``kmeans``.
        hots_fit_events: events each HOTS layer is fitted on at most.
    """

    step: int = 4
    bin_sizes: tuple[int, ...] = (4, 6, 8)
    root_sift: bool = False
    words: int = 1000
    assignment: Literal["hard", "soft"] = "hard"
    pyramid: tuple[int, ...] = (1,)
    components: int = 64
    pca_dim: int = 64
    gmm_iter: int = 100
    fit_descriptors: int = 1_000_000
    seed: int = 0
    batch_size: int = 256
    hats_cell_size: int = 6
    hats_radius: int = 2
    hats_tau: float = 1e5
    hats_delta_t: int = 100_000
    hots_prototypes: tuple[int, ...] = (4, 8, 16)
    hots_radius: tuple[int, ...] = (2, 4, 8)
    hots_tau: tuple[float, ...] = (1e4, 1e5, 1e6)
    hots_learning: Literal["online", "kmeans"] = "online"
    hots_fit_events: int = 100_000

    def __post_init__(self) -> None:
        for name in ("step", "words", "components", "pca_dim", "gmm_iter", "fit_descriptors",
                     "batch_size"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not self.bin_sizes or min(self.bin_sizes) < 1:
            raise ConfigError(f"--bin_sizes must be pixel widths >= 1, got {list(self.bin_sizes)}")
        if not self.pyramid or min(self.pyramid) < 1:
            raise ConfigError(f"--pyramid must be grid sizes >= 1, got {list(self.pyramid)}")
        if self.assignment not in ("hard", "soft"):
            raise ConfigError(f"--assignment must be hard or soft, got {self.assignment!r}")


# the options each fitted encoder depends on (batch_size does not change a fit)
_SIFT = ("step", "bin_sizes", "root_sift", "fit_descriptors", "seed")
_BOVW = ("words", "assignment", "pyramid")
_FISHER = ("components", "pca_dim", "gmm_iter", "pyramid")


class Featurizer:
    """Maps inputs ``(N, ...)`` to features ``(N, D)``; ``fit`` first on the training split.

    Attributes:
        name: the ``--features`` value.
        fit_time_s: seconds spent fitting (0 when nothing is fitted or the cache was used).
        cached: True when the fitted encoder came from the cache, False when fitted now, None
            when there is nothing to fit.
        cache_file: the encoder's ``.npz`` (None when there is nothing to fit).
    """

    name = "pixels"

    def __init__(self) -> None:
        self.fit_time_s = 0.0
        self.cached: bool | None = None
        self.cache_file: Path | None = None

    def fit(self, train: SplitInputs, cache_dir: Path | None = None) -> Featurizer:
        return self

    def transform(self, inputs: Tensor) -> Tensor:
        if not isinstance(inputs, Tensor):
            raise ShapeError(f"--features {self.name} needs images; for event data: hats or hots")
        return pixel_features(inputs)


class PolarFeaturizer(Featurizer):
    """``(rho, theta)`` of 2-D points (:func:`~visrep.analysis.baseline.polar_features`)."""

    name = "polar"

    def transform(self, inputs: Tensor) -> Tensor:
        return polar_features(inputs)


class SiftFeaturizer(Featurizer):
    """Dense SIFT encoded by a codebook (``bovw``) or by Fisher vectors (``fisher``)."""

    def __init__(self, kind: Literal["bovw", "fisher"], options: FeatureOptions) -> None:
        super().__init__()
        self.name, self.options = kind, options
        self.sift = DenseSift(options.step, options.bin_sizes, options.root_sift)
        self.encoder: Codebook | FisherEncoder | None = None

    def _new_encoder(self) -> Codebook | FisherEncoder:
        o = self.options
        if self.name == "bovw":
            return Codebook(
                num_words=o.words,
                assignment=o.assignment,
                pyramid=o.pyramid,
                pyramid_weights="lazebnik" if len(o.pyramid) > 1 else "none",
                max_descriptors=o.fit_descriptors,
                seed=o.seed,
            )
        return FisherEncoder(
            num_components=o.components,
            pca_dim=o.pca_dim,
            pyramid=o.pyramid,
            max_descriptors=o.fit_descriptors,
            seed=o.seed,
            max_iter=o.gmm_iter,
        )

    def _check_images(self, inputs: Tensor) -> None:
        if inputs.dim() != 4 or inputs.shape[1] not in (1, 3):
            raise ShapeError(
                f"--features {self.name} needs grey or RGB images (N, 1|3, H, W), got samples "
                f"of shape {tuple(inputs.shape[1:])}"
            )

    def _fit_images(self, train: SplitInputs) -> Tensor:
        """The seeded sample of training images whose descriptors fit the encoder."""
        h, w = train.inputs.shape[-2:]
        per_image = len(self.sift.keypoints(h, w)[0])
        n = min(len(train), math.ceil(self.options.fit_descriptors / per_image))
        g = torch.Generator().manual_seed(self.options.seed)
        idx = torch.randperm(len(train), generator=g)[:n].sort().values
        return train.inputs[idx]

    def fingerprint(self, images: Tensor) -> str:
        """A hash of the encoder's options and of the images it is fitted on."""
        own = _BOVW if self.name == "bovw" else _FISHER
        opts = {k: v for k, v in asdict(self.options).items() if k in _SIFT + own}
        h = hashlib.sha256()
        h.update(json.dumps({"kind": self.name, **opts}, sort_keys=True).encode())
        h.update(str(tuple(images.shape)).encode())
        h.update(images.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def fit(self, train: SplitInputs, cache_dir: Path | None = None) -> SiftFeaturizer:
        self._check_images(train.inputs)
        images = self._fit_images(train)
        if cache_dir is not None:
            self.cache_file = Path(cache_dir) / f"{self.name}-{self.fingerprint(images)}.npz"
            if self.cache_file.is_file():
                load = Codebook.load if self.name == "bovw" else FisherEncoder.load
                self.encoder, self.cached = load(self.cache_file), True
                return self
        start = time.perf_counter()
        desc = torch.cat([self.sift(b)[0] for b in images.split(self.options.batch_size)])
        self.encoder = self._new_encoder().fit(desc)
        self.fit_time_s = time.perf_counter() - start
        self.cached = False
        if self.cache_file is not None:
            with tempfile.TemporaryDirectory() as tmp:
                saved = self.encoder.save(Path(tmp) / "encoder.npz")
                RunDir(self.cache_file.parent).write_bytes(self.cache_file, saved.read_bytes())
        return self

    def transform(self, inputs: Tensor) -> Tensor:
        if self.encoder is None:
            raise ConfigError(f"--features {self.name}: transform before fit")
        self._check_images(inputs)
        size = tuple(inputs.shape[-2:])
        out = []
        for b in inputs.split(self.options.batch_size):
            desc, pos = self.sift(b)
            out.append(self.encoder.encode(desc, pos, image_size=size).float())
        return torch.cat(out)


def _events(inputs: object, name: str) -> EventInputs:
    if not isinstance(inputs, EventInputs):
        raise ShapeError(f"--features {name} needs event data (an event data module)")
    return inputs


class HatsFeaturizer(Featurizer):
    """HATS (Sironi et al. 2018) of each recording, flattened: ``(N, 2 * cells * (2R + 1)^2)``."""

    name = "hats"

    def __init__(self, options: FeatureOptions) -> None:
        super().__init__()
        self.options = options

    def transform(self, inputs: Tensor) -> Tensor:
        o = self.options
        out = [
            to_hats(b, o.hats_cell_size, o.hats_radius, o.hats_tau, o.hats_delta_t).flatten(1)
            for b in _events(inputs, self.name).batches(o.batch_size)
        ]
        return torch.cat(out)


class HotsFeaturizer(Featurizer):
    """HOTS (Lagorce et al. 2016): prototypes fitted on the training recordings, then the last
    layer's prototype histogram (counts) of each recording."""

    name = "hots"

    def __init__(self, options: FeatureOptions) -> None:
        super().__init__()
        o = self.options = options
        self.hots = HOTS(
            o.hots_prototypes, o.hots_radius, o.hots_tau, o.hots_learning, o.hots_fit_events,
            o.seed,
        )  # fmt: skip

    def fit(self, train: SplitInputs, cache_dir: Path | None = None) -> HotsFeaturizer:
        streams = _events(train.inputs, self.name).streams
        start = time.perf_counter()
        self.hots.fit(EventInputs(streams).batches(len(streams))[0])
        self.fit_time_s = time.perf_counter() - start
        self.cached = False
        return self

    def transform(self, inputs: Tensor) -> Tensor:
        batches = _events(inputs, self.name).batches(self.options.batch_size)
        return torch.cat([self.hots(b) for b in batches])


class RunFeaturizer(Featurizer):
    """A trained visrep run's representation ``net.embed`` (nothing fitted here)."""

    def __init__(self, path: str, which: str = "best", device: str | torch.device = "cpu") -> None:
        from visrep.analysis.runs import load_run

        super().__init__()
        self.name = f"run:{path}"
        loaded = load_run(path, which, with_data=False)
        net = getattr(loaded.task, "net", None)
        if not getattr(loaded.task, "embeds", False) or not isinstance(net, torch.nn.Module):
            raise ConfigError(
                f"--features run:{path}: the run has no per-image representation (net.embed); "
                f"got {type(loaded.task).__name__}"
            )
        self.net, self.device = net.to(device).eval(), torch.device(device)
        self.spec, self.checkpoint = loaded.task.spec, loaded.checkpoint
        self.run = loaded.run

    def fit(self, train: SplitInputs, cache_dir: Path | None = None) -> RunFeaturizer:
        spec = self.spec
        if spec is not None and spec.in_chans and spec.image_size:
            want = (spec.in_chans, *spec.image_size)
            if tuple(train.inputs.shape[1:]) != want:
                raise ShapeError(
                    f"--features {self.name}: the run reads inputs {want}, the data gives "
                    f"{tuple(train.inputs.shape[1:])}"
                )
        return self

    @torch.inference_mode()
    def transform(self, inputs: Tensor) -> Tensor:
        from visrep.analysis.interpret import embed

        return embed(self.net, inputs, 256, self.device)[0]


#: data options that do not decide which images are in which split (batching, training-time
#: augmentation: the baseline reads every split without augmentation)
IGNORED_DATA_OPTIONS = ("loader", "augment")


def _normalized(section: dict[str, Any]) -> dict[str, Any]:
    """A checked data section with every default filled in (jsonargparse, nothing instantiated),
    tuples as lists, the options of :data:`IGNORED_DATA_OPTIONS` dropped."""
    import lightning as L
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    try:
        full = parser.parse_object({"data": section}).data.as_dict()
    except Exception:  # (unparsable: compare as written; building it reports why)
        full = dict(section)
    full = json.loads(json.dumps(full, default=str))
    module, _, name = str(full.get("class_path", "")).rpartition(".")
    if module == "visrep" or module.startswith("visrep."):  # a checked section: visrep's own
        cls = getattr(importlib.import_module(module), name, None)  # the canonical class path
        if isinstance(cls, type):
            full["class_path"] = f"{cls.__module__}.{cls.__qualname__}"
    args = full.get("init_args") or {}
    full["init_args"] = {k: v for k, v in args.items() if k not in IGNORED_DATA_OPTIONS}
    return full


def _diff(a: Any, b: Any, key: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            _diff(a.get(k), b.get(k), f"{key}.{k}" if key else str(k), out)
    elif a != b:
        out.append(f"{key}: {json.dumps(a)} vs {json.dumps(b)}")


def data_differences(run_section: dict[str, Any], section: dict[str, Any]) -> list[str]:
    """What differs between a run's saved data section and the baseline's, as ``key: run's vs
    baseline's`` items (empty: the same data). Defaults are filled in on both sides first, and
    :data:`IGNORED_DATA_OPTIONS` are not compared.

    >>> a = {"class_path": "visrep.data.RingsDataModule", "init_args": {"seed": 1}}
    >>> data_differences(a, {**a, "init_args": {"seed": 2, "loader": {"batch_size": 3}}})
    ['init_args.seed: 1 vs 2']
    """
    out: list[str] = []
    _diff(_normalized(run_section), _normalized(section), "", out)
    return out


def make_featurizer(
    features: str,
    options: FeatureOptions | None = None,
    which: str = "best",
    device: str | torch.device = "cpu",
) -> Featurizer:
    """The featurizer named by ``--features``: ``pixels``, ``polar``, ``bovw``, ``fisher``,
    ``hats``, ``hots`` or ``run:PATH`` (a run directory or a checkpoint)."""
    options = options or FeatureOptions()
    if features == "pixels":
        return Featurizer()
    if features == "polar":
        return PolarFeaturizer()
    if features in ("bovw", "fisher"):
        return SiftFeaturizer(features, options)
    if features == "hats":
        return HatsFeaturizer(options)
    if features == "hots":
        return HotsFeaturizer(options)
    if features.startswith("run:") and len(features) > 4:
        return RunFeaturizer(features[4:], which, device)
    raise ConfigError(
        f"--features must be pixels, bovw, fisher, polar, hats, hots or run:PATH, got {features!r}"
    )
