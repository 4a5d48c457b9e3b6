"""Offline evaluation of generated samples, with visrep's own feature extractor (no downloads).

- FID (Heusel et al. 2017, the Frechet Inception Distance):
  ``|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` of Gaussians fitted to the features
  of real and generated images, and KID (Binkowski et al. 2018, the Kernel Inception
  Distance): the unbiased MMD^2 with the kernel ``(x.y / d + 1)^3``, averaged over random
  subsets; both torchmetrics', fed with the ``embed`` features of a visrep classification run
  trained on the same domain (Inception-v3 features are the original's; any fixed network
  that separates the domain's classes gives a consistent, not comparable, score). The floor to
  read them against is the real-vs-real value: ``H`` held-out real images scored against the
  rest ``R`` of the split, as a perfect generator's ``H`` samples would be
  (:func:`real_floor`, :func:`holdout_split`).
- Mode coverage of labelled domains: the classifier's class histogram of the samples against
  the data's (classes hit, KL); of 2-d mixtures: VEEGAN's measures (Srivastava et al. 2017,
  synthetic-data experiments: modes captured, share of high-quality samples).
- The nearest training images of each sample (Karras et al. 2018's appendix figures, seed 001
  "Progressive GANs: results"): samples that are copies of training images show up there.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from visrep.data.base import DataSpec
from visrep.errors import ConfigError, ShapeError
from visrep.runs import RunDir
from visrep.tasks.checkpoint import read_task_checkpoint
from visrep.utils.checks import check_images
from visrep.utils.embedding import nearest_indices

__all__ = [
    "FeatureExtractor",
    "GenerativeMetrics",
    "batched",
    "check_kid_subset",
    "class_histogram_metrics",
    "histogram_kl",
    "holdout_split",
    "load_feature_extractor",
    "mode_coverage_2d",
    "nearest_training_images",
    "real_floor",
]


def batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 256) -> Tensor:
    """``fn`` applied to ``x`` ``batch_size`` rows at a time, results concatenated (no grad)."""
    with torch.no_grad():
        return torch.cat([fn(chunk) for chunk in x.split(batch_size)])


class FeatureExtractor(nn.Module):
    """A trained visrep image classifier's representation, frozen, as a FID / KID feature map.

    ``forward`` is the classifier's ``embed`` (the pooled features its head reads), ``classify``
    its logits; both take images in [0, 1] with the run's channels and size (grey stays one
    channel: no RGB conversion). The classifier is held outside the module tree: it moves with
    ``.to()`` but its weights stay out of ``state_dict()`` and ``parameters()`` (a task that
    evaluates with it saves the run's path, not a copy), and ``train()`` never unfreezes it.

    Args:
        net: the classifier (``embed(x) -> (B, D)``, ``forward(x) -> logits``).
        in_chans, image_size: the input it was trained on.
        class_names: one name per class.
        source: where it came from (named in error messages).

    Attributes:
        num_features: ``D`` (torchmetrics reads it instead of probing).
        num_classes: ``len(class_names)``.
    """

    def __init__(
        self,
        net: nn.Module,
        in_chans: int,
        image_size: tuple[int, int],
        class_names: tuple[str, ...],
        source: str = "feature extractor",
    ) -> None:
        super().__init__()
        self._held = (net.eval().requires_grad_(False),)  # a tuple: not a registered child
        self.in_chans = int(in_chans)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.source = source
        p = next(net.parameters())
        with torch.no_grad():
            probe = net.embed(p.new_zeros(1, self.in_chans, *self.image_size))
        self.num_features = int(probe.shape[-1])
        super().train(False)

    @property
    def net(self) -> nn.Module:
        return self._held[0]

    def _apply(self, fn: Callable, recurse: bool = True) -> FeatureExtractor:
        self.net._apply(fn)  # .to(device), .half() ... reach the held classifier too
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Always frozen (eval mode): batch norm statistics never change."""
        return super().train(False)

    def _input(self, images: Tensor) -> Tensor:
        check_images(images)
        if tuple(images.shape[1:]) != (self.in_chans, *self.image_size):
            c, (h, w) = self.in_chans, self.image_size
            raise ShapeError(
                f"{self.source} reads images of shape (B, {c}, {h}, {w}), got {tuple(images.shape)}"
            )
        dtype = next(self.net.parameters()).dtype
        return images.to(dtype)

    def forward(self, images: Tensor) -> Tensor:
        """Features ``(B, num_features)`` (float32) of images ``(B, C, H, W)`` in [0, 1]."""
        with torch.no_grad():
            return self.net.embed(self._input(images)).float()

    def classify(self, images: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)`` of images in [0, 1]."""
        with torch.no_grad():
            return self.net(self._input(images)).float()


def _run_checkpoint(path: Path, option: str) -> Path:
    if path.is_dir():
        ckpt = RunDir(path).trained_ckpt()
        if ckpt is not None:
            return ckpt
        raise ConfigError(
            f"{option}: run directory {str(path)!r} has no checkpoints/best.ckpt or last.ckpt"
        )
    if not path.is_file():
        raise ConfigError(f"{option} {str(path)!r} is neither a visrep run directory nor a .ckpt")
    return path


def load_feature_extractor(
    path: str | Path,
    in_chans: int,
    image_size: tuple[int, int],
    option: str = "model.features",
) -> FeatureExtractor:
    """The classifier of a visrep classification run as a :class:`FeatureExtractor`.

    Args:
        path: a run directory (its ``best.ckpt``, else ``last.ckpt``) or a ``.ckpt`` file.
        in_chans, image_size: the generated images' channels and ``(H, W)``: the run must have
            been trained on exactly these.
        option: the option that named ``path`` (for the error messages).

    Raises:
        ConfigError: no such run or checkpoint, not an image classifier, or its input does not
            fit the generated images (one line naming ``option`` and both shapes).
        CheckpointError: the file is not a readable visrep checkpoint.
    """
    ckpt = _run_checkpoint(Path(path), option)
    saved = read_task_checkpoint(ckpt)
    cls = saved.task_class
    spec = DataSpec.from_dict(saved.data_spec) if saved.data_spec else None
    if (
        not (cls.class_scores and cls.embeds)
        or spec is None
        or not (spec.in_chans and spec.image_size)
    ):
        raise ConfigError(
            f"{option}: {str(ckpt)!r} is a {cls.__name__} run, not an image classifier (its net "
            "must embed images and give class scores, as ClassificationTask's does)"
        )
    want = (int(in_chans), *map(int, image_size))
    have = (spec.in_chans, *spec.image_size)
    if want != have:
        raise ConfigError(
            f"{option}: the classifier of {str(ckpt)!r} reads {'x'.join(map(str, have))} "
            f"(CxHxW) images but the generated images are {'x'.join(map(str, want))}; use a run "
            "trained on data of the same channels and size"
        )
    task = saved.build()
    return FeatureExtractor(
        task.net, spec.in_chans, spec.image_size, spec.class_names, f"{option} {str(ckpt)!r}"
    )


class _Precomputed(nn.Module):
    """The identity, as torchmetrics' ``feature`` when the features are computed beforehand."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def check_kid_subset(
    subset_size: int, n: int, what: str = "samples", option: str = "model.kid_subset_size"
) -> None:
    """Refuse a KID subset larger than the ``n`` samples it is drawn from (ConfigError)."""
    if subset_size > n:
        raise ConfigError(
            f"{option} {subset_size} is larger than the {n} {what}; use at most {n} (or more "
            "samples)"
        )


