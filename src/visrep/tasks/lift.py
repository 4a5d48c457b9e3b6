"""LIFT (Yi et al., ECCV 2016; seed 001): detector, orientation estimator and descriptor trained
on patch quadruplets with seed 001's losses, in the paper's stages or end to end.

Stages (``stages``, each for its share of the epochs, ``stage_epochs``; paper Sec. 4):

* ``desc``: DESC alone, on crops at the patch centre (the known point) rotated by the known
  orientation (P1 upright, P2 by the local rotation of the true homography: LIFT's SfM
  orientations): ``L_pair + L_neg`` with hard mining.
* ``ori``: ORI with DESC fixed: ``L_pair`` of ``DESC(Rot(P, angle_ORI(P)))`` for P1, P2.
* ``det``: DET with ORI and DESC fixed: the global cost ``class_weight L_class + L_pair +
  L_neg`` with ``G(P, softargmax(DET(P)))``.
* ``joint``: all three trained together on the global cost (``stages: [joint]`` is end to end).

Metrics (val and test, on the full pipeline of every patch): ``loss`` (the global cost),
``pair_dist`` (mean ``||d1 - d2||``), ``match_acc`` (share of P1 whose nearest P2 descriptor of
the batch is its own), ``match_acc_gt`` (the same with the known centre and orientation: DESC
alone), ``angle_err_deg`` (ORI's error on the relative rotation of P1 and P2), ``class_acc``
(DET's soft maximum > 0 on P1..P3, < 0 on P4). With ``graf_root`` the test also runs the
whole-image pipeline on ``graf1 -> graf3`` with the true homography: ``test/repeatability`` and
``test/matching_score`` at ``eval_keypoints`` keypoints, next to OpenCV's SIFT and ORB
(``test/sift_*``, ``test/orb_*``; ``test_features.csv`` and ``plots/test_graf1_features.png``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from visrep.data.base import DataSpec
from visrep.data.correspondence.lift_patches import ANGLE, PATCHES
from visrep.errors import ConfigError
from visrep.losses.lift import (
    lift_class_loss,
    lift_descriptor_losses,
    lift_pair_loss,
    soft_max_score,
)
from visrep.models.correspondence.lift import LIFT, lift_features
from visrep.models.correspondence.repeatability import compare_features, graf_images
from visrep.plots.features import plot_features
from visrep.runs import RunDir
from visrep.tasks.base import Task
from visrep.tasks.optim import OptimConfig

Batch = dict[str, Any]
Stage = Literal["desc", "ori", "det", "joint"]
_TRAINS = {"desc": ("desc",), "ori": ("ori",), "det": ("det",), "joint": ("det", "ori", "desc")}
_METRICS = ("loss", "pair_dist", "match_acc", "match_acc_gt", "angle_err_deg", "class_acc")


def _wrap(a: Tensor) -> Tensor:
    return torch.atan2(torch.sin(a), torch.cos(a))


class LiftTask(Task):
    """Trains :class:`~visrep.models.correspondence.lift.LIFT` on LIFT quadruplets.

    Args:
        crop_size: side of ORI's and DESC's crops (pixels at the patch's scale, >= 20).
        det_kernel: DET's convolution size (odd).
        ghh: DET's GHH groups ``(ns, nm)``.
        beta: the soft-argmax's inverse temperature.
        ori_width, desc_width: first channel counts of ORI and DESC.
        dim: descriptor length.
        stages: training stages in order (module docstring).
        stage_epochs: epochs of each stage (None: ``max_epochs`` shared equally).
        class_weight: weight of ``L_class`` in the global cost.
        strength: strength ``s`` of LIFT's soft maximum in ``L_class``.
        miner: pair miner of ``L_pair`` / ``L_neg`` (``hard``, ``all``, ``random``).
        margin: ``L_neg``'s margin (1 in the seed).
        graf_root: folder with ``graf1.png``, ``graf3.png``, ``H1to3p.xml`` for the test's
            whole-image evaluation (None: not run).
        eval_keypoints: keypoints per image of that evaluation (every method).
        eval_size: long side of graf1 / graf3 in that evaluation.
        nms_radius: non-maximum suppression radius at run time (pixels).
        optim: optimiser and schedule.
    """

    monitor = None
    families = ("lift",)
    input_key = PATCHES

    def __init__(
        self,
        crop_size: int = 32,
        det_kernel: int = 15,
        ghh: tuple[int, int] = (4, 4),
        beta: float = 10.0,
        ori_width: int = 16,
        desc_width: int = 32,
        dim: int = 128,
        stages: list[Stage] | None = None,
        stage_epochs: list[int] | None = None,
        class_weight: float = 1.0,
        strength: float = 10.0,
        miner: Literal["hard", "all", "random"] = "hard",
        margin: float = 1.0,
        graf_root: str | None = None,
        eval_keypoints: int = 500,
        eval_size: int = 320,
        nms_radius: int = 4,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim)
        stages = list(stages) if stages is not None else ["desc", "ori", "det"]
        if not stages or any(s not in _TRAINS for s in stages):
            raise ConfigError(
                f"--model.stages must be a list of desc, ori, det, joint, got {stages}"
            )
        if stage_epochs is not None and (
            len(stage_epochs) != len(stages) or any(e < 1 for e in stage_epochs)
        ):
            raise ConfigError(
                f"--model.stage_epochs must give >= 1 epoch to each of the {len(stages)} stages, "
                f"got {stage_epochs}"
            )
        if crop_size < 20 or beta < 0 or class_weight < 0 or strength <= 0:
            raise ConfigError(
                "--model: crop_size >= 20, beta >= 0, class_weight >= 0 and strength > 0 "
                f"expected, got {crop_size}, {beta}, {class_weight}, {strength}"
            )
        if eval_keypoints < 1 or eval_size < 64 or nms_radius < 1:
            raise ConfigError(
                f"--model: eval_keypoints >= 1, eval_size >= 64, nms_radius >= 1 expected, got "
                f"{eval_keypoints}, {eval_size}, {nms_radius}"
            )
        self.save_hyperparameters()
        self.hparams["stages"] = stages
        self._table: list[dict[str, Any]] | None = None
        self._drawing: tuple[Any, Any] | None = None

    # -- model -----------------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        hp = self.hparams
        self.net = LIFT(hp.crop_size, hp.det_kernel, tuple(hp.ghh), hp.beta, hp.ori_width,
                        hp.desc_width, hp.dim)  # fmt: skip
        for stage in ("val", "test"):
            for m in _METRICS:
                setattr(self, f"{stage}_{m}", MeanMetric())

    def forward(self, patches: Tensor) -> Tensor:
        """Descriptors ``(..., D)`` of the full pipeline on patches ``(..., 1, S, S)``."""
        lead = patches.shape[:-3]
        out = self.net(patches.reshape(-1, *patches.shape[-3:]))
        return out["desc"].view(*lead, -1)

    def stage(self) -> str:
        """The training stage of the current epoch."""
        stages, epochs = self.hparams.stages, self.hparams.stage_epochs
        e = self.current_epoch
        if epochs is None:
            total = max(self.trainer.max_epochs or 1, 1) if self._trainer is not None else 1
            return stages[min(e * len(stages) // total, len(stages) - 1)]
        ends = torch.tensor(epochs).cumsum(0)
        return stages[min(int((ends <= e).sum()), len(stages) - 1)]

    def on_train_epoch_start(self) -> None:
        trains = _TRAINS[self.stage()]
        for name in ("det", "ori", "desc"):
            getattr(self.net, name).requires_grad_(name in trains)

    # -- losses ----------------------------------------------------------------------------------
    def _centred(self, patches: Tensor, angle: Tensor | None) -> tuple[Tensor, Tensor]:
        """DESC (and ORI when ``angle`` is None) at the patch centres: ``(B, D)``, ``(B,)``."""
        s = patches.shape[-1]
        centre = patches.new_full((len(patches), 1, 2), (s - 1) / 2)
        d, a = self.net.describe_at(patches, centre, None if angle is None else angle[:, None])
        return d[:, 0], a[:, 0]

    def _global(self, p: list[Tensor]) -> tuple[dict[str, Tensor], list[dict[str, Tensor]]]:
        """The global cost on the full pipeline of P1..P3 and DET of P4."""
        outs = [self.net(x) for x in p[:3]]
        score4 = self.net.det(p[3])
        score = torch.cat([o["score"] for o in outs] + [score4])
        n = len(p[0])
        y = torch.cat([score.new_ones(3 * n), -score.new_ones(n)])
        hp = self.hparams
        l_class = lift_class_loss(score, y, hp.strength)
        l_pair, l_neg = lift_descriptor_losses(*(o["desc"] for o in outs), hp.miner, hp.margin)
        terms = {"class": l_class, "pair": l_pair, "neg": l_neg,
                 "loss": hp.class_weight * l_class + l_pair + l_neg}  # fmt: skip
        return terms, outs

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        p = list(batch[PATCHES].unbind(1))
        stage, hp = self.stage(), self.hparams
        if stage == "desc":
            zero = torch.zeros_like(batch[ANGLE])
            (d1, _), (d2, _), (d3, _) = (self._centred(p[0], zero), self._centred(p[1], batch[ANGLE]),
                                         self._centred(p[2], zero))  # fmt: skip
            l_pair, l_neg = lift_descriptor_losses(d1, d2, d3, hp.miner, hp.margin)
            terms = {"pair": l_pair, "neg": l_neg, "loss": l_pair + l_neg}
        elif stage == "ori":
            (d1, _), (d2, _) = self._centred(p[0], None), self._centred(p[1], None)
            terms = {"pair": lift_pair_loss(d1, d2)}
            terms["loss"] = terms["pair"]
        else:
            terms, _ = self._global(p)
        n = len(p[0])
        for k, v in terms.items():
            self.log(
                f"train/{k}", v, on_step=False, on_epoch=True, prog_bar=k == "loss", batch_size=n
            )
        return terms["loss"]

    def _eval_step(self, batch: Batch, stage: str) -> None:
        p = list(batch[PATCHES].unbind(1))
        n = len(p[0])
        if n < 2:
            return
        terms, outs = self._global(p)
        d1, d2 = outs[0]["desc"], outs[1]["desc"]
        own = torch.arange(n, device=d1.device)
        gt1, _ = self._centred(p[0], torch.zeros_like(batch[ANGLE]))
        gt2, _ = self._centred(p[1], batch[ANGLE])
        _, a1 = self._centred(p[0], None)
        _, a2 = self._centred(p[1], None)
        score = soft_max_score(
            torch.cat([o["score"] for o in outs] + [self.net.det(p[3])]), self.hparams.strength
        )
        values = {
            "loss": terms["loss"],
            "pair_dist": (d1 - d2).norm(dim=1).mean(),
            "match_acc": (torch.cdist(d1, d2).argmin(1) == own).float().mean(),
            "match_acc_gt": (torch.cdist(gt1, gt2).argmin(1) == own).float().mean(),
            "angle_err_deg": torch.rad2deg(_wrap(a2 - a1 - batch[ANGLE]).abs()).mean(),
            "class_acc": torch.cat([score[: 3 * n] > 0, score[3 * n :] < 0]).float().mean(),
        }
        for k, v in values.items():
            getattr(self, f"{stage}_{k}").update(v.detach(), n)

    def _log_epoch(self, stage: str) -> None:
        for k in _METRICS:
            m = getattr(self, f"{stage}_{k}")
            if m.update_count:
                self.log(f"{stage}/{k}", m.compute(), prog_bar=k == "match_acc")
            m.reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        self._table = None
        root = self.hparams.graf_root
        if root is None or not (Path(root) / "graf1.png").is_file():
            return
        hp = self.hparams
        im1, im3, H = graf_images(root, hp.eval_size)

        def extract(image):
            return lift_features(self.net, image, hp.eval_keypoints, hp.nms_radius)

        rows = compare_features(im1, im3, H, {"lift": extract}, hp.eval_keypoints)
        for r in rows:
            prefix = "" if r["method"] == "lift" else f"{r['method']}_"
            for k in ("repeatability", "matching_score"):
                if math.isfinite(r[k]):
                    self.log(f"test/{prefix}{k}", float(r[k]))
        self._table = rows
        self._drawing = (im1, extract(im1)[0])

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """P1's keypoint (patch pixels), orientation and DET soft maximum per quadruplet."""
        out = self.net(batch[PATCHES][:, 0])
        return {"xy": out["xy"], "angle": out["angle"],
                "score": soft_max_score(out["score"], self.hparams.strength)}  # fmt: skip

    # -- what the trainer calls ------------------------------------------------------------------
    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test with ``graf_root``: ``test_features.csv`` (LIFT, SIFT, ORB on graf1 ->
        graf3) and ``plots/test_graf1_features.png``."""
        table, self._table = self._table, None
        if stage != "test" or not table:
            return {}
        header = ["method", "keypoints", "repeatability", "matching_score"]
        run.write_csv(run.root / "test_features.csv",
                      [header, *([r[k] if isinstance(r[k], str | int) else round(r[k], 4) for k in header]
                                 for r in table)])  # fmt: skip
        if self._drawing is not None:
            image, kp = self._drawing
            plot_features(
                image, kp, run.plots / "test_graf1_features.png", f"LIFT: {len(kp)} keypoints"
            )
        return {}

    def predict_rows(self, outputs: list[dict[str, Tensor]]) -> list[dict[str, Any]]:
        """One row per quadruplet: ``x, y`` (P1's soft-argmax, patch pixels), ``angle`` (radians),
        ``score``."""
        rows = []
        for out in outputs:
            xy, a, s = out["xy"].cpu(), out["angle"].cpu(), out["score"].cpu()
            for i in range(len(xy)):
                rows.append({"x": round(float(xy[i, 0]), 3), "y": round(float(xy[i, 1]), 3),
                             "angle": round(float(a[i]), 4), "score": round(float(s[i]), 4)})  # fmt: skip
        return rows
