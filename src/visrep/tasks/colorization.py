"""Image colourisation: the chroma ``ab`` (CIE Lab) of an image from its lightness ``L``.

Zhang, Isola and Efros, "Colorful Image Colorization", ECCV 2016 (seed 003, "Image
Colourization": "trained to reproduce colour of existing images after removing colour"). Any
registered segmentation model maps ``L`` (1 channel) to, per pixel, either

- ``regression``: ``ab / 110`` (2 channels), trained with L2 (Eq. 1) or smooth L1 (Huber, 1 Lab
  unit); or
- ``classification``: scores over the Q quantised ab bins (:func:`~visrep.losses.colorization.ab_gamut_bins`),
  trained with the class-rebalanced multinomial cross-entropy on soft-encoded targets (Eq. 2-4)
  and decoded by the annealed mean (Eq. 5).

Any image data module with RGB images serves (the samples' ``image``; labels are unused): the
classification family's (``ImageFolderDataModule`` on CIFAR-10 or DAVIS frames ...). When
fitting starts, one pass over the training split gives the empirical ab bin distribution (for
the rebalancing weights) and the mean ab of the training pixels, the ``mean-chroma`` baseline
every evaluation scores beside the model (``*_baseline`` metrics); both are buffers, so a
checkpoint carries them.

Metrics (val and test): ``mse_ab`` (mean squared ab error per pixel, Lab units),
``psnr_ab`` (per-image PSNR with peak 200, averaged over the images), ``psnr_rgb`` (per-image
PSNR of the colourised sRGB image, peak 1), each also for the baseline. ``val/psnr_ab`` picks
``best.ckpt``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric

from visrep.data.base import DataSpec
from visrep.data.samples import IMAGE
from visrep.errors import ConfigError
from visrep.losses.colorization import (
    AB_SCALE,
    ABQuantizer,
    bin_histogram,
    merge_lab,
    psnr,
    rebalance_weights,
    rebalanced_cross_entropy,
    split_lab,
)
from visrep.models.colorizer import Colorizer
from visrep.models.segmentation import SEGMENTERS, SegmenterFactory
from visrep.models.segmentation import unet as default_model
from visrep.plots.colorization import plot_colorizations
from visrep.runs import RunDir
from visrep.tasks.base import Task
from visrep.tasks.optim import OptimConfig

Batch = dict[str, Any]
_SAMPLES = 8  # test images in the picture grid


@dataclass(frozen=True)
class BinsConfig:
    """The quantised ab output space of the ``classification`` mode (Zhang et al., Sec. 2).

    Attributes:
        grid: bin side in ab units (paper: 10).
        neighbours: bins of the soft-encoded target per pixel (paper: 5).
        sigma: width of the soft-encoding Gaussian, ab units (paper: 5).
        rebalance: weight each pixel's loss by its colour's rarity (Eq. 3, 4).
        lam: ``lambda``, the uniform share of the rebalancing mixture (paper: 0.5).
        prior_sigma: width of the Gaussian smoothing the empirical distribution (paper: 5).
        temperature: annealed-mean ``T`` of the decoding (paper: 0.38).
    """

    grid: int = 10
    neighbours: int = 5
    sigma: float = 5.0
    rebalance: bool = True
    lam: float = 0.5
    prior_sigma: float = 5.0
    temperature: float = 0.38

    def __post_init__(self) -> None:
        checks = {
            "grid": (self.grid >= 1, ">= 1"),
            "neighbours": (self.neighbours >= 1, ">= 1"),
            "sigma": (self.sigma > 0, "> 0"),
            "lam": (0 < self.lam <= 1, "in (0, 1]"),
            "prior_sigma": (self.prior_sigma >= 0, ">= 0"),
            "temperature": (self.temperature >= 0, ">= 0"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise ConfigError(
                    f"--model.bins.{name} must be {expected}, got {getattr(self, name)}"
                )


class ColorizationTask(Task):
    """Trains a :class:`Colorizer` around a registered segmentation model (Zhang et al. 2016).

    Args:
        model: a registered segmentation model with its options (``--model.model unet
            --model.model.width 16``); built with 1 input channel (``L``) and 2 or Q outputs.
        mode: ``regression`` (ab values) or ``classification`` (ab bins, Zhang et al.).
        regression_loss: ``l2`` (Eq. 1) or ``smooth_l1`` (Huber with a 1 Lab-unit threshold).
        bins: the ab bins, soft-encoding, rebalancing and decoding of ``classification``.
        optim: optimiser and schedule.
    """

    monitor = ("val/psnr_ab", "max")
    predict_native_size = True
    families = ("classification",)  # any image data with RGB images; labels are not used
    input_key = IMAGE

    def __init__(
        self,
        model: SegmenterFactory = default_model,
        mode: Literal["regression", "classification"] = "classification",
        regression_loss: Literal["l2", "smooth_l1"] = "l2",
        bins: BinsConfig | None = None,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim)
        if mode not in ("regression", "classification"):
            raise ConfigError(f"model.mode must be regression or classification, got {mode!r}")
        if regression_loss not in ("l2", "smooth_l1"):
            raise ConfigError(
                f"model.regression_loss must be l2 or smooth_l1, got {regression_loss!r}"
            )
        self.bins = BinsConfig(**bins) if isinstance(bins, dict) else bins or BinsConfig()
        self.model_spec = SEGMENTERS.spec(model)
        self.save_hyperparameters()
        self.hparams["model"] = self.model_spec  # plain data, whatever form was given

    # -- model -----------------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        if spec.in_chans != 3:
            raise ConfigError(
                f"ColorizationTask needs RGB images (3 channels), but the data gives "
                f"{spec.in_chans}-channel images (set --data.channels 3)"
            )
        b = self.bins
        quantizer = None
        if self.hparams.mode == "classification":
            quantizer = ABQuantizer(b.grid, b.neighbours, b.sigma, b.temperature)
        outputs = quantizer.num_bins if quantizer is not None else 2
        self.net = Colorizer(SEGMENTERS.build(self.model_spec, 1, outputs), quantizer)
        # training-split statistics (see on_fit_start); persistent: a checkpoint carries them
        if quantizer is not None:
            self.register_buffer("ab_counts", torch.zeros(outputs, dtype=torch.float64))
            self.register_buffer("ab_weights", torch.ones(outputs))
        self.register_buffer("mean_ab", torch.zeros(2))
        self.register_buffer("stat_pixels", torch.zeros((), dtype=torch.float64))
        for stage in ("val", "test"):
            for name in _METRICS:
                for suffix in ("", "_baseline"):
                    setattr(self, f"{stage}_{name}{suffix}", MeanMetric())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    # -- training-split statistics ------------------------------------------------------------------
    def _train_loader(self) -> DataLoader | None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is None:
            return None
        ds = getattr(dm, "train_set", None)
        if ds is not None:  # every training image once, in order
            loader = getattr(dm, "loader", None)
            batch = getattr(loader, "eval_batch_size", None) or getattr(loader, "batch_size", 256)
            return DataLoader(ds, batch_size=batch, collate_fn=type(dm).collate_fn)
        return dm.train_dataloader() if hasattr(dm, "train_dataloader") else None

    @torch.no_grad()
    def fit_statistics(self, loader: DataLoader) -> None:
        """The mean ab of the training pixels and, for the bins, their empirical distribution
        and rebalancing weights (Eq. 4), from one pass over ``loader`` (un-augmented)."""
        total = torch.zeros(2, dtype=torch.float64, device=self.mean_ab.device)
        q = self.net.quantizer
        counts = torch.zeros(q.num_bins if q else 0, dtype=torch.float64, device=total.device)
        pixels = 0
        for batch in loader:
            x = batch[IMAGE].to(self.mean_ab.device)
            _, ab = split_lab(x.float())
            total += ab.double().sum((0, 2, 3))
            pixels += ab.shape[0] * ab.shape[2] * ab.shape[3]
            if self.net.quantizer is not None:
                counts += bin_histogram(ab, self.net.quantizer.centers)
        if pixels == 0:
            raise ConfigError("ColorizationTask: the training split has no images")
        self.mean_ab.copy_(total / pixels)
        self.stat_pixels.fill_(pixels)
        if self.net.quantizer is not None:
            self.ab_counts.copy_(counts)
            b = self.bins
            if b.rebalance:
                w = rebalance_weights(counts, self.net.quantizer.centers, b.lam, b.prior_sigma)
                self.ab_weights.copy_(w)

    def _ensure_statistics(self) -> None:
        if float(self.stat_pixels) > 0:
            return  # computed, or read from a checkpoint
        loader = self._train_loader()
        if loader is not None:
            self.fit_statistics(loader)

    def on_fit_start(self) -> None:
        self._ensure_statistics()

    def on_validation_start(self) -> None:
        self._ensure_statistics()

    def on_test_start(self) -> None:
        self._ensure_statistics()

    # -- steps -----------------------------------------------------------------------------------
    def _loss(self, out: Tensor, ab: Tensor) -> Tensor:
        if self.net.quantizer is None:
            target = ab / AB_SCALE
            if self.hparams.regression_loss == "l2":
                return F.mse_loss(out, target)
            return F.smooth_l1_loss(out, target, beta=1.0 / AB_SCALE)
        weights = self.ab_weights if self.bins.rebalance else None
        return rebalanced_cross_entropy(out, self.net.quantizer.encode_sparse(ab), weights)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x = batch[IMAGE]
        _, ab = split_lab(x)
        loss = self._loss(self.net(x), ab)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def _eval_step(self, batch: Batch, stage: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x = batch[IMAGE]
        L, ab = split_lab(x)
        out = self.net(x)
        n = len(x)
        self.log(f"{stage}/loss", self._loss(out, ab), sync_dist=True, batch_size=n)
        pred_ab = self.net.decode(out)
        base_ab = self.mean_ab.to(ab.dtype).view(1, 2, 1, 1).expand_as(ab)
        rgb = x.clamp(0, 1)
        for suffix, p_ab in (("", pred_ab), ("_baseline", base_ab)):
            p_rgb = merge_lab(L, p_ab)
            values = {
                "mse_ab": (p_ab - ab).square().flatten(1).mean(1),
                "psnr_ab": psnr(p_ab, ab).clamp_max(_PSNR_CAP),
                "psnr_rgb": psnr(p_rgb, rgb, 1.0).clamp_max(_PSNR_CAP),
            }
            for name, v in values.items():
                getattr(self, f"{stage}_{name}{suffix}").update(v)
        return L, pred_ab, ab, base_ab

    def _log_epoch(self, stage: str) -> None:
        for name in _METRICS:
            for suffix in ("", "_baseline"):
                metric = getattr(self, f"{stage}_{name}{suffix}")
                if metric.update_count:
                    self.log(f"{stage}/{name}{suffix}", metric.compute(), prog_bar=(
                        stage == "val" and name == "psnr_ab" and not suffix
                    ))  # fmt: skip
                metric.reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._samples: list[tuple[Tensor, ...]] = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        L, pred_ab, ab, base_ab = self._eval_step(batch, "test")
        batches = self.trainer.num_test_batches[0] if self._trainer is not None else 1
        batches = int(batches) if math.isfinite(batches) and batches > 0 else 1
        stride = max(1, batches // _SAMPLES)
        have = sum(len(s[0]) for s in self._samples)
        if have < _SAMPLES and batch_idx % stride == 0:
            k = min(_SAMPLES - have, max(1, math.ceil(_SAMPLES / batches)), len(L))
            L, zero = L[:k], torch.zeros_like(ab[:k])
            self._samples.append(
                tuple(merge_lab(L, a).cpu() for a in (zero, base_ab[:k], pred_ab[:k], ab[:k]))
            )

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        if self._samples:
            self._test_results = {
                "samples": tuple(torch.cat(t) for t in zip(*self._samples, strict=True))
            }

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor | list[Tensor]]:
        """Colourised ``rgb`` (uint8) and mean ``chroma`` of the images, at their own size; a
        batch of images of different sizes (a list) gives lists, one entry per image."""
        x = batch[IMAGE]
        if isinstance(x, list | tuple):
            outs = [self._colorize(im[None]) for im in x]
            return {"rgb": [o[0][0] for o in outs], "chroma": torch.cat([o[1] for o in outs])}
        rgb, chroma = self._colorize(x)
        return {"rgb": rgb, "chroma": chroma}

    def _colorize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ab = self.net.decode(self.net(x))
        rgb = merge_lab(self.net.lightness(x), ab)
        return (rgb * 255).round().to(torch.uint8), ab.norm(dim=1).mean((1, 2))

    # -- what the trainer calls ------------------------------------------------------------------
    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: ``plots/test_colorizations.png`` (grey input, mean-chroma baseline,
        prediction, truth) and the training split's mean ab in ``metrics.json``."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        self._test_results = None
        grey, base, pred, truth = results["samples"]
        plot_colorizations(grey, base, pred, truth, run.plots / "test_colorizations.png")
        return {"train/mean_ab": [round(float(v), 4) for v in self.mean_ab]}

    def write_prediction_files(
        self, run: RunDir, outputs: list[dict[str, Tensor]], names: list[str]
    ) -> list[str]:
        """The colourised image of each sample: ``predictions/<index>_<name>.png``."""
        images = [im.permute(1, 2, 0).cpu().numpy() for out in outputs for im in out["rgb"]]
        return [
            run.write_prediction_image(i, name, Image.fromarray(np.ascontiguousarray(img)))
            for i, (img, name) in enumerate(zip(images, names, strict=True))
        ]

    def predict_rows(self, outputs: list[dict[str, Tensor]]) -> list[dict[str, Any]]:
        """The mean predicted chroma ``|ab|`` of each image (the image itself is a file)."""
        return [{"mean_chroma": round(float(c), 4)} for out in outputs for c in out["chroma"].cpu()]


_METRICS = ("mse_ab", "psnr_ab", "psnr_rgb")
_PSNR_CAP = 100.0  # dB: an exactly right (e.g. grey) image would otherwise count as inf