class GenerativeMetrics(nn.Module):
    """FID and KID of generated images against real ones, in a :class:`FeatureExtractor`'s space.

    Real features are kept across :meth:`reset` (computed once, e.g. for the validation
    split); each image is embedded once for both metrics. KID's random subsets come from a
    generator seeded with ``seed`` (torchmetrics draws from the global one: forked here, so
    the score is reproducible and training's random stream is not touched).

    Args:
        extractor: the feature map.
        kid_subsets: number of random subsets KID averages over.
        kid_subset_size: samples per subset (at most the real and the generated counts).
        seed: seed of KID's subsets.
        option: the option naming ``kid_subset_size`` in error messages.
        sync: under DDP, gather every process's features at :meth:`compute` (torchmetrics'
            ``sync_on_compute``); False when each process already holds the whole set.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        seed: int = 0,
        option: str = "model.kid_subset_size",
        sync: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(kid_subset_size, int) or kid_subset_size < 2:
            raise ConfigError(f"{option} must be an integer >= 2, got {kid_subset_size!r}")
        if not isinstance(kid_subsets, int) or kid_subsets < 1:
            raise ConfigError(f"{option.replace('_size', 's')} must be >= 1, got {kid_subsets!r}")
        self.extractor = extractor
        self.seed = seed
        self.option = option
        self.sync = sync
        feats = _Precomputed(extractor.num_features)
        self.fid = FrechetInceptionDistance(
            feature=feats, normalize=True, reset_real_features=False, sync_on_compute=sync
        )
        with warnings.catch_warnings():  # "will save all extracted features": it must
            warnings.filterwarnings("ignore", message=".*save all extracted features")
            self.kid = KernelInceptionDistance(
                feature=feats,
                subsets=kid_subsets,
                subset_size=kid_subset_size,
                normalize=True,
                reset_real_features=False,
                sync_on_compute=sync,
            )

    def _check(self, images: Tensor) -> None:
        check_images(images)
        lo, hi = images.min(), images.max()
        if not (lo >= 0 and hi <= 1):
            raise ShapeError(
                f"GenerativeMetrics: images must be in [0, 1] (map a tanh output with (g + 1) / 2), "
                f"got values in [{lo.item():.4g}, {hi.item():.4g}]"
            )

    def _update(self, images: Tensor, real: bool) -> None:
        self._check(images)
        f = self.extractor(images)
        self.fid.update(f, real=real)
        self.kid.update(f, real=real)

    def update_real(self, images: Tensor) -> None:
        """Add real images ``(B, C, H, W)`` in [0, 1]."""
        self._update(images, True)

    def update_fake(self, images: Tensor) -> None:
        """Add generated images ``(B, C, H, W)`` in [0, 1]."""
        self._update(images, False)

    @property
    def num_real(self) -> int:
        """Real images added in this process."""
        return int(self.fid.real_features_num_samples)

    @property
    def num_fake(self) -> int:
        """Generated images added in this process since the last reset."""
        return int(self.fid.fake_features_num_samples)

    def compute(self) -> dict[str, float]:
        """``{"fid", "kid", "kid_std"}`` of the generated images added since the last reset.

        Raises:
            ConfigError: fewer than 2 real or generated images, or ``kid_subset_size`` larger
                than either count.
        """
        size = self.kid.subset_size
        dist = torch.distributed
        if not (
            self.sync
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            # the counts are final (under DDP with sync, torchmetrics gathers them in compute)
            if self.num_real < 2 or self.num_fake < 2:
                raise ConfigError(
                    f"FID needs at least 2 real and 2 generated images, got {self.num_real} and "
                    f"{self.num_fake}"
                )
            check_kid_subset(size, self.num_real, "real images", self.option)
            check_kid_subset(size, self.num_fake, "generated images", self.option)
        fid = float(self.fid.compute())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            try:
                kid, kid_std = self.kid.compute()
            except ValueError as e:  # under DDP: fewer samples on all processes than a subset
                raise ConfigError(
                    f"{self.option} {size} is larger than the real or generated images gathered "
                    "from all processes; use a smaller value (or more samples)"
                ) from e
        return {"fid": fid, "kid": float(kid), "kid_std": float(kid_std)}

    def reset(self, real: bool = False) -> None:
        """Forget the generated images (and the real ones too with ``real``)."""
        for m in (self.fid, self.kid):
            m.reset_real_features = real
            m.reset()
            m.reset_real_features = False


def holdout_split(num: int, held: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A seeded random split of ``range(num)`` into ``held`` indices and the other ``num - held``
    (disjoint, each sorted): the held-out real images of :func:`real_floor` and the reference.

    >>> h, r = holdout_split(6, 2)
    >>> len(h), len(r), sorted(h.tolist() + r.tolist()) == list(range(6))
    (2, 4, True)
    """
    if not 0 <= held <= num:
        raise ConfigError(f"holdout_split: held must be in [0, {num}], got {held}")
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    return perm[:held].sort().values, perm[held:].sort().values


