"""Point-cloud classification (seed 001, PointNet): cross-entropy on a symmetric function of the
points, plus the network's own regulariser (PointNet's ``||I - A A^T||_F^2``).

The classification task of :class:`~visrep.tasks.ClassificationTask` (loss, metrics, confusion
matrix, optimisation) around a registered point-cloud network
(:data:`~visrep.models.pointcloud.POINT_NETS`), reading the batch's ``points``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from visrep.data.base import DataSpec
from visrep.data.samples import LABEL, POINTS
from visrep.errors import ConfigError
from visrep.models.pointcloud import POINT_NETS, PointCloudNet, PointNetFactory, pointnet
from visrep.plots.embedding import plot_embedding
from visrep.plots.pointcloud import plot_critical_points, plot_point_cloud_grid
from visrep.runs import RunDir
from visrep.tasks.base import mean_class_accuracy, write_confusion_matrix
from visrep.tasks.classification import ClassificationTask
from visrep.tasks.optim import OptimConfig
from visrep.utils.embedding import subsample, tsne

__all__ = ["PointCloudClassificationTask", "critical_set_sizes", "mean_class_accuracy"]

PREVIEW_POINTS = 2048  # points per cloud kept for the test report's pictures
TSNE_POINTS = 2000  # at most this many test clouds in the t-SNE plot (seeded subset)
CRITICAL_EXAMPLES = 6  # test clouds shown with their critical point sets


def preview_clouds(points: Tensor | list[Tensor], k: int) -> Tensor:
    """The first ``k`` clouds' x, y, z for pictures, ``(k, L, 3)``: at most
    :data:`PREVIEW_POINTS` points each (evenly spaced), shorter clouds repeat their points."""
    clouds = list(points[:k])
    n = min(PREVIEW_POINTS, max(len(c) for c in clouds))
    out = []
    for c in clouds:  # k <= 32 pictures, not a hot path
        idx = torch.linspace(0, len(c) - 1, n, device=c.device).round().long()
        out.append(c[idx, :3])
    return torch.stack(out)


class PointCloudClassificationTask(ClassificationTask):
    """Trains a point-cloud network (PointNet by default) to classify whole clouds.

    Args:
        net: a registered point-cloud network with its options (``pointnet``, ``sorted_mlp``;
            ``--model.net.feature_transform false`` etc.). The data decides the point dimension
            and the number of classes.
        label_smoothing, optim, top_k: as in :class:`~visrep.tasks.ClassificationTask`.
    """

    families = ("pointcloud",)
    input_key = POINTS
    # net.embed(points) gives the global feature (visrep embed); image attribution maps
    # (Grad-CAM, occlusion) do not apply to point sets
    class_scores, embeds = False, True

    def __init__(
        self,
        net: PointNetFactory = pointnet,
        label_smoothing: float = 0.0,
        optim: OptimConfig | None = None,
        top_k: int = 5,
    ) -> None:
        super().__init__(label_smoothing=label_smoothing, optim=optim, top_k=top_k)
        self.net_spec = POINT_NETS.spec(net)
        self.hparams.pop("backbone", None)  # the image backbone of the parent: not used here
        self.hparams["net"] = self.net_spec
        if POINT_NETS.resolve(self.net_spec["class_path"]).dense:
            raise ConfigError(
                f"model.net {self.net_spec['class_path']!r} gives per-point outputs: "
                "use PointSegmentationTask for it"
            )

    def build_net(self, spec: DataSpec) -> PointCloudNet:
        if not spec.point_dim or not spec.num_classes:
            raise ConfigError(
                "PointCloudClassificationTask needs the data's point dimension and classes"
            )
        return POINT_NETS.build(self.net_spec, spec.point_dim, spec.num_classes)

    def forward_train(self, x: Any) -> tuple[Tensor, Tensor | None]:
        return self.net.forward_with_aux(x)

    def sample_images(self, x: Any, k: int) -> Tensor:
        """The first ``k`` clouds' coordinates (for the test report's point-cloud grid)."""
        return preview_clouds(x, k)

    # -- test: features for t-SNE, critical point sets --------------------------------------------
    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._features: list[Tensor] = []
        self._labels: list[Tensor] = []
        self._critical_sizes: list[Tensor] = []
        self._critical_examples: list[tuple[Tensor, Tensor, int]] = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        x, y = batch[self.input_key], batch[LABEL]
        features, winners = self.net.embed_with_critical(x)  # winners: (B, width) point indices
        self._features.append(features.float().cpu())
        self._labels.append(torch.as_tensor(y).cpu())
        if winners is None:
            return
        self._critical_sizes.append(critical_set_sizes(winners).cpu())
        # one example cloud per class, the first met, for the critical-point figure
        seen = {c for _, _, c in self._critical_examples}
        for i, c in enumerate(torch.as_tensor(y).tolist()):
            if c not in seen and len(self._critical_examples) < CRITICAL_EXAMPLES:
                seen.add(c)
                keep = torch.zeros(len(x[i]), dtype=torch.bool, device=winners.device)
                keep[winners[i]] = True
                self._critical_examples.append((x[i][:, :3].cpu(), keep.cpu(), c))

    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: the confusion matrix (CSV and plot), per-class accuracy, a grid of test
        clouds with their predicted and true classes, a t-SNE of the test clouds' global
        features (``plots/tsne.png``) and, for PointNet, each class's first test cloud with its
        critical point set (``plots/critical_points.png``; the paper's Fig. 7)."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        self._test_results = None
        names = list(self.spec.class_names)
        write_confusion_matrix(run, names, results["confusion_matrix"])
        clouds, targets, probs = results["samples"]
        plot_point_cloud_grid(clouds, targets, probs, names, run.plots / "test_predictions.png")
        out: dict[str, Any] = {
            "test/acc_per_class": dict(zip(names, results["per_class_acc"], strict=True)),
            "test/acc_mean_class": float(
                mean_class_accuracy(torch.tensor(results["confusion_matrix"]))
            ),
        }
        feats, labels = torch.cat(self._features), torch.cat(self._labels)
        if len(feats) >= 4:
            idx = subsample(len(feats), TSNE_POINTS, seed=0)
            title = f"t-SNE of {len(idx)} test clouds' global features" + (
                f" (of {len(feats)})" if len(idx) < len(feats) else ""
            )
            plot_embedding(
                tsne(feats[idx].numpy(), seed=0),
                labels[idx].numpy(),
                run.plots / "tsne.png",
                names,
                title,
            )
        if self._critical_sizes:
            sizes = torch.cat(self._critical_sizes).double()
            out["test/critical_points_mean"] = float(sizes.mean())
            plot_critical_points(
                [(xyz, keep, names[c]) for xyz, keep, c in self._critical_examples],
                run.plots / "critical_points.png",
            )
        self._features, self._labels, self._critical_sizes, self._critical_examples = [], [], [], []
        return out


def critical_set_sizes(winners: Tensor) -> Tensor:
    """The number of distinct points among each row's max-pool winners, ``(B, C) -> (B,)``.

    >>> critical_set_sizes(torch.tensor([[3, 1, 3], [0, 0, 0]])).tolist()
    [2, 1]
    """
    s = winners.sort(1).values
    return (s[:, 1:] != s[:, :-1]).sum(1) + 1
