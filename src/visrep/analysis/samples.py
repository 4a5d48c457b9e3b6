"""The pieces of a loaded run the analysis tools work on: its classifier, a split, samples of it.

Every tool takes its images the same way: :func:`spread_batch` spreads them evenly over a split
(class-sorted folders would otherwise give one class), :func:`random_batch` draws them seeded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from visrep.analysis.runs import LoadedRun, spread_indices
from visrep.data.samples import IMAGE, LABEL, collate
from visrep.errors import ConfigError

__all__ = ["batches", "classifier", "random_batch", "split_dataset", "spread_batch", "take"]


def classifier(run: LoadedRun, tool: str, needs: str = "forward_features") -> nn.Module:
    """The image classifier ``run.task.net`` in eval mode.

    Args:
        run: a loaded run.
        tool: the command asking, for the error message (e.g. ``"visrep attack"``).
        needs: a method the classifier must have (``forward_features``, ``embed`` ...).

    Raises:
        ConfigError: the task has no such classifier (not an image classification run).
    """
    net = getattr(run.task, "net", None)
    if not isinstance(net, nn.Module) or not hasattr(net, needs):
        raise ConfigError(
            f"{run.checkpoint}: {tool} needs an image classifier (task.net with {needs}), "
            f"got {type(run.task).__name__}"
        )
    return net.eval()


def split_dataset(run: LoadedRun, split: str) -> Dataset:
    """The ``train``, ``val`` or ``test`` dataset of the run's data module (set up here).

    Raises:
        ConfigError: the run has no data config, or its data module has no such split.
    """
    if run.datamodule is None:
        raise ConfigError(
            f"{run.run.root}: no config.yaml with a data section to draw samples from"
        )
    run.datamodule.setup()
    ds = getattr(run.datamodule, f"{split}_set", None)
    if ds is None or len(ds) == 0:
        raise ConfigError(f"--split {split}: the run's data module has no {split} split")
    return ds


def take(ds: Dataset, indices: Sequence[int], batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """The samples ``indices`` of ``ds`` stacked: images ``(N, ...)`` and labels ``(N,)``."""
    xs, ys = [], []
    for x, y in batches(Subset(ds, list(indices)), batch_size):
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def spread_batch(ds: Dataset, n: int) -> tuple[Tensor, Tensor]:
    """At most ``n`` samples spread evenly over ``ds``, first and last included."""
    return take(ds, spread_indices(len(ds), n))


def random_batch(ds: Dataset, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """At most ``n`` samples of ``ds`` drawn without replacement, seeded."""
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    return take(ds, idx.tolist())


def batches(ds: Dataset, batch_size: int = 256) -> Iterator[tuple[Tensor, Tensor]]:
    """``(images, labels)`` batches of an image classification dataset (sample dicts), in order."""
    for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate):
        if IMAGE not in batch or LABEL not in batch:
            raise ConfigError(
                f"the analysis tools need image classification samples (image, label), got "
                f"{', '.join(batch)}"
            )
        yield batch[IMAGE], batch[LABEL]


def class_names(task: L.LightningModule) -> list[str]:
    """The class names a task was trained with (from its data spec), or ``[]``."""
    spec = getattr(task, "spec", None)
    return list(getattr(spec, "class_names", None) or task.hparams.get("class_names") or [])


def input_size(task: L.LightningModule) -> tuple[int, int, int] | None:
    """The image input ``(C, H, W)`` a task was trained on, or None when not recorded."""
    spec = getattr(task, "spec", None)
    if spec is not None and spec.in_chans and spec.image_size:
        return (spec.in_chans, *spec.image_size)
    hp = task.hparams
    if hp.get("in_chans") and hp.get("image_size"):
        return (hp["in_chans"], *hp["image_size"])
    return None


def backbone_name(task: L.LightningModule) -> str | None:
    """The registered name of a task's backbone (``resnet18``), from its hyper-parameters."""
    b = task.hparams.get("backbone")
    if isinstance(b, Mapping):
        b = b.get("class_path")
    return b.rpartition(".")[2] if isinstance(b, str) else None
