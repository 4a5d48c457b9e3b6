"""The Task contract, for every task family visrep ships: fit one batch, validate, test,
predict, and the run directory's artifacts written by the trainer's task-agnostic callbacks.

A new family adds its class and a tiny data module to ``DATA`` below; the first test fails
until it does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from tests.data.test_keypoints_data import write_dot_images
from tests.data.test_stereo_data import write_synthetic_pairs
from tests.data.test_vos_data import _davis
from tests.events.conftest import random_stream
from tests.tasks.test_detection import write_shapes_voc
from tests.test_pointcloud_seg import write_scenes
from visrep.data import DavisVosDataModule, DigitsDataModule
from visrep.data.base import (
    DataSpec,
    ImageDataModule,
    LoaderConfig,
    SplitConfig,
    SplitDataModule,
    Splits,
)
from visrep.data.correspondence import (
    HomographyPairsDataModule,
    PairConfig,
    PhotoSource,
    SiftConfig,
)
from visrep.data.correspondence.lift_patches import LiftPatchDataModule
from visrep.data.detection import VOCDetectionDataModule
from visrep.data.generative import GaussianMixtureDataModule, UnpairedImageDataModule
from visrep.data.keypoints import KeypointDataModule
from visrep.data.pointcloud import ModelNetDataModule, PointSegmentationDataModule
from visrep.data.samples import image_sample
from visrep.data.stereo import StereoAugment, StereoDataModule
from visrep.data.video import (
    MovingDigitsDataModule,
    MovingDigitsForecastDataModule,
    MovingDigitsGestureDataModule,
)
from visrep.events import EventDataModule, EventStreamDataset
from visrep.runs import RunDir
from visrep.tasks import (
    AutoencoderTask,
    ClassificationTask,
    ColorizationTask,
    CorrespondenceTask,
    CycleGANTask,
    DetectionTask,
    EmbeddingTask,
    EventClassificationTask,
    FramePredictionTask,
    GANTask,
    KeypointTask,
    LiftTask,
    PhasedLSTMEventTask,
    PointCloudClassificationTask,
    PointSegmentationTask,
    SegmentationTask,
    SequenceLabelingTask,
    StereoDepthTask,
    Task,
    VAETask,
    VideoClassificationTask,
    VideoObjectSegmentationTask,
    task_classes,
)
from visrep.tasks.checkpoint import read_task_checkpoint
from visrep.trainer.callbacks import MetricsFile, PredictionWriter, RandomState, RunArtifacts


class TinyEvents(EventDataModule):
    """30 random streams on a 12x12 sensor, 3 classes."""

    def load(self) -> Splits:
        labels = np.arange(30) % 3
        ds = EventStreamDataset([random_stream(40, (12, 12), seed=i) for i in range(30)], labels)
        return Splits(ds, ds.targets, ["a", "b", "c"])


class TinySegmentation(SplitDataModule):
    """40 random 1x12x10 images; the mask is 1 where a pixel is bright, 255 (ignored) on a border."""

    def load(self) -> Splits:
        g = torch.Generator().manual_seed(0)
        images = torch.rand(40, 1, 12, 10, generator=g)
        masks = (images[:, 0] > 0.5).long()
        masks[:, 0, :] = 255
        ds = [{"image": x, "mask": m} for x, m in zip(images, masks, strict=True)]
        return Splits(ds, None, ["dark", "bright"])

    def spec(self) -> DataSpec:
        return DataSpec(
            family="segmentation", keys=("image", "mask"), in_chans=1, image_size=(12, 10),
            num_classes=2, class_names=("dark", "bright"), mean=(0.5,), std=(0.29,),
            ignore_index=255, class_weights=(1.0, 1.0),
        )  # fmt: skip


class TinyColour(ImageDataModule):
    """30 random smooth RGB 12x10 images (labels unused): the colourisation task's data."""

    def load(self) -> Splits:
        g = torch.Generator().manual_seed(0)
        low = torch.rand(30, 3, 3, 3, generator=g)
        images = torch.nn.functional.interpolate(low, size=(12, 10), mode="bilinear")
        return Splits([image_sample(x, 0) for x in images], None, ["image"])


