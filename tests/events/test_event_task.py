"""The event classifier, the representation registry and the event classification task."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from tests.events.conftest import random_stream
from tests.events.test_datasets import digit_stream
from visrep.data.base import DataSpec, LoaderConfig, Splits
from visrep.errors import ConfigError
from visrep.events import (
    EventBatch,
    EventDataModule,
    EventStreamDataset,
    create_representation,
    list_representations,
)
from visrep.events.representations.registry import representation_shape
from visrep.models import create_backbone
from visrep.models.event_classifier import EventClassifier, rms_normalize
from visrep.plots.events import event_images
from visrep.runs import load_checkpoint
from visrep.tasks import EventClassificationTask, OptimConfig
from visrep.tasks.checkpoint import read_task_checkpoint
from visrep.tasks.event_classification import first_samples

SIZE = (20, 20)
FAST = {"est": {"init_steps": 0, "bins": 2}, "matrix_lstm": {"hidden_size": 4}}


class BandsDataModule(EventDataModule):
    """3 classes of synthetic streams: short lines at 0, 45 and 90 degrees."""

    def load(self) -> Splits:
        labels = np.arange(120) % 3
        ds = EventStreamDataset(
            [digit_stream(int(c), i, SIZE) for i, c in enumerate(labels)], labels
        )
        return Splits(ds, ds.targets, ["a", "b", "c"])


def _rep(name: str):
    try:
        return create_representation(name, SIZE, **FAST.get(name, {}))
    except ConfigError as e:
        if "not available" in str(e):
            pytest.skip(str(e))
        raise


@pytest.mark.parametrize("name", list_representations())
def test_registry_out_channels_match_the_output(name: str) -> None:
    rep = _rep(name)
    batch = EventBatch.from_streams(
        [random_stream(300, SIZE, seed=1), random_stream(50, SIZE, seed=2)]
    )
    out = rep(batch)
    assert out.shape[:2] == (2, rep.out_channels)
    assert representation_shape(rep, SIZE) == tuple(out.shape[1:])
    assert torch.isfinite(out).all()


def test_registry_errors() -> None:
    with pytest.raises(ConfigError, match="did you mean voxel"):
        create_representation("voxels", SIZE)
    with pytest.raises(ConfigError, match=r"no option\(s\) bin; accepted: bins"):
        create_representation("count", SIZE, bin=3)


def test_rms_normalize() -> None:
    x = torch.randn(3, 2, 5, 5) * (torch.rand(3, 2, 5, 5) > 0.6)
    x[2] = 0  # an empty sample
    y = rms_normalize(x)
    assert torch.equal(y == 0, x == 0) and torch.equal(y.sign(), x.sign())  # zeros, signs kept
    nz = y[:2].flatten(1)
    rms = (nz.square().sum(1) / (nz != 0).sum(1)).sqrt()
    assert torch.allclose(rms, torch.ones(2))  # unit RMS over the non-zero entries
    assert torch.allclose(rms_normalize(7.0 * x), y)  # invariant to the event rate


def test_event_classifier_shapes_and_interface() -> None:
    rep = create_representation("voxel", SIZE, bins=3)
    backbone = create_backbone("small_cnn", in_chans=3, num_classes=4, channels=(8, 16))
    net = EventClassifier(rep, backbone).eval()
    batch = EventBatch.from_streams([random_stream(200, SIZE, seed=s) for s in range(5)])
    logits = net(batch)
    assert logits.shape == (5, 4)
    assert net.embed(batch).shape == (5, 16)
    assert torch.allclose(logits, backbone.forward_head(net.forward_features(batch)))
    assert torch.allclose(net.frames(batch), rms_normalize(rep(batch)))
    with pytest.raises(ConfigError, match="input_norm"):
        EventClassifier(rep, backbone, input_norm="minmax")


def test_first_samples_and_frame_image() -> None:
    streams = [random_stream(n, SIZE, seed=n) for n in (5, 0, 7, 3)]
    batch = EventBatch.from_streams(streams)
    head = first_samples(batch, 3)
    assert len(head) == 3 and head.num_events == 12
    assert torch.equal(head.t, batch.t[:12])
    frames = torch.zeros(2, 2, 3, 3)
    frames[0, 1, 0, 0] = 4.0  # ON
    frames[0, 0, 2, 2] = 2.0  # OFF
    img = event_images(frames, "count")
    assert img.shape == (2, 3, 3, 3) and img.min() >= 0 and img.max() <= 1
    on, off = img[0, :, 0, 0], img[0, :, 2, 2]
    assert on[0] > 0.8 > 0.2 > on[1:].max() and off[2] > 0.8 > 0.4 > off[:2].max()
    assert torch.equal(img[1], torch.ones(3, 3, 3))  # no events: white


def _trainer(tmp_path: Path, epochs: int, **kw) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        deterministic=True,
        **kw,
    )


def test_task_learns_and_checkpoint_round_trips(tmp_path: Path) -> None:
    L.seed_everything(0)
    dm = BandsDataModule(loader=LoaderConfig(batch_size=16))
    task = EventClassificationTask(
        representation="count",
        backbone={"class_path": "small_cnn", "init_args": {"channels": [8, 16]}},
        optim=OptimConfig(optimizer="adam", lr=1e-2, weight_decay=0),
    )
    trainer = _trainer(tmp_path, 5, enable_checkpointing=False)
    trainer.fit(task, dm)
    assert task.spec.num_classes == 3 and task.spec.sensor_size == (20, 20)
    res = trainer.test(task, dm, verbose=False)[0]
    assert res["test/acc"] > 0.9  # chance is 1/3
    images = task._test_results["samples"][0]
    assert images.shape == (24, 3, 20, 20) and images.max() <= 1
    # the checkpoint holds plain values: it loads with weights_only and rebuilds the same net
    ckpt = tmp_path / "task.ckpt"
    trainer.save_checkpoint(ckpt)
    assert not {"in_chans", "image_size", "mean", "std"} & set(task.hparams)
    assert load_checkpoint(ckpt)["visrep"]["data_spec"]["sensor_size"] == [20, 20]
    loaded = read_task_checkpoint(ckpt).build()  # weights_only=True, classes allow-listed
    batch = next(iter(dm.test_dataloader()))["events"]
    task.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(batch), task(batch), atol=1e-6)


@pytest.mark.parametrize("name", ["est", "matrix_lstm"])
def test_learnable_representation_trains_end_to_end(name: str) -> None:
    _rep(name)  # skip when unavailable
    torch.manual_seed(0)
    task = EventClassificationTask(
        representation=name,
        representation_args=FAST[name],
        backbone={"class_path": "small_cnn", "init_args": {"channels": [8]}},
    )
    spec = DataSpec(family="events", keys=("events", "label"), num_classes=3, sensor_size=SIZE)
    task.setup_spec(spec)
    batch = EventBatch.from_streams([digit_stream(c, c, SIZE) for c in range(3)])
    loss = task._loss(task(batch), torch.arange(3))
    loss.backward()
    grads = [p.grad for p in task.net.representation.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
