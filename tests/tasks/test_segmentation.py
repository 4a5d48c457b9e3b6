"""The segmentation task end to end through the CLI: the shipped camvid_unet config on a tiny
CamVid-layout tree, then test and predict (palette PNGs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def _camvid_tree(root: Path, n: int = 6) -> Path:
    """``train/``, ``trainannot/``, ``val/``, ``valannot/``: 24x32 images whose left half is class
    3 (road) and right half class 0 (sky), 11 = void on the top row."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            label = np.zeros((24, 32), np.uint8)
            label[:, :16] = 3
            label[0] = 11
            img = rng.integers(0, 40, (24, 32, 3), dtype=np.uint8)
            img[label == 3] += 180
            Image.fromarray(img).save(root / split / f"f{i}.png")
            Image.fromarray(label).save(root / f"{split}annot" / f"f{i}.png")
    return root


def test_camvid_config_fits_tests_and_predicts(tmp_path, cli):
    data, run = _camvid_tree(tmp_path / "camvid"), tmp_path / "run"
    quiet = ["--trainer.enable_progress_bar", "false"]
    code, _, err = cli(
        "fit", "--config", "camvid_unet", "--data.root", data, "--run_dir", run,
        "--data.crop_size", "[16,16]", "--data.loader.batch_size", "4",
        "--model.model.width", "4", "--model.model.depth", "2", "--trainer.max_epochs", "2",
        *quiet,
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/miou", "test/miou", "test/pixel_acc", "test/iou_per_class"} <= set(metrics)
    assert len(metrics["test/iou_per_class"]) == 11 and "road" in metrics["test/iou_per_class"]
    for plot in ("class_iou", "confusion_matrix", "test_segmentations", "learning_curves"):
        assert (run / "plots" / f"{plot}.png").is_file(), plot
    code, _, err = cli(
        "predict", "--ckpt_path", run / "checkpoints" / "best.ckpt", "--data.path", data / "val",
        *quiet,
    )  # fmt: skip
    assert code == 0, err
    rows = (run / "predictions.csv").read_text().splitlines()
    assert rows[0] == "file,classes,output" and len(rows) == 7
    mask = Image.open(run / rows[1].split(",")[-1])
    assert mask.mode == "P" and mask.size == (16, 16)  # the model's input size (the crop)


def test_crf_post_processing_is_the_dense_crf_of_the_network_scores():
    import torch

    from visrep.data.base import DataSpec
    from visrep.models.layers.crf import dense_crf
    from visrep.tasks import SegmentationTask
    from visrep.tasks.segmentation import CRFConfig

    spec = DataSpec(
        family="segmentation", keys=("image", "mask"), in_chans=3, image_size=(12, 10),
        num_classes=4, mean=(0.5,) * 3, std=(0.25,) * 3, ignore_index=255,
    )  # fmt: skip
    torch.manual_seed(0)
    model = {"class_path": "unet", "init_args": {"depth": 1, "width": 4}}
    task = SegmentationTask(model=model, crf={"window": 3, "iterations": 2})
    assert task.crf == CRFConfig(window=3, iterations=2) and task.hparams["crf"]["window"] == 3
    task.setup_spec(spec)
    task.eval()
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        logits = task.net(x)
        q = dense_crf(-logits.log_softmax(1), x, 2, window=3)
        assert torch.equal(task.predict_mask(x), q.argmax(1))
        task.crf = CRFConfig(w_appearance=0.0, w_smoothness=0.0)  # no pairwise terms
        assert torch.equal(task.predict_mask(x), logits.argmax(1))


def test_isbi_config_fits_on_a_tiny_slice_stack(tmp_path, cli):
    rng = np.random.default_rng(1)
    for sub in ("image", "label"):
        (tmp_path / "isbi" / "train" / sub).mkdir(parents=True)
    for i in range(8):
        label = np.full((20, 20), 255, np.uint8)
        label[::5] = 0  # membranes
        img = (rng.integers(100, 140, (20, 20)) + (label > 0) * 100).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / "isbi" / "train" / "image" / f"{i}.png")
        Image.fromarray(label).save(tmp_path / "isbi" / "train" / "label" / f"{i}.png")
    code, _, err = cli(
        "fit", "--config", "isbi_unet", "--data.root", tmp_path / "isbi",
        "--run_dir", tmp_path / "run", "--data.crop_size", "[16,16]",
        "--model.model.width", "4", "--model.model.depth", "2", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false",
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["test/iou_per_class"]) == {"membrane", "cell"}
