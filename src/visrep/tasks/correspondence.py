"""Learning to find good correspondences (Yi et al. 2018, CVPR; seed 001, "Application to
outlier detection"): a context-normalisation network weighs putative matches, trained with the
class-balanced classification loss plus the geometry loss through the weighted eight-point
algorithm (essential matrices) or the weighted DLT (homographies).

Training logs ``{train,val}/loss``, the loss parts and the inlier precision / recall / F1 of
the network's decision ``w > 0`` (``logit > 0``, as the authors evaluate), mean over pairs;
``val/f1`` selects ``best.ckpt``.

The test compares, on the SAME putative matches of every test pair:

* ``learned``: the matches with ``w > 0``;
* ``learned_dlt`` (``learned_8pt`` for essential data): the geometry from the weighted DLT /
  eight-point algorithm on the network's weights, no RANSAC (the paper's differentiable
  estimate, used at test time);
* ``learned_ransac``: OpenCV RANSAC on the kept matches ("ours + RANSAC" of the paper);
* ``ransac``: OpenCV RANSAC on all putative matches (``cv2.findHomography`` /
  ``cv2.findEssentialMat``), the baseline.

The essential-matrix branch (data whose spec names ``essential``) is reachable from Python
only: no shipped DataModule option or config yields essential pairs (the calibrated stereo
pairs of :mod:`visrep.data.correspondence.stereo` are library API for evaluation); the CLI runs
the homography branch.

Metrics (``metrics.json``): ``test/<method>_{precision,recall,f1}`` of the inliers each method
keeps; homographies: ``test/<method>_corner_error_px_median`` (the mean distance of image 1's
four corners mapped by the estimate and by the truth) and ``test/<method>_acc@{3,5,10}px``
(share of pairs under), essential matrices: the pose error ``max(rotation, translation angle)``
(degrees; translation sign-invariant, as Yi et al.) against the pair's true pose (the ``pose``
sample key, ``[R | t]``) median and ``acc@{5,10,20}deg``; a pair without a known pose (no
``pose`` key or NaN) gets a NaN error, is left out of the medians and shares, and is counted in
``test/pairs_without_true_pose``;
``test/<method>_failed`` (pairs without an estimate, counted as over every threshold); and
``test/<method>_ms_per_pair`` (wall time; the network's time is its batch's divided by the
batch size: ``--data.loader.eval_batch_size 1`` times pairs alone). ``test_pairs.csv`` holds
every pair's numbers, ``plots/test_matches.png`` a few pairs' matches coloured by the decision.
"""

from __future__ import annotations

import csv
import io
import math
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from visrep.data.base import DataSpec
from visrep.data.correspondence.pairs import (
    ESSENTIAL,
    HOMOGRAPHY,
    INLIERS,
    INTRINSICS,
    MATCH_MASK,
    MATCHES,
    POSE,
)
from visrep.data.samples import META
from visrep.errors import ConfigError
from visrep.losses.correspondence import CorrespondenceLoss, estimate_geometry
from visrep.models.correspondence.evaluation import (
    inlier_scores,
    ransac_essential,
    ransac_homography,
)
from visrep.models.correspondence.geometry import (
    corner_error,
    recover_pose,
    rotation_error_deg,
    translation_error_deg,
)
from visrep.models.correspondence.network import CorrespondenceNet, inlier_weights
from visrep.plots.correspondence import MatchView, plot_matches
from visrep.runs import RunDir
from visrep.tasks.base import Task
from visrep.tasks.optim import OptimConfig

__all__ = ["CorrespondenceTask"]

Batch = dict[str, Any]
THRESHOLDS = {HOMOGRAPHY: (3.0, 5.0, 10.0), ESSENTIAL: (5.0, 10.0, 20.0)}
UNIT = {HOMOGRAPHY: "px", ESSENTIAL: "deg"}
ERROR = {HOMOGRAPHY: "corner_error_px", ESSENTIAL: "pose_error_deg"}