def unpaired_tree(root: Path, train: int = 8, test: int = 4, size: int = 16) -> Path:
    """CycleGAN's layout: ``trainA``, ``trainB``, ``testA``, ``testB`` of random grey PNGs (A
    dark, B bright)."""
    from PIL import Image

    g = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for domain, low in (("A", 0), ("B", 128)):
            folder = root / f"{split}{domain}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = g.integers(low, low + 128, (size, size), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


_SMALL = {"class_path": "small_cnn", "init_args": {"channels": [4, 8], "convs_per_stage": 1}}
_LOADER = LoaderConfig(batch_size=16)
DATA: dict[type[Task], Callable[[], tuple[Task, L.LightningDataModule]]] = {
    ClassificationTask: lambda: (
        ClassificationTask(backbone=_SMALL),
        DigitsDataModule(loader=_LOADER, split=SplitConfig(train_samples=64)),
    ),
    SegmentationTask: lambda: (
        SegmentationTask(model={"class_path": "unet", "init_args": {"width": 4, "depth": 2}}),
        TinySegmentation(loader=_LOADER, split=SplitConfig(stratify=False)),
    ),
    ColorizationTask: lambda: (
        ColorizationTask(model={"class_path": "unet", "init_args": {"width": 4, "depth": 1}}),
        TinyColour(loader=_LOADER, split=SplitConfig(stratify=False)),
    ),
    EventClassificationTask: lambda: (
        EventClassificationTask(representation="count", backbone=_SMALL),
        TinyEvents(loader=_LOADER),
    ),
    PhasedLSTMEventTask: lambda: (
        PhasedLSTMEventTask(embed_dim=4, hidden_size=6, max_events=16),
        TinyEvents(loader=_LOADER),
    ),
    DetectionTask: lambda: (
        DetectionTask(
            model={
                "class_path": "faster_rcnn",
                "init_args": {
                    "backbone": _SMALL,
                    "fpn_channels": 8,
                    "min_size": 64,
                    "max_size": 64,
                    "roi_batch_size": 16,
                },
            }
        ),
        VOCDetectionDataModule(
            str(
                write_shapes_voc(
                    Path(tempfile.mkdtemp()) / "voc", {"train": 4, "val": 2, "test": 2}
                )
            ),
            loader=LoaderConfig(batch_size=2),
        ),
    ),
    EmbeddingTask: lambda: (
        EmbeddingTask(backbone=_SMALL, dim=8),  # triplet loss, batch-hard triplets
        DigitsDataModule(
            loader=LoaderConfig(batch_size=16, classes_per_batch=4, samples_per_class=4),
            split=SplitConfig(train_samples=64),
        ),
    ),
    AutoencoderTask: lambda: (
        AutoencoderTask(backbone=_SMALL, code_size=4, noise="masking", sparsity=0.01),
        DigitsDataModule(loader=_LOADER, split=SplitConfig(train_samples=64)),
    ),
    VAETask: lambda: (
        VAETask(backbone=_SMALL, latent_size=2, iw_samples=4),
        DigitsDataModule(loader=_LOADER, split=SplitConfig(train_samples=64)),
    ),
    GANTask: lambda: (
        GANTask(
            generator="mlp",
            latent_size=2,
            hidden=8,
            depth=1,
            eval_samples=50,
            kid_subset_size=10,
            ema=0.9,
        ),
        GaussianMixtureDataModule(train_size=64, val_size=32, test_size=32, loader=_LOADER),
    ),
    CycleGANTask: lambda: (
        CycleGANTask(width=4, n_blocks=1, n_down=1, d_layers=1),
        UnpairedImageDataModule(
            str(unpaired_tree(Path(tempfile.mkdtemp()) / "unpaired")),
            loader=LoaderConfig(batch_size=4),
            split=SplitConfig(val_fraction=0.25),
        ),
    ),
    PointCloudClassificationTask: lambda: (
        PointCloudClassificationTask(net={"class_path": "pointnet", "init_args": {"width": 16}}),
        ModelNetDataModule(
            str(point_clouds(Path(tempfile.mkdtemp()) / "clouds.npz")), loader=_LOADER
        ),
    ),
    PointSegmentationTask: lambda: (
        PointSegmentationTask(net={"class_path": "pointnet_seg", "init_args": {"width": 16}}),
        PointSegmentationDataModule(
            str(
                write_scenes(Path(tempfile.mkdtemp()) / "scenes", {"train": 4, "val": 1, "test": 2})
            ),
            loader=LoaderConfig(batch_size=2),
        ),
    ),
    CorrespondenceTask: lambda: (
        CorrespondenceTask(depth=1, width=8, geometry_after_steps=0),
        HomographyPairsDataModule(
            sources=[PhotoSource(builtin="skimage")],
            pairs_per_photo=1,
            pair=PairConfig(image_size=128),
            sift=SiftConfig(max_keypoints=150),
            cache_dir=tempfile.mkdtemp(),
            loader=LoaderConfig(batch_size=4),
        ),
    ),
    VideoClassificationTask: lambda: (
        VideoClassificationTask(
            net={"class_path": "early_fusion", "init_args": {"backbone": _SMALL}}
        ),
        MovingDigitsDataModule(
            num_frames=4,
            image_size=(16, 16),
            digit_size=8,
            speeds=(1.0, 2.0),
            train_clips=32,
            val_clips=16,
            test_clips=16,
            loader=_LOADER,
        ),
    ),
    VideoObjectSegmentationTask: lambda: (
        VideoObjectSegmentationTask("reconvnet", (4, 8, 8), (2,), _SMALL, crop_size=16),
        DavisVosDataModule(
            str(_three_sequences(Path(tempfile.mkdtemp()))),
            train_sequences=["one"],
            val_sequences=["three"],
            test_sequences=["two"],
            size=(16, 24),
            episode_frames=3,
            episodes_per_epoch=4,
            loader=LoaderConfig(batch_size=2),
        ),
    ),
    SequenceLabelingTask: lambda: (
        SequenceLabelingTask(backbone=_SMALL, head="ldcrf", hidden_per_label=2),
        MovingDigitsGestureDataModule(
            num_frames=10,
            image_size=(16, 16),
            digit_size=8,
            speed=(1.5, 2.0),
            part_frames=(2, 3),
            train_clips=16,
            val_clips=8,
            test_clips=8,
            loader=LoaderConfig(batch_size=8),
        ),
    ),
    FramePredictionTask: lambda: (
        FramePredictionTask(
            net={
                "class_path": "convlstm_forecaster",
                "init_args": {"hidden_dims": [4], "kernel_size": 3, "patch_size": 2},
            }
        ),
        MovingDigitsForecastDataModule(
            input_frames=3,
            future_frames=2,
            image_size=(16, 16),
            digit_size=8,
            speed=(1.5, 1.5),
            train_sequences=32,
            val_sequences=16,
            test_sequences=16,
            loader=_LOADER,
        ),
    ),
    StereoDepthTask: lambda: (
        StereoDepthTask(encoder_channels=(4, 8, 8, 8), decoder_channels=(8, 8, 4, 4)),
        StereoDataModule(
            str(write_synthetic_pairs(Path(tempfile.mkdtemp()) / "stereo", n=5)),
            size=(16, 32),
            augment=StereoAugment(crop=(16, 24)),
            loader=LoaderConfig(batch_size=2),
            split=SplitConfig(val_fraction=0.25),
        ),
    ),
    KeypointTask: lambda: (
        KeypointTask(stages=2, width=8, pools=1, stage_depth=1, limbs=[(0, 1)]),
        KeypointDataModule(
            str(write_dot_images(Path(tempfile.mkdtemp()) / "dots", n=12)),
            num_keypoints=2,
            channels=1,
            test_files=["im0[0-2].png"],
            loader=LoaderConfig(batch_size=4),
            split=SplitConfig(val_fraction=0.25, stratify=False),
        ),
    ),
    LiftTask: lambda: (
        LiftTask(crop_size=20, det_kernel=5, dim=16, ori_width=4, desc_width=4, stages=["joint"]),
        LiftPatchDataModule(
            sources=[PhotoSource(builtin="skimage")],
            pairs_per_photo=1,
            pair=PairConfig(image_size=128),
            points_per_pair=8,
            patch_size=32,
            loader=LoaderConfig(batch_size=16),
        ),
    ),
}


