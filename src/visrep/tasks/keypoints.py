"""Heat-map keypoint localisation with a Convolutional Pose Machine (Wei et al. 2016; seed 001,
"Predicting Heat Maps"), optionally with part affinity fields (Cao et al. 2017).

Targets: a Gaussian of ``sigma`` map pixels at each labelled keypoint, on the network's map grid
(stride ``s``; image pixel ``x`` sits at map pixel ``(x + 0.5) / s - 0.5``), plus CPM's
background map ``1 - max_k``. Loss: the masked squared error of every stage's maps, summed
over the stages (intermediate supervision, CPM Eq. 4-5; unlabelled keypoints count in no
loss); with ``limbs`` also the squared error of each stage's part affinity fields (Cao et al.
Eq. 5-6) times ``paf_weight``.

Metrics, on the labelled keypoints of the validation / test images, in pixels of the network's
input image (the data's ``image_size``), for the two decodings of the last stage's maps:
``argmax`` (the maximum, refined to sub-pixel by ``refine``: the parabola through the log-values,
by default) and ``softargmax`` (seed 001's ``softargmax`` with ``beta``):
``{val,test}/pck_{argmax,softargmax}`` (PCK at ``pck_threshold`` times the image DIAGONAL) and
``{val,test}/error_px_{argmax,softargmax}`` (mean Euclidean error). ``val/pck_argmax`` picks
``best.ckpt``. The test writes ``plots/test_keypoints.png`` (true vs both decodings) and
``test_keypoints.csv`` (per image and keypoint, input-image pixels); ``visrep predict`` writes
each keypoint's x, y (argmax, in the pixels of the source file) and map value.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from visrep.data.base import DataSpec
from visrep.data.keypoints.base import to_source
from visrep.data.samples import IMAGE, KEYPOINTS, META
from visrep.errors import ConfigError
from visrep.models.keypoints import PoseMachine
from visrep.models.layers.heatmaps import (
    gaussian_heatmaps,
    heatmap_argmax,
    heatmap_mse,
    image_to_map,
    keypoint_errors,
    map_to_image,
    paf_targets,
    soft_argmax,
    with_background,
)
from visrep.plots.keypoints import plot_keypoints
from visrep.runs import RunDir
from visrep.tasks.base import Task
from visrep.tasks.optim import OptimConfig

Batch = dict[str, Any]
_SAMPLES = 6  # test images in the drawing
_DECODINGS = ("argmax", "softargmax")


class KeypointTask(Task):
    """Trains a :class:`~visrep.models.keypoints.PoseMachine` on keypoint data.

    Args:
        stages: CPM stages (each supervised).
        width: channels of the features and stages.
        pools: 2x2 pools of the feature extractor (map stride ``2 ** pools``).
        stage_depth: dilated 3x3 convolutions per stage.
        sigma: the Gaussian targets' standard deviation in MAP pixels.
        beta: the soft-argmax's inverse temperature (on maps whose peaks are ~1).
        refine: sub-pixel refinement of the argmax: ``quadratic``, ``quarter`` or ``none``.
        pck_threshold: PCK's threshold as a fraction of the image diagonal.
        limbs: keypoint index pairs ``[[j1, j2], ...]`` whose part affinity fields the network
            also predicts (None: none).
        paf_width: the fields' half width in map pixels.
        paf_weight: the fields' weight in the loss.
        optim: optimiser and schedule.
    """

    monitor = ("val/pck_argmax", "max")
    families = ("keypoints",)
    input_key = IMAGE

    def __init__(
        self,
        stages: int = 3,
        width: int = 32,
        pools: int = 2,
        stage_depth: int = 4,
        sigma: float = 1.0,
        beta: float = 20.0,
        refine: Literal["quadratic", "quarter", "none"] = "quadratic",
        pck_threshold: float = 0.05,
        limbs: list[tuple[int, int]] | None = None,
        paf_width: float = 1.0,
        paf_weight: float = 1.0,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim)
        if sigma <= 0 or beta < 0 or not 0 < pck_threshold <= 1 or paf_width <= 0 or paf_weight < 0:
            raise ConfigError(
                "--model: sigma > 0, beta >= 0, 0 < pck_threshold <= 1, paf_width > 0 and "
                f"paf_weight >= 0 expected, got {sigma}, {beta}, {pck_threshold}, {paf_width}, {paf_weight}"
            )
        if refine not in ("quadratic", "quarter", "none"):
            raise ConfigError(f"--model.refine must be quadratic, quarter or none, got {refine!r}")
        if limbs is not None and any(len(limb) != 2 for limb in limbs):
            raise ConfigError(f"--model.limbs must be pairs of keypoint indices, got {limbs}")
        self.save_hyperparameters()
        if limbs is not None:
            self.hparams["limbs"] = [[int(a), int(b)] for a, b in limbs]
        self._samples: list[tuple[Tensor, ...]] = []
        self._results: dict[str, Any] | None = None

    # -- model -----------------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        if not spec.in_chans or not spec.num_classes or not spec.mean or not spec.image_size:
            raise ConfigError(
                "KeypointTask needs the data's channels, keypoints, image size and mean/std (its spec())"
            )
        hp = self.hparams
        limbs = hp.limbs or []
        bad = [limb for limb in limbs if not all(0 <= j < spec.num_classes for j in limb)]
        if bad:
            raise ConfigError(f"--model.limbs {bad} name keypoints outside [0, {spec.num_classes})")
        self.register_buffer(
            "limbs", torch.tensor(limbs, dtype=torch.long).reshape(-1, 2), persistent=False
        )
        self.net = PoseMachine(
            spec.in_chans, spec.num_classes, spec.mean, spec.std, hp.stages, hp.width, hp.pools,
            hp.stage_depth, num_limbs=len(limbs),
        )  # fmt: skip
        for stage in ("val", "test"):
            for d in _DECODINGS:
                setattr(self, f"{stage}_pck_{d}", MeanMetric())
                setattr(self, f"{stage}_err_{d}", MeanMetric())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    # -- targets, loss, decoding -------------------------------------------------------------------
    def _stride(self, x: Tensor, maps: Tensor) -> tuple[float, float]:
        return x.shape[-1] / maps.shape[-1], x.shape[-2] / maps.shape[-2]

    def _loss(self, x: Tensor, keypoints: Tensor) -> tuple[Tensor, Tensor]:
        """The loss summed over stages, and the last stage's belief maps."""
        outs = self.net.stage_outputs(x)
        maps = outs[0][0]
        size = tuple(maps.shape[-2:])
        on_map = image_to_map(keypoints, self._stride(x, maps))
        target, mask = with_background(*gaussian_heatmaps(on_map, size, self.hparams.sigma))
        fields = (
            paf_targets(on_map[:, None], self.limbs, size, self.hparams.paf_width)
            if len(self.limbs)
            else None
        )
        loss = maps.new_zeros(())
        for beliefs, pafs in outs:
            loss = loss + heatmap_mse(beliefs, target, mask)
            if pafs is not None:
                ones = pafs.new_ones(pafs.shape[:2])
                loss = loss + self.hparams.paf_weight * heatmap_mse(pafs, fields, ones)
        return loss, outs[-1][0]

    def decode(self, x: Tensor, maps: Tensor) -> dict[str, Tensor]:
        """Keypoints ``(B, K, 2)`` in image pixels by each decoding, and the argmax's map value
        ``score`` ``(B, K)``, from belief maps ``(B, K + 1, h, w)`` of images ``x``."""
        k = self.spec.num_classes
        stride = self._stride(x, maps)
        xy, score = heatmap_argmax(maps[:, :k].float(), self.hparams.refine)
        soft = soft_argmax(maps[:, :k].float(), self.hparams.beta)
        return {
            "argmax": map_to_image(xy, stride),
            "softargmax": map_to_image(soft, stride),
            "score": score,
        }

    @staticmethod
    def _keypoints(batch: Batch) -> Tensor:
        kp = batch[KEYPOINTS]
        return torch.stack(list(kp)).float() if isinstance(kp, list | tuple) else kp.float()

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, kp = batch[IMAGE], self._keypoints(batch)
        loss, _ = self._loss(x, kp)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def _eval_step(self, batch: Batch, stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        x, kp = batch[IMAGE], self._keypoints(batch)
        loss, maps = self._loss(x, kp)
        self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=len(x))
        pred = self.decode(x, maps)
        vis = kp[..., 2] > 0
        diag = math.hypot(x.shape[-2], x.shape[-1])
        for d in _DECODINGS:
            err = keypoint_errors(pred[d], kp)[vis]
            if err.numel():
                getattr(self, f"{stage}_pck_{d}").update(
                    (err <= self.hparams.pck_threshold * diag).float()
                )
                getattr(self, f"{stage}_err_{d}").update(err)
        return kp, pred

    def _log_epoch(self, stage: str) -> None:
        for d in _DECODINGS:
            for name, metric in (("pck", f"{stage}_pck_{d}"), ("error_px", f"{stage}_err_{d}")):
                m = getattr(self, metric)
                if m.update_count:
                    self.log(
                        f"{stage}/{name}_{d}",
                        m.compute(),
                        prog_bar=stage == "val" and name == "pck",
                    )
                m.reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._samples = []
        self._rows: list[list[Any]] = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        kp, pred = self._eval_step(batch, "test")
        files = [m.get("file", "") for m in batch.get(META, [{}] * len(kp))]
        err = {d: keypoint_errors(pred[d], kp) for d in _DECODINGS}
        for i, f in enumerate(files):
            for j in range(kp.shape[1]):
                if kp[i, j, 2] > 0:
                    self._rows.append([f, self.spec.class_names[j], *kp[i, j, :2].tolist(),
                                       *pred["argmax"][i, j].tolist(), *pred["softargmax"][i, j].tolist(),
                                       float(err["argmax"][i, j]), float(err["softargmax"][i, j])])  # fmt: skip
        have = sum(len(s[0]) for s in self._samples)
        if have < _SAMPLES:
            n = min(_SAMPLES - have, len(kp))
            self._samples.append((batch[IMAGE][:n].cpu(), kp[:n].cpu(), pred["argmax"][:n].cpu(),
                                  pred["softargmax"][:n].cpu(), files[:n]))  # fmt: skip

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        self._results = {"samples": self._samples, "rows": self._rows}

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """``{"argmax", "softargmax": (B, K, 2), "score": (B, K)}``: pixels of the source files
        when the samples say how they were cropped and resized (``meta["to_source"]``), else of
        the input images."""
        x = batch[IMAGE]
        out = self.decode(x, self.net(x))
        metas = batch.get(META)
        if metas and all("to_source" in m for m in metas):
            params = torch.tensor([m["to_source"] for m in metas], device=x.device)[:, None]
            out = {**out, **{d: to_source(out[d], params) for d in _DECODINGS}}
        return out

    # -- what the trainer calls ------------------------------------------------------------------
    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: ``plots/test_keypoints.png`` and ``test_keypoints.csv``."""
        results, self._results = self._results, None
        if stage != "test" or not results or not results["samples"]:
            return {}
        images, truth, arg, soft, files = (list(t) for t in zip(*results["samples"], strict=True))
        plot_keypoints(
            torch.cat(images), torch.cat(truth),
            {"argmax": torch.cat(arg), "soft-argmax": torch.cat(soft)},
            run.plots / "test_keypoints.png",
            titles=[str(f).rsplit("/", 1)[-1] for fs in files for f in fs],
        )  # fmt: skip
        header = ["file", "keypoint", "x", "y", "x_argmax", "y_argmax", "x_softargmax",
                  "y_softargmax", "error_px_argmax", "error_px_softargmax"]  # fmt: skip
        rows = [[r[0], r[1], *(round(v, 4) for v in r[2:])] for r in results["rows"]]
        run.write_csv(run.root / "test_keypoints.csv", [header, *rows])
        return {}

    def predict_rows(self, outputs: list[dict[str, Tensor]]) -> list[dict[str, Any]]:
        """One row per image: ``<name>_x, <name>_y, <name>_score`` of each keypoint (argmax
        decoding, source-file pixels; see :meth:`predict_step`)."""
        names = list(self.spec.class_names)
        rows = []
        for out in outputs:
            xy, score = out["argmax"].cpu(), out["score"].cpu()
            for i in range(len(xy)):
                row: dict[str, Any] = {}
                for j, n in enumerate(names):
                    row[f"{n}_x"] = round(float(xy[i, j, 0]), 3)
                    row[f"{n}_y"] = round(float(xy[i, j, 1]), 3)
                    row[f"{n}_score"] = round(float(score[i, j]), 4)
                rows.append(row)
        return rows
