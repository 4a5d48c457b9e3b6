"""Metric learning: an embedding trained with the contrastive or triplet loss, or a softmax baseline.

Seed 001, "Deep embeddings": a Siamese network (Bromley et al. 1994) maps every image with ONE
weight-shared tower (:class:`~visrep.models.embedding.EmbeddingNet`) and is trained on pairs
with the contrastive loss (``1/2 d^2`` for a same pair, ``1/2 max(0, m - d)^2`` for a different
one; Hadsell, Chopra and LeCun 2006), or on triplets with the triplet loss (``max(0, d_ap -
d_an + m)``; Schroff et al. 2015, Hermans et al. 2017). Pairs and triplets are mined inside each
training batch (:mod:`visrep.losses.miners`: random / hard pairs; batch-hard, semi-hard and
distance-weighted triplets), so batches should hold several samples of several classes: P
classes x K samples (``--data.loader.classes_per_batch P --data.loader.samples_per_class K``).

``loss="softmax"`` is the baseline: a plain classifier (cross-entropy over the training labels)
whose penultimate features, the pooled backbone features with ``dim=0``, are the embedding.

Validation and test embed the whole split (gathered over every device under DDP) and measure
verification on pairs (the data module's ``val_pairs`` / ``test_pairs`` when it has them, else
all pairs of the split) and retrieval (recall@k, mAP@R) as
:mod:`visrep.tasks.embedding_metrics` defines them, with Euclidean distances. ``val/auc``
selects ``best.ckpt``. After the test: ``plots/roc.png``, ``plots/distance_histogram.png``,
``plots/neighbours.png`` (test queries and their nearest test samples) and ``plots/tsne.png``.

``visrep predict`` writes each image's embedding (columns ``z0 ... z{D-1}``); ``visrep embed
RUN --split test`` writes a split's embeddings with labels and file names to an ``.npz``.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DistributedSampler

from visrep.data.base import DataSpec
from visrep.data.samples import IMAGE, LABEL
from visrep.errors import ConfigError, DataError
from visrep.losses.metric import contrastive_loss, triplet_loss
from visrep.losses.miners import PAIR_MINERS, TRIPLET_MINERS, check_margin
from visrep.models.backbones.cnn import small_cnn
from visrep.models.embedding import EmbeddingNet
from visrep.models.interface import BackboneFactory
from visrep.models.registry import BACKBONES
from visrep.plots.embedding import plot_embedding, plot_neighbours
from visrep.plots.verification import plot_distance_histogram, plot_roc
from visrep.runs import RunDir
from visrep.tasks.base import Task
from visrep.tasks.embedding_metrics import (
    far_key,
    pair_distances,
    retrieval_metrics,
    roc_curve,
    split_pairs,
    verification_metrics,
)
from visrep.tasks.optim import OptimConfig
from visrep.utils.embedding import nearest_indices, neighbour_distances, subsample, tsne

Batch = dict[str, Any]
Loss = Literal["contrastive", "triplet", "softmax"]

DEFAULT_MINER = {"contrastive": "random", "triplet": "batch_hard"}
DEFAULT_MARGIN = {"contrastive": 1.0, "triplet": 0.2}
_MINERS = {"contrastive": PAIR_MINERS, "triplet": TRIPLET_MINERS}
_QUERIES, _NEIGHBOURS = 8, 5  # the neighbour grid


def is_sharded(loader: object) -> bool:
    """Whether an evaluation loader gives each rank a share of its split: a
    :class:`~torch.utils.data.DistributedSampler` (what Lightning puts in under DDP unless
    ``--trainer.use_distributed_sampler false``), as the loader's sampler or its batch sampler's.
    """
    batch_sampler = getattr(loader, "batch_sampler", None)
    samplers = (getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None))
    return any(isinstance(s, DistributedSampler) for s in samplers)


def merge_gathered(gathered: Tensor, sharded: bool, size: int | None = None) -> Tensor:
    """One rank-ordered ``all_gather`` of per-sample rows ``(world, n, ...)`` as the split in
    dataset order, ``(N, ...)``.

    Sharded (:func:`is_sharded`): rank ``r`` embedded ``indices[r::world]`` of the unshuffled,
    padded ``DistributedSampler``, so interleaving the ranks restores the order and the first
    ``size`` rows are the split. Otherwise every rank embedded the whole split: rank 0's copy.

    >>> g = torch.tensor([[0, 2, 4], [1, 3, 0]])  # 5 samples over 2 ranks, one padded
    >>> merge_gathered(g, True, 5).tolist(), merge_gathered(g, False).tolist()
    ([0, 1, 2, 3, 4], [0, 2, 4])
    """
    out = gathered.transpose(0, 1).reshape(-1, *gathered.shape[2:]) if sharded else gathered[0]
    return out[:size] if size is not None else out


def _length(ds: object) -> int | None:
    return len(ds) if ds is not None and hasattr(ds, "__len__") else None


class EmbeddingTask(Task):
    """Trains an :class:`~visrep.models.embedding.EmbeddingNet` for verification and retrieval.

    Args:
        backbone: the tower, any registered backbone with its options (as for
            :class:`~visrep.tasks.ClassificationTask`).
        dim: embedding size; 0 keeps the pooled backbone features.
        hidden: width of a hidden projection layer (an MLP head); None: linear.
        normalize: L2-normalise the embeddings (distances then lie in [0, 2]).
        loss: ``contrastive`` (pairs), ``triplet`` or ``softmax`` (the classifier baseline).
        miner: pair miner for ``contrastive`` (``all``, ``random``, ``hard``; default
            ``random``), triplet miner for ``triplet`` (``all``, ``batch_hard``, ``semi_hard``,
            ``distance_weighted``; default ``batch_hard``); none for ``softmax``.
        margin: the loss margin ``m > 0`` (default 1.0 for contrastive, 0.2 for triplet).
        squared: triplet loss (and semi-hard mining) on squared distances (FaceNet).
        optim: optimiser and schedule.
        far: the false accept rates at which TAR is reported (``test/tar@far=1e-2`` ...).
        recall_k: the k of ``recall@k``.
        max_pairs: verification uses every pair of a split up to this many, else a seeded
            uniform sample of this many pairs.
        tsne_points: at most this many test embeddings in the t-SNE plot (seeded subset).
    """

    monitor = ("val/auc", "max")
    families = ("classification", "identity")
    input_key = IMAGE
    embeds = True

    def __init__(
        self,
        backbone: BackboneFactory = small_cnn,
        dim: int = 128,
        hidden: int | None = None,
        normalize: bool = True,
        loss: Loss = "triplet",
        miner: str | None = None,
        margin: float | None = None,
        squared: bool = False,
        optim: OptimConfig | None = None,
        far: tuple[float, ...] = (1e-3, 1e-2, 1e-1),
        recall_k: tuple[int, ...] = (1, 2, 4, 8),
        max_pairs: int = 1_000_000,
        tsne_points: int = 2000,
    ) -> None:
        super().__init__(optim)
        if loss not in ("contrastive", "triplet", "softmax"):
            raise ConfigError(f"model.loss must be contrastive, triplet or softmax, got {loss!r}")
        if dim < 0:
            raise ConfigError(f"model.dim must be >= 0 (0: the pooled features), got {dim}")
        if margin is not None:
            check_margin(margin, "model.margin")
        if squared and loss != "triplet":
            raise ConfigError(f"model.squared applies to the triplet loss, not {loss!r}")
        if not far or any(not 0 < f <= 1 for f in far):
            raise ConfigError(f"model.far must be rates in (0, 1], got {list(far)}")
        if not recall_k or any(k < 1 for k in recall_k):
            raise ConfigError(f"model.recall_k must be integers >= 1, got {list(recall_k)}")
        if max_pairs < 1 or tsne_points < 4:
            raise ConfigError(
                f"model.max_pairs must be >= 1 and model.tsne_points >= 4, got {max_pairs} "
                f"and {tsne_points}"
            )
        self.miner = self._build_miner(loss, miner, margin, squared)
        self.margin = margin if margin is not None else DEFAULT_MARGIN.get(loss)
        self.backbone_spec = BACKBONES.spec(backbone)
        self._warned: set[str] = set()
        self.save_hyperparameters()
        self.hparams["backbone"] = self.backbone_spec  # plain data, whatever form was given

    @staticmethod
    def _build_miner(
        loss: str, miner: str | None, margin: float | None, squared: bool
    ) -> nn.Module | None:
        if loss == "softmax":
            if miner is not None:
                raise ConfigError(f"model.miner {miner!r}: the softmax loss mines nothing")
            return None
        table = _MINERS[loss]
        name = DEFAULT_MINER[loss] if miner is None else miner
        if name not in table:
            raise ConfigError(
                f"model.miner {name!r} is not a {loss} miner; choose from {', '.join(table)}"
            )
        cls = table[name]
        options = inspect.signature(cls).parameters
        kwargs: dict[str, Any] = {}
        if "margin" in options:
            kwargs["margin"] = margin if margin is not None else DEFAULT_MARGIN[loss]
        if "squared" in options:
            kwargs["squared"] = squared
        return cls(**kwargs)

    # -- model -----------------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        hp = self.hparams
        classes = spec.num_classes if hp.loss == "softmax" else 0
        if hp.loss == "softmax" and classes < 2:
            raise ConfigError(f"model.loss softmax needs >= 2 classes, the data has {classes}")
        backbone = BACKBONES.build(self.backbone_spec, spec.in_chans, 0, spec.image_size)
        self.net = EmbeddingNet(
            backbone, spec.mean, spec.std, hp.dim, hp.hidden, hp.normalize, num_classes=classes
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    # -- training --------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, y = batch[IMAGE], batch[LABEL]
        n = len(y)
        if self.miner is None:
            _, logits = self.net.logits(x)
            loss = F.cross_entropy(logits, y)
            acc = (logits.argmax(-1) == y).float().mean()
            self.log("train/acc", acc, on_step=False, on_epoch=True, batch_size=n)
        else:
            emb = self.net(x)
            tuples = self._mine(emb, y)
            if self.hparams.loss == "contrastive":
                loss = contrastive_loss(emb, tuples, self.margin)
            else:
                loss = triplet_loss(emb, tuples, self.margin, self.hparams.squared)
            self.log("train/tuples", float(len(tuples[0])), on_step=False, on_epoch=True,
                     batch_size=n)  # fmt: skip
        self.log("train/loss", loss, on_step=False, on_epoch=True, sync_dist=True,
                 prog_bar=True, batch_size=n)  # fmt: skip
        return loss

    def _mine(self, emb: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        try:
            return self.miner(emb.detach(), y)
        except DataError as e:
            _, counts = torch.unique(y, return_counts=True)
            if counts.numel() >= 2 and int(counts.max()) >= 2:
                raise
            raise DataError(
                f"a training batch of {len(y)} samples has {counts.numel()} class(es) of sizes "
                f"{counts.tolist()[:8]}: mining needs >= 2 classes and one with >= 2 samples; "
                "use P x K batches: --data.loader.classes_per_batch P "
                "--data.loader.samples_per_class K"
            ) from e

    # -- evaluation ------------------------------------------------------------------------------
    def _start(self) -> None:
        self._outputs: list[tuple[Tensor, Tensor]] = []

    def _collect(self, batch: Batch) -> None:
        self._outputs.append((self.net(batch[IMAGE]).detach(), batch[LABEL].detach()))

    def _gathered(self) -> tuple[Tensor, Tensor]:
        """All embeddings and labels of the split, in dataset order, on every rank (see
        :func:`merge_gathered`)."""
        emb = torch.cat([e for e, _ in self._outputs]).float()
        labels = torch.cat([y for _, y in self._outputs]).long()
        self._outputs = []
        world = self.trainer.world_size if self._trainer is not None else 1
        if world > 1:
            loader = self._eval_loader()
            split, size = is_sharded(loader), _length(getattr(loader, "dataset", None))
            emb = merge_gathered(self.all_gather(emb), split, size)
            labels = merge_gathered(self.all_gather(labels), split, size)
        return emb, labels

    def _eval_loader(self) -> object | None:
        """The loader of the split being evaluated (the first one), None when unknown."""
        if self._trainer is None:
            return None
        t = self.trainer
        loaders = t.test_dataloaders if t.testing else t.val_dataloaders
        if isinstance(loaders, list | tuple):
            loaders = loaders[0] if loaders else None
        return loaders

    def _split_size(self) -> int | None:
        """The number of samples of the evaluated split, None when unknown."""
        return _length(getattr(self._eval_loader(), "dataset", None))

    def _pairs(self, stage: str, labels: Tensor) -> Tensor:
        """The data module's ``<stage>_pairs`` within the collected samples, else all pairs.

        Rows of the pair list that index samples beyond those evaluated (a split cut short by
        ``limit_<stage>_batches``) are dropped, with a warning."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        given = getattr(dm, f"{stage}_pairs", None)
        if isinstance(given, Tensor) and len(given):
            p = given.to(labels.device).long()
            inside = (p[:, :2] < len(labels)).all(1)
            p = p[inside]
            if not bool(inside.all()):
                rest = f"the {len(p)} others" if len(p) else "all pairs of those samples instead"
                self._warn_once(
                    f"{stage}_pairs",
                    f"{stage}_pairs: {len(inside) - len(p)} of the {len(inside)} pairs index "
                    f"samples beyond the {len(labels)} evaluated and are dropped; verification "
                    f"uses {rest}",
                )
            if len(p):
                return p
        return split_pairs(labels, self.hparams.max_pairs, seed=0)

    def _warn_once(self, key: str, message: str) -> None:
        """One warning (rank 0) per ``key`` for the life of the task."""
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message)

    def _watcher(self, stage: str) -> str | None:
        """A callback monitoring a ``<stage>/`` metric (``ModelCheckpoint(monitor='val/auc')``,
        early stopping), which fails when the metric is missing; None when there is none."""
        for cb in self.trainer.callbacks if self._trainer is not None else []:
            monitor = getattr(cb, "monitor", None)
            if isinstance(monitor, str) and monitor.startswith(f"{stage}/"):
                return f"{type(cb).__name__}(monitor={monitor!r})"
        return None

    def _evaluate(self, stage: str) -> dict[str, Any] | None:
        """The metrics of the collected split, logged; None when there is nothing to measure.

        Lightning's sanity check (two validation batches) measures nothing. A split cut short
        by ``limit_<stage>_batches`` whose evaluated samples cannot be measured (one class, or
        no class with two samples) is skipped with a warning; the whole split raises.
        """
        if self._trainer is not None and self.trainer.sanity_checking:
            self._outputs = []
            return None
        emb, labels = self._gathered()
        pairs = self._pairs(stage, labels)
        same = pairs[:, 2]
        positives = int(same.sum())
        if positives in (0, len(same)):
            size = self._split_size()
            what = f"{positives} same-class pairs of {len(same)}: verification needs both"
            if size is None or len(labels) >= size:
                raise DataError(
                    f"the {stage} split ({len(labels)} samples evaluated) gives {what} (more "
                    "samples or classes per split)"
                )
            cut = f"the {len(labels)} evaluated samples of the {size} of the {stage} split"
            watcher = self._watcher(stage)
            if watcher is not None:  # skipping would leave it without its metric
                raise DataError(
                    f"{cut} (limit_{stage}_batches) give {what}, and {watcher} needs "
                    f"{stage} metrics: evaluate more of the split or raise "
                    "--data.loader.eval_batch_size"
                )
            self._warn_once(
                f"{stage}_degenerate",
                f"{cut} (limit_{stage}_batches) give {what}; no {stage} metrics are logged",
            )
            return None
        d = pair_distances(emb, pairs)
        values = verification_metrics(d, same, self.hparams.far)
        values |= retrieval_metrics(emb, labels, self.hparams.recall_k)
        for key, value in values.items():
            self.log(f"{stage}/{key}", value, sync_dist=True,
                     prog_bar=key in ("auc", "recall@1") and stage == "val")  # fmt: skip
        return {"emb": emb, "labels": labels, "distances": d, "same": same, "values": values}

    def on_validation_epoch_start(self) -> None:
        self._start()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._collect(batch)

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def on_test_epoch_start(self) -> None:
        self._start()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._collect(batch)

    def on_test_epoch_end(self) -> None:
        out = self._evaluate("test")
        self._test_results = (
            {k: v.cpu() if isinstance(v, Tensor) else v for k, v in out.items()} if out else None
        )

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return {"embedding": self.net(batch[IMAGE]).detach().cpu()}

    # -- what the trainer calls ------------------------------------------------------------------
    def predict_rows(self, outputs: list[dict[str, Tensor]]) -> list[dict[str, Any]]:
        """The embedding of each image, one column per dimension: ``z0 ... z{D-1}``."""
        rows = []
        for out in outputs:
            for e in out["embedding"].tolist():
                rows.append({f"z{i}": round(v, 6) for i, v in enumerate(e)})
        return rows

    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: the ROC, the distance histograms, a neighbour grid and a t-SNE plot."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        self._test_results = None
        values, d, same = results["values"], results["distances"], results["same"].bool()
        far, tar, _ = roc_curve(d, same)
        fars = ", ".join(f"TAR@{far_key(f)} {values[f'tar@far={far_key(f)}']:.3f}"
                         for f in self.hparams.far)  # fmt: skip
        name = f"test: AUC {values['auc']:.4f}, EER {values['eer']:.4f}"
        plot_roc({name: (far, tar)}, run.plots / "roc.png", f"verification ({fars})")
        plot_distance_histogram(
            d[same], d[~same], run.plots / "distance_histogram.png", values["threshold"],
            title=f"test pair distances (best accuracy {values['accuracy']:.3f})",
        )  # fmt: skip
        names = list(self.spec.class_names) if self.spec is not None else []
        emb, labels = results["emb"], results["labels"]
        self._plot_neighbours(run, emb, labels, names)
        self._plot_tsne(run, emb, labels, names)
        return {"test/pairs": len(same), "test/same_pairs": int(same.sum())}

    def _plot_neighbours(self, run: RunDir, emb: Tensor, labels: Tensor, names: list[str]) -> None:
        """Queries spread over the test split and their nearest other test samples."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        ds = getattr(dm, "test_set", None)
        if ds is None or len(emb) < 2 or len(ds) < len(emb):
            return
        k = min(_NEIGHBOURS, len(emb) - 1)
        queries = np.unique(np.linspace(0, len(emb) - 1, min(_QUERIES, len(emb))).round()).astype(
            int
        )
        near = nearest_indices(emb, emb, k, "l2", exclude_self=True)[torch.from_numpy(queries)]
        dist = neighbour_distances(emb[queries], emb, near, "l2")  # (Q, k)

        def image(i: int) -> Tensor:
            return torch.as_tensor(ds[int(i)][IMAGE]).float()

        def label(c: int) -> str:
            return names[c] if c < len(names) else str(c)

        plot_neighbours(
            torch.stack([image(q) for q in queries]),
            torch.stack([torch.stack([image(j) for j in row]) for row in near.tolist()]),
            run.plots / "neighbours.png",
            [f"query: {label(int(labels[q]))}" for q in queries],
            [[f"{label(int(labels[j]))} {float(dd):.2f}" for j, dd in zip(row, drow, strict=True)]
             for row, drow in zip(near.tolist(), dist, strict=True)],
        )  # fmt: skip

    def _plot_tsne(self, run: RunDir, emb: Tensor, labels: Tensor, names: list[str]) -> None:
        """t-SNE (van der Maaten & Hinton 2008) of at most ``tsne_points`` test embeddings."""
        n = len(emb)
        if n < 4:
            return
        idx = subsample(n, self.hparams.tsne_points, seed=0)
        points = tsne(emb[idx].numpy(), seed=0)
        m = len(idx)
        title = f"t-SNE of {m} test embeddings" + (f" (of {n})" if m < n else "")
        plot_embedding(points, labels[idx].numpy(), run.plots / "tsne.png", names, title)
