"""Self-supervised monocular depth with left-right consistency (Godard et al., CVPR 2017).

A :class:`~visrep.models.depth.DisparityNet` sees the LEFT view and predicts the left and right
disparities at four scales; the loss (:func:`~visrep.losses.depth.monodepth_loss`) compares each
view with the other warped by them, so training needs rectified pairs and no depth labels.

Disparity units: the network's outputs are fractions of the WORKING width (the data's
``image_size``); on a training crop of width ``w`` they are rescaled to fractions of ``w``
before warping (``d * W / w``), so a pixel disparity means the same on crops and whole views.

Metrics (validation and test, where a pair has ground truth): the finest left disparity is
upsampled (bilinear) to the ground truth's resolution and converted to its pixels; ``epe`` is
the mean ``|d - d_gt|`` over the known pixels (``inf`` = unknown) and ``bad2`` the fraction of
them off by more than ``bad_threshold`` (2) pixels, each averaged over the pairs. At test, the
classical baselines (OpenCV StereoBM / StereoSGBM, :func:`~visrep.models.depth.classical_disparity`)
run on the same working-size pair and are scored the same way (``epe_stereo_sgbm`` ...; their
invalid pixels filled from the left, their share of valid pixels as ``density_*``).
``val/loss`` (the self-supervised loss) selects ``best.ckpt``: no label chooses the model.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchmetrics import MeanMetric

from visrep.data.base import DataSpec
from visrep.data.samples import DISPARITY, IMAGE, META
from visrep.data.stereo import IMAGE_RIGHT, resize_disparity
from visrep.errors import ConfigError
from visrep.losses.depth import monodepth_loss
from visrep.models.depth import DisparityNet, MatcherConfig, classical_disparity
from visrep.models.interface import BackboneFactory
from visrep.models.registry import BACKBONES
from visrep.plots.depth import colorize_disparity, disparity_range, plot_disparities
from visrep.runs import RunDir
from visrep.tasks.base import Task
from visrep.tasks.optim import OptimConfig

__all__ = ["StereoDepthTask", "disparity_errors"]

Batch = dict[str, Any]
Baseline = Literal["stereo_bm", "stereo_sgbm"]
_SAMPLES = 6  # test pairs in the figure


def disparity_errors(
    pred: Tensor, target: Tensor, threshold: float = 2.0
) -> tuple[Tensor, Tensor, int]:
    """End-point error and bad-pixel rate of a disparity map over its known pixels.

    Args:
        pred: ``(..., H, W)`` predicted disparities in pixels.
        target: ``(..., H, W)`` ground truth in pixels, unknown pixels ``inf`` or NaN.
        threshold: a pixel is bad when ``|pred - target| > threshold``.

    Returns:
        ``(epe, bad, n)``: mean absolute error, fraction of bad pixels (NaN when no pixel is
        known) and the number of known pixels.

    >>> disparity_errors(torch.tensor([1.0, 5.0, 0.0]), torch.tensor([2.0, 2.0, float("inf")]))
    (tensor(2.), tensor(0.5000), 2)
    """
    known = torch.isfinite(target)
    n = int(known.sum())
    if n == 0:
        nan = pred.new_tensor(float("nan"))
        return nan, nan, 0
    err = (pred - target)[known].abs()
    return err.mean(), (err > threshold).float().mean(), n


class StereoDepthTask(Task):
    """Trains a :class:`~visrep.models.depth.DisparityNet` on rectified pairs, no labels.

    Args:
        encoder: any backbone with feature levels (``--model.encoder resnet18``); None: a
            stride-2 CNN with ``encoder_channels``.
        encoder_channels: the default encoder's stage channels (reductions 2, 4, ...).
        decoder_channels: one per decoder block, coarse to fine; None: halving from 256 to 16.
        scales: disparity scales of the loss (Godard: 4).
        max_disparity: the network's largest disparity, fraction of the width (Godard: 0.3).
        init_disparity: where the disparities start, fraction of the width (None: Godard's
            zero-bias start at ``max_disparity / 2``; see :class:`DisparityNet`).
        alpha: SSIM share of the appearance loss (0.85).
        smoothness_weight: ``a_ds``, divided by ``2^s`` at scale ``s`` (0.1).
        lr_weight: ``a_lr``, the left-right consistency weight (1).
        bad_threshold: pixels of error above which a pixel counts as bad (``bad2``: 2).
        baselines: the classical matchers scored at test (``stereo_bm``, ``stereo_sgbm``).
        matcher: their options.
        pretrained_path: encoder weights (a state dict or a visrep run / ``.ckpt``).
        optim: optimiser and schedule.
    """

    monitor = ("val/loss", "min")
    families = ("stereo",)
    input_key = IMAGE

    def __init__(
        self,
        encoder: BackboneFactory | None = None,
        encoder_channels: tuple[int, ...] = (32, 64, 128, 256, 256),
        decoder_channels: tuple[int, ...] | None = None,
        scales: int = 4,
        max_disparity: float = 0.3,
        init_disparity: float | None = None,
        alpha: float = 0.85,
        smoothness_weight: float = 0.1,
        lr_weight: float = 1.0,
        bad_threshold: float = 2.0,
        baselines: tuple[Baseline, ...] = ("stereo_bm", "stereo_sgbm"),
        matcher: MatcherConfig | None = None,
        pretrained_path: str | None = None,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim)
        if not 0 <= alpha <= 1:
            raise ConfigError(f"--model.alpha must be in [0, 1], got {alpha}")
        for name, v in (("smoothness_weight", smoothness_weight), ("lr_weight", lr_weight)):
            if v < 0:
                raise ConfigError(f"--model.{name} must be >= 0, got {v}")
        if bad_threshold <= 0:
            raise ConfigError(f"--model.bad_threshold must be > 0, got {bad_threshold}")
        unknown = sorted(set(baselines) - {"stereo_bm", "stereo_sgbm"})
        if unknown:
            raise ConfigError(
                f"--model.baselines must name stereo_bm and/or stereo_sgbm, got {unknown}"
            )
        self.matcher = MatcherConfig(**matcher) if isinstance(matcher, dict) else matcher
        self.matcher = self.matcher or MatcherConfig()
        self.encoder_spec = BACKBONES.spec(encoder) if encoder is not None else None
        self.bad_name = f"bad{bad_threshold:g}".replace(".", "_")
        self.save_hyperparameters()
        self.hparams["encoder"] = self.encoder_spec  # plain data, whatever form was given
        self.hparams["baselines"] = list(baselines)

    # -- model -----------------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        if spec.in_chans is None or spec.image_size is None:
            raise ConfigError("StereoDepthTask needs image data with channels and a working size")
        hp = self.hparams
        encoder = None
        if self.encoder_spec is not None:
            spec_ = self.encoder_spec

            def encoder(in_chans: int, num_classes: int, img_size: Any) -> Any:
                return BACKBONES.build(spec_, in_chans, num_classes, img_size)

        self.net = DisparityNet(
            spec.in_chans, encoder, tuple(hp.encoder_channels),
            None if hp.decoder_channels is None else tuple(hp.decoder_channels),
            hp.scales, hp.max_disparity, hp.init_disparity, hp.pretrained_path,
        )  # fmt: skip
        self.ref_width = int(spec.image_size[1])
        for stage in ("val", "test"):
            for name in self._metric_names(stage):
                setattr(self, f"{stage}_{name}", MeanMetric())

    def _metric_names(self, stage: str) -> list[str]:
        names = ["epe", self.bad_name]
        if stage == "test":
            for b in self.hparams.baselines:
                names += [f"epe_{b}", f"{self.bad_name}_{b}", f"density_{b}"]
        return names

    def disparities(self, x: Tensor) -> list[Tensor]:
        """The net's disparity pyramid as fractions of ``x``'s width (module docstring)."""
        return [d * (self.ref_width / x.shape[-1]) for d in self.net(x)]

    def forward(self, x: Tensor) -> Tensor:
        """Left and right disparities ``(B, 2, H, W)``, fractions of the width of ``x``."""
        return self.disparities(x)[0]

    # -- steps -----------------------------------------------------------------------------------
    def _loss(self, batch: Batch, stage: str) -> tuple[Tensor, list[Tensor]]:
        left, right = batch[IMAGE], batch[IMAGE_RIGHT]
        disps = self.disparities(left)
        hp = self.hparams
        loss, parts = monodepth_loss(
            disps, left, right, hp.alpha, hp.smoothness_weight, hp.lr_weight
        )
        n = len(left)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=on_step,
                 batch_size=n, sync_dist=not on_step)  # fmt: skip
        for k, v in parts.items():
            self.log(f"{stage}/{k}", v, on_step=False, on_epoch=True, batch_size=n,
                     sync_dist=not on_step)  # fmt: skip
        return loss, disps

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._loss(batch, "train")[0]

    def _score(self, stage: str, name: str, frac: Tensor, gt: Tensor) -> tuple[float, float]:
        """Update ``stage``'s ``name`` metrics with one pair: ``frac`` ``(1, 1, h, w)`` fraction
        of the width, ``gt`` ``(1, H0, W0)`` pixels; returns its (epe, bad) or NaNs."""
        h0, w0 = gt.shape[-2:]
        pred = F.interpolate(frac, size=(h0, w0), mode="bilinear", align_corners=False)[0] * w0
        epe, bad, n = disparity_errors(pred, gt.to(pred.dtype), self.hparams.bad_threshold)
        if n:
            suffix = "" if name == "net" else f"_{name}"
            getattr(self, f"{stage}_epe{suffix}").update(epe)
            getattr(self, f"{stage}_{self.bad_name}{suffix}").update(bad)
        return float(epe), float(bad)

    def _eval_step(self, batch: Batch, stage: str, batch_idx: int) -> None:
        _, disps = self._loss(batch, stage)
        left, right, gts = batch[IMAGE], batch[IMAGE_RIGHT], batch[DISPARITY]
        frac = disps[0][:, :1].detach()
        baselines = {}
        if stage == "test":
            for b in self.hparams.baselines:
                px, valid = classical_disparity(left, right, b, self.matcher)
                density = valid.to(frac.device).float().flatten(1).mean(1)
                getattr(self, f"test_density_{b}").update(density)
                baselines[b] = px.to(frac) / left.shape[-1]
        metas = batch.get(META) or [{} for _ in range(len(left))]
        for i in range(len(left)):
            row = {"net": self._score(stage, "net", frac[i : i + 1], gts[i])}
            for b, f in baselines.items():
                row[b] = self._score(stage, b, f[i : i + 1], gts[i])
            if stage == "test":
                self._record(metas[i].get("file", f"pair_{batch_idx}_{i}"), left[i], gts[i],
                             frac[i], baselines, i, row)  # fmt: skip

    def _record(self, name: str, left: Tensor, gt: Tensor, frac: Tensor,
                baselines: dict[str, Tensor], i: int, row: dict) -> None:  # fmt: skip
        """Keep a test pair's scores, and its maps (working size, pixels) for the figure."""
        w = left.shape[-1]
        scores: dict[str, float | None] = {}
        for k, (epe, bad) in row.items():
            sfx = "" if k == "net" else f"_{k}"
            scores[f"epe{sfx}"] = round(epe, 4) if math.isfinite(epe) else None
            scores[f"{self.bad_name}{sfx}"] = round(bad, 4) if math.isfinite(bad) else None
        self._rows[name] = scores
        if len(self._samples) < _SAMPLES:
            maps = {"ground truth": resize_disparity(gt, tuple(left.shape[-2:]))[0].cpu()}
            maps["network"] = (frac[0] * w).cpu()
            for b, f in baselines.items():
                maps[b] = (f[i, 0] * w).cpu()
            self._samples.append((name, left.cpu(), maps, row))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val", batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._samples: list[tuple[str, Tensor, dict[str, Tensor], dict]] = []
        self._rows: dict[str, dict[str, float]] = {}

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test", batch_idx)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        self._test_results = {"samples": self._samples, "rows": self._rows}

    def _log_epoch(self, stage: str) -> None:
        for name in self._metric_names(stage):
            metric = getattr(self, f"{stage}_{name}")
            if metric.update_count:
                self.log(f"{stage}/{name}", metric.compute(), prog_bar=name == "epe")
            metric.reset()

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """The left disparity in pixels of the (working-size) input, ``(B, 1, H, W)``."""
        x = batch[IMAGE] if isinstance(batch, dict) else batch
        px = self.forward(x)[:, :1] * x.shape[-1]
        return {"disparity": px, "mean_disparity_px": px.flatten(1).mean(1)}

    # -- what the trainer calls ------------------------------------------------------------------
    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: ``plots/test_disparities.png`` (left view, ground truth, network,
        baselines, one colour scale per pair) and the per-pair errors in ``metrics.json``."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        self._test_results = None
        samples = results["samples"]
        if samples:
            titles = list(samples[0][2])
            columns = {t: [s[2][t].numpy() for s in samples] for t in titles}
            captions = {t: [_caption(s[3].get(_KEY.get(t, t))) for s in samples] for t in titles}
            plot_disparities([s[1] for s in samples], columns, [s[0] for s in samples],
                             run.plots / "test_disparities.png", captions)  # fmt: skip
        return {"test/per_pair": results["rows"]}

    def write_prediction_files(
        self, run: RunDir, outputs: list[dict[str, Tensor]], names: list[str]
    ) -> list[str]:
        """Each predicted left disparity as a coloured PNG (``magma``; 1-99th percentiles)."""
        maps = [d[0].float().cpu().numpy() for out in outputs for d in out["disparity"]]
        return [
            run.write_prediction_image(i, name, Image.fromarray(colorize_disparity(
                m, *disparity_range(m))))
            for i, (m, name) in enumerate(zip(maps, names, strict=True))
        ]  # fmt: skip

    def predict_rows(self, outputs: list[dict[str, Tensor]]) -> list[dict[str, Any]]:
        """The mean predicted disparity (pixels of the input) of each image."""
        return [
            {"mean_disparity_px": round(float(v), 4)}
            for out in outputs
            for v in out["mean_disparity_px"].cpu()
        ]


_KEY = {"network": "net"}  # figure column -> score row key


def _caption(scores: tuple[float, float] | None) -> str:
    if scores is None or not math.isfinite(scores[0]):
        return ""
    return f"EPE {scores[0]:.2f} px, bad {100 * scores[1]:.1f}%"