def real_floor(
    extractor: FeatureExtractor,
    images: Tensor,
    n: int | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    batch_size: int = 500,
) -> dict[str, float]:
    """FID / KID of ``n`` held-out real images against the rest: what a perfect generator scores
    when its ``n`` samples are compared with that rest.

    ``holdout_split(N, n, seed)`` holds out ``H`` (``n`` images); the other ``N - n`` are the
    reference ``R``; the floor is ``FID(R, H)`` (and KID). A generator is then scored as
    ``FID(R, G)`` with ``n`` samples ``G``: the same sizes, so the same small-sample bias
    (FID is biased upwards for small sets, Binkowski et al. 2018), which is what
    :class:`~visrep.tasks.GANTask`'s test does. Computed in this process (no DDP gathering).

    Args:
        extractor: the feature map.
        images: real images ``(N, C, H, W)`` in [0, 1].
        n: held-out images (default ``N // 2``); ``2 <= n <= N - 2``.
        kid_subsets, kid_subset_size, seed: as :class:`GenerativeMetrics` (``kid_subset_size``
            at most ``n``); ``seed`` also draws the held-out images.
        batch_size: images embedded at a time.

    Returns:
        ``{"fid", "kid", "kid_std"}``.
    """
    check_images(images)
    num = len(images)
    n = num // 2 if n is None else n
    if n < 2 or num - n < 2:
        raise ConfigError(
            f"real_floor: n = {n} held-out images and the {num - n} others must both be >= 2 "
            f"(N = {num})"
        )
    held, rest = holdout_split(num, n, seed)
    metrics = GenerativeMetrics(extractor, kid_subsets, kid_subset_size, seed, sync=False)
    metrics = metrics.to(images.device)
    for part, real in ((rest, True), (held, False)):
        for chunk in part.split(batch_size):
            metrics._update(images[chunk.to(images.device)], real)
    return metrics.compute()


