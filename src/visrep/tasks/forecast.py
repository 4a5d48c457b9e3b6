"""Video frame prediction (seed 004: ConvLSTM, Shi et al. 2015): given ``T_in`` frames, forecast
the next ``T_out``; scored per predicted step against the copy-last-frame baseline.

Metrics follow OpenSTL's code (Tan et al. 2023, ``openstl/core/metrics.py``, whose Moving-MNIST
tables the README quotes): ``mse`` and ``mae`` are per frame, summed over the pixels of a frame
with values in [0, 1] and averaged over frames and sequences; ``mse_pixel`` is the plain
per-pixel mean; ``psnr`` is ``-10 log10(per-pixel MSE)`` of each frame (data range 1),
averaged. ``ssim`` is scikit-image's ``structural_similarity`` (7 x 7 uniform window, sample
covariance, the mean over the window positions inside the frame, channels averaged) with data
range 1; ``ssim_openstl`` is the same with data range 2, which is what OpenSTL's call (float
frames, no ``data_range``) got from scikit-image before 0.20 guessed the range of a float image
as ``[-1, 1]``: it is the number to set beside OpenSTL's published SSIM.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from visrep.data.base import DataSpec
from visrep.data.samples import FUTURE, VIDEO
from visrep.errors import ConfigError, DataError
from visrep.models.video.forecast import FORECAST_NETS, ForecastNetFactory, convlstm_forecaster
from visrep.plots.video import plot_forecast, plot_per_step, save_gif
from visrep.runs import RunDir
from visrep.tasks.base import Task
from visrep.tasks.optim import OptimConfig

__all__ = [
    "FORECAST_METRICS",
    "FramePredictionTask",
    "PerStepMean",
    "frame_errors",
    "ssim_frames",
]

FORECAST_METRICS = ("mse", "mae", "mse_pixel", "psnr", "ssim", "ssim_openstl")
FORECAST_EXAMPLES = 4  # test sequences drawn in the report
PSNR_FLOOR = 1e-10  # per-pixel MSE floor: a perfect frame scores 100 dB, not infinity
SSIM_WINDOW = 7  # scikit-image's default window (uniform)


def ssim_frames(pred: Tensor, truth: Tensor, data_range: float | Sequence[float] = 1.0) -> Tensor:
    """SSIM of each frame as scikit-image's ``structural_similarity`` computes it with its
    defaults (Wang et al. 2004 eq. 13 with ``K1 = 0.01``, ``K2 = 0.03``; a 7 x 7 uniform window,
    sample (co)variances, the mean over the window positions inside the frame; channels
    averaged), vectorised over frames.

    Args:
        pred, truth: ``(N, C, H, W)`` with ``H, W >= 7``.
        data_range: the value range ``L`` of the images (1 for [0, 1]); several ranges share
            one pass over the window moments.

    Returns:
        ``(N,)`` float64, or ``(R, N)`` for ``R`` data ranges.

    >>> x = torch.rand(2, 1, 9, 9, generator=torch.Generator().manual_seed(0))
    >>> ssim_frames(x, x).tolist()
    [1.0, 1.0]
    """
    if pred.shape != truth.shape or pred.dim() != 4 or min(pred.shape[-2:]) < SSIM_WINDOW:
        raise DataError(
            f"SSIM needs two equal (N, C, H, W) shapes with H, W >= {SSIM_WINDOW}, got "
            f"{tuple(pred.shape)} and {tuple(truth.shape)}"
        )
    n, c = pred.shape[:2]
    x = pred.double().flatten(0, 1)[:, None]
    y = truth.double().flatten(0, 1)[:, None]
    # one pooling pass over the five moment maps; "valid" windows are scikit-image's crop
    m = F.avg_pool2d(torch.cat([x, y, x * x, y * y, x * y], 1), SSIM_WINDOW, stride=1)
    ux, uy, uxx, uyy, uxy = m.unbind(1)
    cov = SSIM_WINDOW**2 / (SSIM_WINDOW**2 - 1)  # sample covariance
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    out = []
    for r in [data_range] if isinstance(data_range, int | float) else data_range:
        c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        out.append(s.mean((-2, -1)).view(n, c).mean(1))
    return out[0] if isinstance(data_range, int | float) else torch.stack(out)


def frame_errors(pred: Tensor, truth: Tensor) -> dict[str, Tensor]:
    """Per-frame errors of a forecast, each ``(B, T)``: the :data:`FORECAST_METRICS`.

    Args:
        pred, truth: ``(B, T, C, H, W)`` in [0, 1].

    >>> t = torch.zeros(1, 2, 1, 16, 16)
    >>> e = frame_errors(t + 0.5, t)
    >>> e["mse"].tolist(), e["mse_pixel"].tolist(), [round(v, 4) for v in e["psnr"][0].tolist()]
    ([[64.0, 64.0]], [[0.25, 0.25]], [6.0206, 6.0206])
    """
    if pred.shape != truth.shape or pred.dim() != 5:
        raise DataError(
            f"forecast {tuple(pred.shape)} and truth {tuple(truth.shape)}: expected two equal "
            "(B, T, C, H, W) shapes"
        )
    p, t = pred.float(), truth.float()
    sq, ab = (p - t).square().flatten(2), (p - t).abs().flatten(2)
    mse_pixel = sq.mean(-1)
    # OpenSTL clips the forecast; data ranges 1 and 2 (ssim, ssim_openstl) from one pass
    ssim = ssim_frames(p.clamp(0, 1).flatten(0, 1), t.flatten(0, 1), data_range=(1.0, 2.0))
    return {
        "mse": sq.sum(-1),
        "mae": ab.sum(-1),
        "mse_pixel": mse_pixel,
        "psnr": -10 * torch.log10(mse_pixel.clamp_min(PSNR_FLOOR)),
        "ssim": ssim[0].float().view(p.shape[:2]),
        "ssim_openstl": ssim[1].float().view(p.shape[:2]),
    }


class PerStepMean(Metric):
    """The mean of a ``(B, T)`` quantity over sequences, kept per step ``(T,)`` (summed over
    processes under DDP)."""

    full_state_update = False

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.add_state("total", torch.zeros(steps, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: Tensor) -> None:
        self.total += values.double().sum(0)
        self.count += values.shape[0]

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


class FramePredictionTask(Task):
    """Trains a forecasting network to predict the ``future`` frames of a clip from its
    ``video`` frames.

    Args:
        net: a registered forecasting network with its options (``convlstm_forecaster``:
            ``--model.net.hidden [64, 64]``, ``--model.net.patch 4``). The data decides
            channels, frame size and the number of frames to predict.
        loss: ``mse`` (per-pixel mean), ``bce`` (Shi et al. 2015 on Moving MNIST: pixels as
            Bernoulli probabilities) or ``l1_mse`` (their sum, as several OpenSTL methods).
        optim: optimiser and schedule.
    """

    monitor = ("val/mse", "min")
    families = ("forecast",)
    input_key = VIDEO  # the batch entry the model reads (the frames seen)

    def __init__(
        self,
        net: ForecastNetFactory = convlstm_forecaster,
        loss: Literal["mse", "bce", "l1_mse"] = "mse",
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim)
        if loss not in ("mse", "bce", "l1_mse"):
            raise ConfigError(f"model.loss must be mse, bce or l1_mse, got {loss!r}")
        self.net_spec = FORECAST_NETS.spec(net)
        self.save_hyperparameters()
        self.hparams["net"] = self.net_spec

    def build(self, spec: DataSpec) -> None:
        if not spec.in_chans or not spec.image_size or not spec.future_frames:
            raise ConfigError(
                "FramePredictionTask needs the data's channels, frame size and future frames"
            )
        if min(spec.image_size) < SSIM_WINDOW:
            raise ConfigError(
                f"FramePredictionTask scores SSIM on {SSIM_WINDOW}x{SSIM_WINDOW} windows: frames "
                f"must be at least that large, got {tuple(spec.image_size)} (data.image_size)"
            )
        self.net = FORECAST_NETS.build(
            self.net_spec, spec.in_chans, spec.image_size, spec.future_frames
        )
        steps = spec.future_frames
        self.test_model = torch.nn.ModuleDict({m: PerStepMean(steps) for m in FORECAST_METRICS})
        self.test_copy = torch.nn.ModuleDict({m: PerStepMean(steps) for m in FORECAST_METRICS})

    def forward(self, video: Tensor) -> Tensor:
        return self.net(video)

    def _forecast(self, video: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
        """The forecast in [0, 1] and its loss against ``truth``."""
        logits = self.net.forward_logits(video)
        pred = torch.sigmoid(logits)
        kind = self.hparams.loss
        if kind == "bce":  # on the logits: exact and stable where the sigmoid saturates
            return pred, F.binary_cross_entropy_with_logits(logits.float(), truth.float())
        mse = F.mse_loss(pred.float(), truth.float())
        return pred, mse if kind == "mse" else mse + F.l1_loss(pred.float(), truth.float())

    def _inputs(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        if VIDEO not in batch or FUTURE not in batch:
            raise DataError(f"forecasting batches need 'video' and 'future', got {sorted(batch)}")
        return batch[VIDEO], batch[FUTURE]

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        video, future = self._inputs(batch)
        _, loss = self._forecast(video, future)
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(video)
        )
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        video, future = self._inputs(batch)
        pred, loss = self._forecast(video, future)
        n = len(video)
        self.log("val/loss", loss, sync_dist=True, batch_size=n)
        mse = (pred.float() - future.float()).square().flatten(2).sum(-1).mean()
        self.log("val/mse", mse, sync_dist=True, prog_bar=True, batch_size=n)

    def on_test_epoch_start(self) -> None:
        self._examples: list[tuple[Tensor, Tensor, Tensor]] = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        video, future = self._inputs(batch)
        pred, loss = self._forecast(video, future)
        self.log("test/loss", loss, sync_dist=True, batch_size=len(video))
        copy = video[:, -1:].expand_as(future)  # the copy-last-frame baseline
        for metrics, guess in ((self.test_model, pred), (self.test_copy, copy)):
            for name, values in frame_errors(guess, future).items():
                metrics[name].update(values)
        have = sum(len(e[0]) for e in self._examples)
        if have < FORECAST_EXAMPLES:
            k = FORECAST_EXAMPLES - have
            self._examples.append((video[:k].cpu(), future[:k].cpu(), pred[:k].float().cpu()))

    def on_test_epoch_end(self) -> None:
        per_step = {}
        for prefix, metrics in (("test", self.test_model), ("test/copy_last", self.test_copy)):
            for name, metric in metrics.items():
                steps = metric.compute()
                per_step[f"{prefix}/{name}"] = steps
                self.log(f"{prefix}/{name}", steps.mean().float())
                metric.reset()
        self._test_results = {"per_step": per_step, "examples": self._examples}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """The forecast of each sequence and, when the batch holds its true future, its MSE."""
        if VIDEO not in batch:
            raise DataError(f"forecasting needs 'video' frames, got {sorted(batch)}")
        pred = self.net(batch[VIDEO]).float()
        out = {"forecast": pred.cpu()}
        if FUTURE in batch:
            out["mse"] = frame_errors(pred, batch[FUTURE])["mse"].mean(1).cpu()
        return out

    # -- what the trainer calls ------------------------------------------------------------------
    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: forecast vs truth strips (``plots/forecast.png``), per-step MSE and SSIM
        against copy-last-frame (``plots/per_step_mse.png``, ``plots/per_step_ssim.png``), the
        first test sequence as a GIF (``predictions/forecast.gif``: truth left, forecast right),
        and every metric per step in ``metrics.json`` (``test/mse_per_step`` ...)."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        self._test_results = None
        per_step, examples = results["per_step"], results["examples"]
        video, future, pred = (torch.cat(t) for t in zip(*examples, strict=True))
        plot_forecast(video, future, pred, run.plots / "forecast.png")
        for name, label in (("mse", "MSE per frame (sum over pixels)"), ("ssim", "SSIM")):
            plot_per_step(
                {
                    "model": per_step[f"test/{name}"].tolist(),
                    "copy last frame": per_step[f"test/copy_last/{name}"].tolist(),
                },
                label,
                run.plots / f"per_step_{name}.png",
            )
        gif = torch.cat([torch.cat([video[0], future[0]]), torch.cat([video[0], pred[0]])], dim=-1)
        run.predictions.mkdir(parents=True, exist_ok=True)
        save_gif(gif.clamp(0, 1), run.predictions / "forecast.gif")
        return {f"{k}_per_step": [round(float(v), 6) for v in s] for k, s in per_step.items()}

    def write_prediction_files(
        self, run: RunDir, outputs: list[dict[str, Tensor]], names: list[str]
    ) -> list[str]:
        """Per sequence, ``predictions/forecast_<index>.npy``: its forecast ``(T_out, C, H, W)``
        as float16 in [0, 1]."""
        paths = []
        for i, pred in enumerate(p for out in outputs for p in out["forecast"]):
            rel = Path("predictions") / f"forecast_{i:05d}.npy"
            buf = io.BytesIO()
            np.save(buf, pred.numpy().astype(np.float16))
            run.write_bytes(run.root / rel, buf.getvalue())
            paths.append(str(rel))
        return paths

    def predict_rows(self, outputs: list[dict[str, Tensor]]) -> list[dict[str, Any]]:
        """One row per sequence: the frames forecast and, with a true future, the MSE per frame
        (sum over pixels)."""
        rows = []
        for out in outputs:
            mse = out.get("mse")
            for i, pred in enumerate(out["forecast"]):
                row: dict[str, Any] = {"frames": len(pred)}
                if mse is not None:
                    row["mse"] = round(float(mse[i]), 6)
                rows.append(row)
        return rows