def _three_sequences(root: Path) -> Path:
    """The VOS test folder (sequences one, two) with a copy of two as three (a val sequence)."""
    import shutil

    _davis(root)
    for sub in ("JPEGImages", "Annotations"):
        shutil.copytree(root / sub / "480p" / "two", root / sub / "480p" / "three")
    return root


def point_clouds(path: Path, n: int = 40) -> Path:
    """A ModelNet-layout npz: ``n`` training and 8 test clouds of 32 points in 2 classes."""
    g = np.random.default_rng(0)
    y = np.arange(n + 8) % 2
    x = g.normal(size=(n + 8, 32, 3)) * (1 + y[:, None, None])
    np.savez(path, x_train=x[:n], y_train=y[:n], x_test=x[n:], y_test=y[n:])
    return path


def _visrep_tasks() -> list[type[Task]]:
    return [c for p, c in task_classes().items() if p.startswith("visrep.")]


def test_every_visrep_task_family_is_covered():
    assert set(_visrep_tasks()) <= set(DATA), "add the new task family to DATA"


@pytest.mark.parametrize("cls", list(DATA), ids=lambda c: c.__name__)
def test_task_contract(cls: type[Task], tmp_path: Path):
    L.seed_everything(0)
    task, dm = DATA[cls]()
    run = RunDir(tmp_path / "run")
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        limit_test_batches=2,
        limit_predict_batches=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=run.root,
        callbacks=[
            L.pytorch.callbacks.ModelCheckpoint(dirpath=run.checkpoints, filename="last"),
            MetricsFile(run.root),
            RunArtifacts(run.root),
            RandomState(),
            PredictionWriter(run.root / "predictions.csv"),
        ],
    )
    trainer.fit(task, dm)
    assert task.spec is not None and task.spec.family in cls.families
    trainer.validate(task, dm, verbose=False)
    trainer.test(task, dm, verbose=False)
    trainer.predict(task, dm)
    metrics = run.read_metrics()
    assert {"epochs", "fit_time_s"} <= set(metrics)
    assert any(k.startswith("test/") for k in metrics) and any(
        k.startswith("val/") for k in metrics
    )
    assert len(run.read_epochs()) == 1 and run.report.is_file()
    rows = (run.root / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("file,") and len(rows) > 1
    # the checkpoint rebuilds the same task without the data module
    saved = read_task_checkpoint(run.checkpoints / "last.ckpt")
    assert saved.task_class is cls and saved.data_spec == task.spec.to_dict()
    loaded = saved.build()
    batch = next(iter(dm.test_dataloader()))
    x = batch[cls.input_key] if hasattr(cls, "input_key") else batch
    task.eval()
    with torch.no_grad():
        got, want = loaded(x), task(x)
    if isinstance(want, list):  # detections: one dict of tensors per image
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.keys() == w.keys()
            assert all(torch.allclose(g[k].float(), w[k].float(), atol=1e-5) for k in w)
    else:
        assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("cls", list(DATA), ids=lambda c: c.__name__)
def test_the_hooks_say_what_the_net_gives(cls: type[Task]):
    """``Task.embeds``: ``net.embed(images)`` is one ``(B, D)`` row per image; ``class_scores``:
    ``net(x)`` is ``(B, num_classes)`` logits. Tools trust them instead of looking for methods
    (R-CNN's net has an ``embed`` of box crops; the events classifier embeds event batches)."""
    task, dm = DATA[cls]()
    dm.setup("fit")
    task.setup_spec(dm.spec())
    batch = next(iter(dm.val_dataloader()))
    net = task.net.eval()
    with torch.no_grad():
        if cls.embeds:
            x = batch[cls.input_key]
            z = net.embed(x)
            assert z.dim() == 2 and z.shape[0] == len(x) and z.shape[1] >= 1
        if cls.class_scores:
            logits = net(batch[cls.input_key])
            assert logits.shape[-1] == task.spec.num_classes and logits.dim() == 2
    expected = {
        ClassificationTask: (True, True), EventClassificationTask: (True, False),
        EmbeddingTask: (False, True), AutoencoderTask: (False, True), VAETask: (False, True),
        DetectionTask: (False, False), SegmentationTask: (False, False),
        ColorizationTask: (False, False), GANTask: (False, False), CycleGANTask: (False, False),
        PointCloudClassificationTask: (False, True), CorrespondenceTask: (False, False),
        PointSegmentationTask: (False, False), VideoClassificationTask: (False, True),
        FramePredictionTask: (False, False), SequenceLabelingTask: (False, False),
        VideoObjectSegmentationTask: (False, False), PhasedLSTMEventTask: (True, False),
        StereoDepthTask: (False, False), KeypointTask: (False, False),
        LiftTask: (False, False),
    }  # fmt: skip
    assert (cls.class_scores, cls.embeds) == expected[cls]