def histogram_kl(p_counts: Tensor, q_counts: Tensor, eps: float = 1e-10) -> float:
    """``KL(p || q) = sum_k p_k (log(p_k + eps) - log(q_k + eps))`` of two histograms (counts or
    probabilities, each normalised here); classes with ``p_k = 0`` add nothing.

    >>> round(histogram_kl(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 3.0])), 4)
    0.1438
    """
    p = p_counts.double() / p_counts.sum()
    q = q_counts.double() / q_counts.sum()
    terms = p * ((p + eps).log() - (q + eps).log())
    return float(torch.where(p > 0, terms, 0.0).sum())


def class_histogram_metrics(
    pred: Tensor, data_hist: Tensor, eps: float = 1e-10
) -> dict[str, float]:
    """Mode coverage of a labelled domain: how many classes the samples hit, and how far their
    class histogram is from the data's (cf. VEEGAN's stacked-MNIST measures, Srivastava et al.
    2017: modes captured and ``KL(p_gen || p_data)``).

    Args:
        pred: the classifier's class of each generated sample ``(N,)``, or its scores
            ``(N, K)`` (argmax taken).
        data_hist: ``(K,)`` class counts (or frequencies) of the real data.
        eps: added to both distributions inside the log.

    Returns:
        ``{"classes_hit": number of classes with >= 1 sample, "class_kl": KL(p_gen || p_data)}``.

    >>> class_histogram_metrics(torch.tensor([0, 0, 1, 1]), torch.tensor([1.0, 1.0, 0.0]))
    {'classes_hit': 2.0, 'class_kl': 0.0}
    """
    if pred.dim() == 2:
        pred = pred.argmax(1)
    k = len(data_hist)
    if pred.dim() != 1 or len(pred) == 0 or data_hist.dim() != 1:
        raise ShapeError(
            f"class_histogram_metrics: pred (N,) or (N, K) with N > 0 and data_hist (K,) "
            f"expected, got {tuple(pred.shape)} and {tuple(data_hist.shape)}"
        )
    if pred.min() < 0 or pred.max() >= k:
        raise ShapeError(f"class_histogram_metrics: classes must be in [0, {k}), got {pred.max()}")
    counts = torch.bincount(pred.long().cpu(), minlength=k)
    return {
        "classes_hit": float((counts > 0).sum()),
        "class_kl": histogram_kl(counts, data_hist.cpu(), eps),
    }