class CorrespondenceTask(Task):
    """Trains Yi et al.'s :class:`~visrep.models.correspondence.CorrespondenceNet` on pairs with
    known geometry (``family`` ``correspondence``; the data's geometry key, ``homography`` or
    ``essential``, picks the DLT or the eight-point algorithm).

    Args:
        depth, width: residual blocks and channels (12 and 128 in the paper).
        alpha, beta: weights of the classification and geometry losses (1 and 0.1, the paper's).
        geometry_after_steps: optimiser steps trained on the classification loss alone before
            the geometry loss counts (20,000 in the paper).
        squared: squared norms in the geometry loss (the authors' code).
        optim: optimiser and schedule (the paper: Adam, 1e-3).
        ransac_threshold: the RANSAC inlier threshold in pixels (essential data: divided by
            the mean focal length of image 1).
        ransac_confidence, ransac_iterations: OpenCV's ``confidence`` and ``maxIters``.
        plot_pairs: test pairs drawn in ``plots/test_matches.png``: the first pair of each of
            the first ``plot_pairs`` sources (``<source>:`` of the pair names), plus any real
            OpenCV sample pair.
    """

    monitor = ("val/f1", "max")
    families = ("correspondence",)
    input_key = MATCHES

    def __init__(
        self,
        depth: int = 12,
        width: int = 128,
        alpha: float = 1.0,
        beta: float = 0.1,
        geometry_after_steps: int = 20_000,
        squared: bool = True,
        optim: OptimConfig | None = None,
        ransac_threshold: float = 3.0,
        ransac_confidence: float = 0.999,
        ransac_iterations: int = 2000,
        plot_pairs: int = 4,
    ) -> None:
        super().__init__(optim)
        checks = {
            "depth": (depth, depth >= 0, ">= 0"),
            "width": (width, width >= 1, ">= 1"),
            "ransac_threshold": (ransac_threshold, ransac_threshold > 0, "> 0"),
            "ransac_confidence": (ransac_confidence, 0 < ransac_confidence < 1, "in (0, 1)"),
            "ransac_iterations": (ransac_iterations, ransac_iterations >= 1, ">= 1"),
            "plot_pairs": (plot_pairs, plot_pairs >= 0, ">= 0"),
        }
        for name, (value, ok, expected) in checks.items():
            if not ok:
                raise ConfigError(f"model.{name} must be {expected}, got {value!r}")
        # checks alpha, beta, geometry_after_steps
        CorrespondenceLoss(HOMOGRAPHY, alpha, beta, geometry_after_steps, squared)
        self.kind = HOMOGRAPHY
        self._rows: list[dict[str, Any]] = []
        self._views: list[dict[str, Any]] = []
        self._seen = 0
        self.save_hyperparameters()

    # -- model -----------------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        kinds = [k for k in (HOMOGRAPHY, ESSENTIAL) if k in spec.keys]
        if len(kinds) != 1:
            raise ConfigError(
                f"CorrespondenceTask needs data with one geometry key, homography or essential; "
                f"the data module yields {', '.join(spec.keys)}"
            )
        hp = self.hparams
        self.kind = kinds[0]
        self.net = CorrespondenceNet(hp.depth, hp.width, in_features=spec.point_dim or 4)
        self.criterion = CorrespondenceLoss(
            self.kind, hp.alpha, hp.beta, hp.geometry_after_steps, hp.squared
        )

    def forward(self, matches: Tensor, mask: Tensor | None = None) -> Tensor:
        """Inlier logits ``(B, N)`` of matches ``(B, N, 4)`` (normalised coordinates)."""
        return self.net(matches, mask)

    # -- training ----------------------------------------------------------------------------------
    def _loss(self, batch: Batch, stage: str) -> tuple[Tensor, Tensor]:
        m, y, mask = batch[MATCHES], batch[INLIERS], batch.get(MATCH_MASK)
        logits = self.net(m, mask)
        loss, parts = self.criterion(logits, y, m, batch[self.kind], mask, self.global_step)
        n = len(m)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 sync_dist=stage != "train", batch_size=n)  # fmt: skip
        for k, v in parts.items():
            self.log(f"{stage}/{k}_loss", v, on_step=False, on_epoch=True, batch_size=n,
                     sync_dist=stage != "train")  # fmt: skip
        scores = inlier_scores(logits.detach() > 0, y, mask)
        for k, v in zip(("precision", "recall", "f1"), scores, strict=True):
            self.log(f"{stage}/{k}", v.mean(), on_step=False, on_epoch=True, batch_size=n,
                     prog_bar=k == "f1" and stage == "val", sync_dist=stage != "train")  # fmt: skip
        return loss, logits

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._loss(batch, "train")[0]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._loss(batch, "val")

    # -- test: the learned filter against RANSAC on the same matches -------------------------------
    def on_test_epoch_start(self) -> None:
        self._rows, self._views, self._seen = [], [], 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        m, y, mask = batch[MATCHES], batch[INLIERS], batch.get(MATCH_MASK)
        if mask is None:
            mask = torch.ones_like(y, dtype=torch.bool)
        n = len(m)
        self._sync()
        t0 = time.perf_counter()
        logits = self.net(m, mask)
        self._sync()
        t_net = (time.perf_counter() - t0) / n
        # the full loss (geometry term on), whatever step the checkpoint was saved at
        loss, _ = self.criterion(logits, y, m, batch[self.kind], mask)
        self.log("test/loss", loss, batch_size=n, sync_dist=True)
        t0 = time.perf_counter()
        est = estimate_geometry(m, inlier_weights(logits), self.kind, mask)
        self._sync()
        t_geo = (time.perf_counter() - t0) / n
        kept = (logits > 0) & mask
        poses = batch.get(POSE)
        poses = [None] * n if poses is None else poses.double().cpu()
        pairs = zip(
            m.double().cpu(), y.cpu(), mask.cpu(), kept.cpu(), est.double().cpu(),
            batch[self.kind].double().cpu(), batch[INTRINSICS].double().cpu(), batch[META],
            poses, strict=True,
        )  # fmt: skip
        for x, lab, valid, keep, g_est, g_true, K, meta, pose in pairs:  # OpenCV: pair by pair
            k = int(valid.sum())
            row = self._evaluate_pair(x[:k], lab[:k], keep[:k], g_est, g_true, K, meta, pose)
            row["learned_ms"] = 1000 * t_net
            row[f"learned_{self._solver}_ms"] = 1000 * (t_net + t_geo)
            row["learned_ransac_ms"] += 1000 * t_net
            self._rows.append(row)
            source = str(meta["name"]).split(":")[0]  # the first pair of each source
            shown = {str(v["name"]).split(":")[0] for v in self._views}
            if source not in shown and (len(shown) < self.hparams.plot_pairs or source == "opencv"):
                self._views.append({"index": self._seen, "name": meta["name"], "kept": keep[:k].numpy(),
                                    "inliers": lab[:k].numpy(), "pixels": _pixels(x[:k], K).numpy()})  # fmt: skip
            self._seen += 1

    @property
    def _solver(self) -> str:
        return "dlt" if self.kind == HOMOGRAPHY else "8pt"

    def _evaluate_pair(
        self, x: Tensor, lab: Tensor, keep: Tensor, g_est: Tensor, g_true: Tensor, K: Tensor,
        meta: dict[str, Any], pose: Tensor | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """One pair's row: inlier scores, geometric errors and times of every method (``pose``:
        the true ``[R | t]`` ``(3, 4)`` of an essential pair; None or NaN: unknown)."""
        hp = self.hparams
        px = _pixels(x, K).numpy()
        row: dict[str, Any] = {"name": meta["name"], "matches": len(x), "inliers": int(lab.sum())}
        thr = hp.ransac_threshold
        if self.kind == ESSENTIAL:
            thr = hp.ransac_threshold / float(K[0, :2].diagonal().mean())  # normalised units
        estimates: dict[str, tuple[Tensor | None, Tensor]] = {"learned": (None, keep)}
        for method, sel in (("ransac", torch.ones_like(keep)), ("learned_ransac", keep)):
            idx = torch.nonzero(sel)[:, 0].numpy()
            t0 = time.perf_counter()
            if self.kind == HOMOGRAPHY:
                G, inl = ransac_homography(
                    px[idx, :2], px[idx, 2:], thr, hp.ransac_confidence, hp.ransac_iterations
                )
            else:
                xn = x.numpy()
                G, inl = ransac_essential(
                    xn[idx, :2], xn[idx, 2:], thr, hp.ransac_confidence, hp.ransac_iterations
                )
            row[f"{method}_ms"] = 1000 * (time.perf_counter() - t0)
            full = torch.zeros_like(keep)
            full[torch.as_tensor(idx[inl], dtype=torch.long)] = True
            if G is not None and self.kind == HOMOGRAPHY:  # back to normalised coordinates
                G = torch.linalg.inv(K[1]) @ torch.as_tensor(G) @ K[0]
            estimates[method] = (
                None if G is None else torch.as_tensor(G, dtype=torch.float64),
                full,
            )
        estimates[f"learned_{self._solver}"] = (g_est, keep)
        for method, (G, inl) in estimates.items():
            if method != f"learned_{self._solver}":
                p, r, f = inlier_scores(inl[None], lab[None])
                row.update({f"{method}_precision": float(p), f"{method}_recall": float(r),
                            f"{method}_f1": float(f)})  # fmt: skip
            if method != "learned":
                row[f"{method}_error"] = self._error(G, g_true, x, inl, K, meta, pose)
        return row

    def _error(
        self, G: Tensor | None, g_true: Tensor, x: Tensor, inl: Tensor, K: Tensor,
        meta: dict[str, Any], pose: Tensor | None,
    ) -> float:  # fmt: skip
        """Corner error (px) of a homography or pose error (deg) of an essential matrix against
        the true pose; inf without an estimate, NaN without a true pose."""
        if self.kind == ESSENTIAL and (pose is None or not bool(torch.isfinite(pose).all())):
            return math.nan
        if G is None or not bool(torch.isfinite(G).all()):
            return math.inf
        if self.kind == HOMOGRAPHY:
            H, H_true = K[1] @ G @ torch.linalg.inv(K[0]), K[1] @ g_true @ torch.linalg.inv(K[0])
            if abs(float(H[2, 2])) < 1e-12:
                return math.inf
            w, h = meta["size"]
            err = float(corner_error(H / H[2, 2], H_true / H_true[2, 2], w - 1, h - 1))
            return err if math.isfinite(err) else math.inf
        if int(inl.sum()) == 0:
            return math.inf
        R, t, _ = recover_pose(G, x[:, :2], x[:, 2:], inl.double())
        err_r = float(rotation_error_deg(R, pose[:, :3]))
        err_t = float(translation_error_deg(t, pose[:, 3], sign_invariant=True))
        return max(err_r, err_t)

    def on_test_epoch_end(self) -> None:
        if not self._rows:
            return
        for key, value in self._summary().items():
            self.log(f"test/{key}", value, sync_dist=True)

    def _summary(self) -> dict[str, float]:
        """Means over the test pairs of the per-pair rows (medians and shares of the errors)."""
        rows, out = self._rows, {}
        out["pairs"] = float(len(rows))
        out["matches_per_pair"] = float(np.mean([r["matches"] for r in rows]))
        out["inlier_ratio"] = float(np.mean([r["inliers"] / max(r["matches"], 1) for r in rows]))
        methods = ("learned", f"learned_{self._solver}", "learned_ransac", "ransac")
        for method in methods:
            for k in ("precision", "recall", "f1"):
                if f"{method}_{k}" in rows[0]:
                    out[f"{method}_{k}"] = float(np.mean([r[f"{method}_{k}"] for r in rows]))
            if f"{method}_error" in rows[0]:
                err = np.array([r[f"{method}_error"] for r in rows], np.float64)
                known = ~np.isnan(err)  # NaN: no true pose
                if self.kind == ESSENTIAL:
                    out["pairs_without_true_pose"] = float(np.sum(~known))
                err = err[known]
                out[f"{method}_failed"] = float(np.sum(~np.isfinite(err)))
                if len(err):
                    out[f"{method}_{ERROR[self.kind]}_median"] = float(np.median(err))
                    for t in THRESHOLDS[self.kind]:
                        out[f"{method}_acc@{t:g}{UNIT[self.kind]}"] = float(np.mean(err < t))
            out[f"{method}_ms_per_pair"] = float(np.mean([r[f"{method}_ms"] for r in rows]))
        return out

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        mask = batch.get(MATCH_MASK)
        logits = self.net(batch[MATCHES], mask)
        valid = torch.ones_like(logits, dtype=torch.bool) if mask is None else mask
        kept = (logits > 0) & valid
        return {"matches": valid.sum(1).cpu(), "kept": kept.sum(1).cpu()}

    # -- artifacts -------------------------------------------------------------------------------------
    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After the test: ``test_pairs.csv`` (one row per pair) and ``plots/test_matches.png``."""
        if stage != "test" or not self._rows:
            return {}
        buf = io.StringIO()
        keys = list(dict.fromkeys(k for r in self._rows for k in r))
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()}
            for r in self._rows
        )
        run.write_text(run.root / "test_pairs.csv", buf.getvalue())
        dm = self.trainer.datamodule if self._trainer is not None else None
        if self._views and hasattr(dm, "pair_images"):
            views = []
            for v in self._views:
                image1, image2 = dm.pair_images(v["index"], "test")
                views.append(
                    MatchView(image1, image2, v["pixels"], v["kept"], v["inliers"], v["name"])
                )
            plot_matches(views, run.plots / "test_matches.png")
        self._views = []
        return {}


def _pixels(x: Tensor, K: Tensor) -> Tensor:
    """Normalised matches ``(N, 4)`` back to pixels with ``K`` ``(2, 3, 3)``."""
    out = x.clone()
    for j, Kj in ((0, K[0]), (2, K[1])):
        out[:, j : j + 2] = x[:, j : j + 2] * Kj.diagonal()[:2] + Kj[:2, 2]
    return out
