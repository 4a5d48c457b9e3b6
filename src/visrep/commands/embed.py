"""``visrep embed RUN_DIR --split test -o out.npz``: the embeddings of a run's data split (or of
image files) with labels and file names, as an ``.npz``.

Any run whose task embeds images (``Task.embeds``): an :class:`~visrep.tasks.EmbeddingTask` (its
embedding), a :class:`~visrep.tasks.ClassificationTask` (the pooled penultimate features the
classifier reads), an autoencoder (its code) or a VAE (the posterior mean ``mu``).
"""

from __future__ import annotations

import contextlib
import inspect
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from visrep.analysis.interpret import embed as embed_features
from visrep.analysis.runs import load_run
from visrep.analysis.samples import class_names, split_dataset
from visrep.commands._common import (
    Command,
    Split,
    Which,
    check_positive,
    resolve_device,
    run_command,
)
from visrep.data.classification.files import list_images
from visrep.data.datasets import ImageFileDataset
from visrep.data.samples import IMAGE
from visrep.errors import ConfigError
from visrep.runs import RunDir


def embed(
    run_dir: str,
    *,
    split: Split = "test",
    path: str | None = None,
    out: str | None = None,
    batch_size: int = 256,
    device: str = "auto",
    which: Which = "best",
) -> int:
    """Write the embeddings of a run's data split (or of image files) to an .npz.

    The npz holds ``embeddings`` (float32 ``(N, D)``), ``labels`` (int64 ``(N,)``, -1 where
    unknown), ``files`` (each sample's file where the data knows it, else ``""``), ``indices``
    (the sample's index in the split), ``split`` and ``class_names``. The model is the run's
    ``net.embed``: an embedding run's embedding, a classifier's pooled penultimate features, an
    autoencoder's code or a VAE's posterior mean.

    Args:
        run_dir: a run directory (or a checkpoint inside one).
        split: the data split of the run's data module (train, val or test), in loader order.
        path: embed these image files instead (a file or a folder, searched recursively),
            converted and resized to what the model was trained on.
        out: the .npz to write (default: RUN_DIR/embeddings_<split>.npz, or embeddings_files.npz
            with --path).
        batch_size: images per forward pass.
        device: auto, cpu, cuda or cuda:N.
        which: the checkpoint of the run.
    """
    check_positive(batch_size=batch_size)
    if out is not None and not out.endswith(".npz"):
        raise ConfigError(f"--out must name an .npz file, got {out!r}")
    dev = resolve_device(device)
    loaded = load_run(run_dir, which, with_data=path is None)
    run = loaded.run
    net = getattr(loaded.task, "net", None)
    if not loaded.task.embeds or not isinstance(net, torch.nn.Module):
        # the task says so (Task.embeds): R-CNN's net.embed reads box crops, not images
        raise ConfigError(
            f"{loaded.checkpoint}: visrep embed needs a model with one embedding per image "
            f"(embedding, classification, autoencoder or VAE runs), got {type(loaded.task).__name__}"
        )
    if path is not None:
        if getattr(loaded.task, "input_key", IMAGE) != IMAGE:
            raise ConfigError(
                f"--path embeds image files; {loaded.checkpoint} reads "
                f"{loaded.task.input_key!r}: embed its data splits with --split"
            )
        spec = loaded.task.spec
        files = list_images(path)
        size = tuple(spec.image_size) if spec is not None and spec.image_size else None
        chans = spec.in_chans if spec is not None and spec.in_chans else 3
        ds: Dataset = ImageFileDataset(files, [-1] * len(files), chans, size)
        names, where = files, "files"
    else:
        ds = split_dataset(loaded, split)
        names, where = sample_files(loaded.datamodule, ds, split), split
    target = Path(out) if out is not None else run.root / f"embeddings_{where}.npz"
    inside = target.resolve().is_relative_to(run.root.resolve())
    if inside:
        run.lock().check()  # before the work, not after
    key = IMAGE if path is not None else getattr(loaded.task, "input_key", IMAGE)
    z, y = embed_features(net.to(dev).eval(), ds, batch_size, dev, key=key)
    emb, labels = z.numpy(), y.numpy()
    buf = io.BytesIO()
    np.savez(
        buf,
        embeddings=emb,
        labels=labels,
        files=np.asarray(names if names is not None else [""] * len(emb), dtype=str),
        indices=np.arange(len(emb), dtype=np.int64),
        split=np.asarray(where),
        class_names=np.asarray(class_names(loaded.task), dtype=str),
    )
    with run.lock() if inside else contextlib.nullcontext():
        RunDir(target.parent).write_bytes(target, buf.getvalue())
    print(f"wrote {target} ({emb.shape[0]} x {emb.shape[1]} embeddings of {where})")
    return 0


def sample_files(datamodule: object, ds: Dataset, split: str) -> list[str] | None:
    """The file of each sample of ``ds`` (the ``split`` of ``datamodule``), or None if unknown.

    Asks the data module (``sample_names(split)``), else follows ``Subset`` indices down to a
    dataset that lists its files (``paths``).
    """
    names = getattr(datamodule, "sample_names", None)
    if callable(names) and "split" in inspect.signature(names).parameters:
        got = list(names(split))
        if len(got) == len(ds):
            return got
    indices = np.arange(len(ds))
    base = ds
    while isinstance(base, Subset):
        indices = np.asarray(base.indices)[indices]
        base = base.dataset
    paths = getattr(base, "paths", None)
    if isinstance(paths, list | tuple) and len(paths) > int(indices.max(initial=-1)):
        return [str(paths[i]) for i in indices]
    return None


def main(argv: Sequence[str]) -> int:
    """Run ``visrep embed ...``; returns the exit code."""
    return run_command(Command(embed, aliases={"-o": "--out"}), "visrep embed", argv)