def mode_coverage_2d(
    samples: Tensor,
    centers: Tensor,
    std: float,
    n_std: float = 3.0,
    min_share: float = 0.01,
    eps: float = 1e-10,
) -> dict[str, float]:
    """VEEGAN's mode-collapse measures on a mixture of isotropic Gaussians (Srivastava et al.
    2017, synthetic-data experiments).

    A sample is high quality when it lies within ``n_std * std`` of its nearest centre; a mode
    is captured when it is the nearest centre of at least one high-quality sample.

    Args:
        samples: generated points ``(N, D)``.
        centers: the mixture's centres ``(K, D)`` (equal weights).
        std: the per-mode standard deviation of the data.
        n_std: the high-quality radius in standard deviations (VEEGAN: 3 for 2-d data).
        min_share: a mode counts in ``modes_frequent`` when at least this share of all samples
            are high-quality samples of it (PacGAN, Lin et al. 2018, counts a mode as lost
            below 20 of 2,500 samples, 0.8%).
        eps: added inside the log of ``mode_kl``.

    Returns:
        ``modes`` (captured), ``modes_frequent``, ``high_quality`` (share of samples) and
        ``mode_kl``: ``KL(p_gen || uniform)`` of the nearest-mode histogram of all samples.

    >>> c = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    >>> mode_coverage_2d(torch.tensor([[0.1, 0.0], [9.0, 9.0]]), c, std=0.1)["high_quality"]
    0.5
    """
    if samples.dim() != 2 or centers.dim() != 2 or samples.shape[1] != centers.shape[1]:
        raise ShapeError(
            f"mode_coverage_2d: samples (N, D) and centers (K, D) expected, got "
            f"{tuple(samples.shape)} and {tuple(centers.shape)}"
        )
    if len(samples) == 0 or len(centers) == 0:
        raise ShapeError("mode_coverage_2d: need at least one sample and one centre")
    if not (std > 0 and n_std > 0 and math.isfinite(std * n_std)):
        raise ConfigError(f"mode_coverage_2d: std and n_std must be > 0, got {std} and {n_std}")
    x, c = samples.detach().double().cpu(), centers.double().cpu()
    dist, nearest = torch.cdist(x, c).min(1)
    good = dist <= n_std * std
    k = len(c)
    per_mode = torch.bincount(nearest[good], minlength=k)
    return {
        "modes": float((per_mode > 0).sum()),
        "modes_frequent": float((per_mode >= min_share * len(x)).sum()),
        "high_quality": float(good.double().mean()),
        "mode_kl": histogram_kl(torch.bincount(nearest, minlength=k), torch.ones(k), eps),
    }


def nearest_training_images(
    samples: Tensor,
    train: Tensor,
    features: Callable[[Tensor], Tensor] | None = None,
    k: int = 3,
    batch_size: int = 256,
) -> Tensor:
    """The ``k`` nearest training images of each sample, nearest first: in the feature space of
    ``features`` (e.g. a :class:`FeatureExtractor`) when given, else in pixels (L2).

    Karras et al. (2018) show generated images beside their nearest training images to show
    the generator does not copy them (seed 001, "Progressive GANs: results").

    Args:
        samples: generated images ``(N, C, H, W)``.
        train: training images ``(M, C, H, W)``.
        features: a map images -> ``(B, D)``.
        k: neighbours per sample (at most ``M``).
        batch_size: images embedded at a time.

    Returns:
        ``(N, k)`` int64 indices into ``train``.
    """
    check_images(samples, "samples")
    check_images(train, "train")
    if samples.shape[1:] != train.shape[1:]:
        raise ShapeError(
            f"nearest_training_images: samples {tuple(samples.shape)} and train "
            f"{tuple(train.shape)} must share (C, H, W)"
        )
    if features is None:
        q, bank = samples.flatten(1).float(), train.flatten(1).float()
    else:
        q, bank = batched(features, samples, batch_size), batched(features, train, batch_size)
    return nearest_indices(q, bank, k, "l2")
