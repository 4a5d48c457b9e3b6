"""DetectionTask end to end: fit / test / predict from the CLI on a tiny VOC tree of coloured
rectangles, checkpoints that rebuild the detector, and the task's contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visrep.data.base import DataSpec
from visrep.errors import ConfigError
from visrep.tasks import DetectionTask

QUIET = ["--trainer.enable_progress_bar", "false"]
TINY = [
    "--model.model.backbone", "small_cnn", "--model.model.fpn_channels", "16",
    "--model.model.min_size", "64", "--model.model.max_size", "64",
    "--model.model.roi_batch_size", "32", "--data.loader.batch_size", "4",
    "--trainer.max_epochs", "2",
]  # fmt: skip


def write_shapes_voc(root: Path, n: dict[str, int], seed: int = 0) -> Path:
    """Images of 64x64 noise with a red square and / or a blue bar, their VOC XML and splits."""
    rng = np.random.default_rng(seed)
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    k = 0
    for split, count in n.items():
        ids = []
        for _ in range(count):
            img = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
            objs = []
            x, y = rng.integers(2, 30, 2)
            img[y : y + 20, x : x + 20] = (220, 30, 30)
            objs.append(("red", x, y, x + 19, y + 19))
            if k % 2:
                x2, y2 = rng.integers(2, 20, 2)
                img[40 + y2 // 4 : 52 + y2 // 4, x2 : x2 + 40] = (30, 30, 220)
                objs.append(("blue", x2, 40 + y2 // 4, x2 + 39, 51 + y2 // 4))
            name = f"im{k}"
            Image.fromarray(img).save(root / "JPEGImages" / f"{name}.png")
            body = "".join(
                f"<object><name>{c}</name><difficult>0</difficult><bndbox><xmin>{a + 1}</xmin>"
                f"<ymin>{b + 1}</ymin><xmax>{c2 + 1}</xmax><ymax>{d2 + 1}</ymax></bndbox></object>"
                for c, a, b, c2, d2 in objs
            )
            (root / "Annotations" / f"{name}.xml").write_text(
                f"<annotation><size><width>64</width><height>64</height><depth>3</depth></size>"
                f"{body}</annotation>"
            )
            ids.append(name)
            k += 1
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def test_fit_test_predict_from_the_cli(tmp_path, cli):
    data = write_shapes_voc(tmp_path / "voc", {"train": 8, "val": 4, "test": 4})
    run = tmp_path / "run"
    code, _, err = cli(
        "fit", "--config", "bccd_fasterrcnn", "--data.root", data, "--run_dir", run,
        *TINY, *QUIET,
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("val/map_50", "test/map", "test/map_50", "test/map_75", "test/ap_50/red"):
        assert key in metrics and 0 <= metrics[key] <= 1, key
    header = (run / "metrics.csv").read_text().splitlines()[0]
    for key in ("train/loss", "train/loss_objectness", "train/loss_classifier", "val/map_50"):
        assert key in header, key
    for plot in ("pr_curves", "test_detections", "learning_curves"):
        assert (run / "plots" / f"{plot}.png").is_file(), plot
    assert (run / "checkpoints" / "best.ckpt").is_file()
    # the run's checkpoint rebuilds the detector and predicts on the run's data
    code, _, err = cli("predict", "--ckpt_path", run / "checkpoints" / "best.ckpt", *QUIET)
    assert code == 0, err
    rows = (run / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("file,detections,blue,red") and len(rows) == 5
    results = json.loads((run / "predictions" / "detections.json").read_text())
    for r in results:
        assert {"image_id", "category_id", "bbox", "score", "file_name"} <= set(r)
        assert r["bbox"][2] >= 0 and r["bbox"][3] >= 0
    out = run / rows[1].split(",")[-1]
    assert Image.open(out).size == (64, 64)
    assert rows[1].startswith(str(data / "JPEGImages" / "im12.png"))  # the test split's files
    assert out.name == "00000_im12.png"


def _spec(**kw) -> DataSpec:
    base = dict(
        family="detection", keys=("image", "boxes", "labels", "difficult"), in_chans=3,
        image_size=(64, 64), num_classes=2, class_names=("red", "blue"),
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
    )  # fmt: skip
    return DataSpec(**{**base, **kw})


def _task(model: str = "faster_rcnn", **opts) -> DetectionTask:
    args = {"backbone": "small_cnn", "min_size": 64, "max_size": 64, **opts}
    if model in ("faster_rcnn", "mask_rcnn"):
        args["fpn_channels"] = 16
    return DetectionTask(model={"class_path": model, "init_args": args})


def test_images_are_normalised_and_targets_plain():
    task = _task()
    task.setup_spec(_spec())
    x = torch.full((2, 3, 8, 8), 0.75)
    imgs = task.images({"image": x})
    assert len(imgs) == 2 and torch.allclose(imgs[0], torch.ones(3, 8, 8))
    from torchvision import tv_tensors

    boxes = tv_tensors.BoundingBoxes([[0, 0, 4, 4]], format="XYXY", canvas_size=(8, 8))
    t = task.targets({"boxes": [boxes], "labels": [torch.tensor([1])]})
    assert type(t[0]["boxes"]) is torch.Tensor and t[0]["labels"].dtype == torch.int64


def test_model_needs_what_the_data_gives():
    with pytest.raises(ConfigError, match="instance masks"):
        _task("mask_rcnn").setup_spec(_spec())
    with pytest.raises(ConfigError, match="mean/std"):
        _task().setup_spec(_spec(mean=None))
    with pytest.raises(ConfigError, match="detection"):
        _task().setup_spec(_spec(family="segmentation"))
    with pytest.raises(ConfigError, match="init_weights"):
        DetectionTask(init_weights="/nonexistent/run")


def test_difficult_objects_leave_training_targets_only():
    from torchvision import tv_tensors

    task = _task()
    task.setup_spec(_spec())
    boxes = tv_tensors.BoundingBoxes(
        [[0, 0, 4, 4], [1, 1, 5, 5]], format="XYXY", canvas_size=(8, 8)
    )
    batch = {
        "boxes": [boxes],
        "labels": [torch.tensor([0, 1])],
        "difficult": [torch.tensor([False, True])],
    }
    train = task.targets(batch, train=True)[0]
    assert (
        train["labels"].tolist() == [0]
        and train["boxes"].shape == (1, 4)
        and "difficult" not in train
    )
    evaluation = task.targets(batch)[0]
    assert evaluation["labels"].tolist() == [0, 1] and evaluation["difficult"].tolist() == [
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("config", "options"),
    [
        pytest.param("bccd_detr", ["--model.model.hidden_dim", "16", "--model.model.num_queries", "8",
                       "--model.model.dim_feedforward", "32", "--model.model.num_heads", "2"],
                     marks=pytest.mark.slow),
        pytest.param("bccd_fastrcnn", ["--model.model.hidden", "32",
                                       "--model.model.rois_per_image", "16"],
                     marks=pytest.mark.slow),
        ("bccd_rcnn", ["--model.model.warp_size", "32", "--model.model.context_padding", "4", "--model.model.train_proposals", "30",
                       "--model.model.test_proposals", "30", "--model.model.svm_max_iter", "50"]),
    ],
)  # fmt: skip
def test_every_bccd_config_fits_on_a_tiny_tree(tmp_path, cli, config, options):
    """Each shipped detector config runs fit + test end to end (tiny sizes); R-CNN fits its
    SVMs at the last epoch's validation, so the saved checkpoint holds them. (DETR and Fast
    R-CNN take the paths faster_rcnn and rcnn test by default: slow only.)"""
    data = write_shapes_voc(tmp_path / "voc", {"train": 4, "val": 2, "test": 2})
    run = tmp_path / "run"
    sizes = ["--model.model.min_size", "64", "--model.model.max_size", "64"]
    if config == "bccd_rcnn":
        sizes = []
    proposals = ["--data.proposals.cache_dir", tmp_path / "cache", "--data.proposals.ks", "[50]"]
    proposals = [] if config == "bccd_detr" else proposals
    code, _, err = cli(
        "fit", "--config", config, "--data.root", data, "--run_dir", run,
        "--model.model.backbone", "small_cnn", "--trainer.max_epochs", "2",
        *sizes, *options, *proposals, *QUIET,
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test/map_50"] <= 1
    if config == "bccd_rcnn":
        from visrep.runs import load_checkpoint

        # no best-epoch selection: earlier epochs score without the SVMs; the tested model is
        # the last one, fitted
        assert not (run / "checkpoints" / "best.ckpt").exists()
        state = load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
        assert bool(state["net.fitted"]) and state["net.svm_weight"].abs().sum() > 0


def write_davis_like(root: Path, sequences: int = 3, frames: int = 2) -> Path:
    """DAVIS-2016's layout: JPEGImages/480p/<seq>/NNNNN.jpg with binary Annotations PNGs."""
    rng = np.random.default_rng(0)
    for s in range(sequences):
        img_dir, ann_dir = (
            root / "JPEGImages/480p" / f"seq{s}",
            root / "Annotations/480p" / f"seq{s}",
        )
        img_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        for f in range(frames):
            img = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
            mask = np.zeros((48, 64), np.uint8)
            y, x = rng.integers(4, 20, 2)
            mask[y : y + 20, x : x + 24] = 255
            img[mask > 0] = (200, 180, 40)
            Image.fromarray(img).save(img_dir / f"{f:05d}.png")
            Image.fromarray(mask).save(ann_dir / f"{f:05d}.png")
    return root


def test_mask_rcnn_config_fits_on_masks_with_mask_map(tmp_path, cli):
    data, run = write_davis_like(tmp_path / "davis"), tmp_path / "run"
    code, _, err = cli(
        "fit", "--config", "davis_maskrcnn", "--data.root", data, "--run_dir", run,
        *TINY, "--trainer.limit_train_batches", "1.0", *QUIET,
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("test/map_50", "test/mask_map", "test/mask_map_50", "val/mask_map_50"):
        assert key in metrics and 0 <= metrics[key] <= 1, key


def test_prediction_json_is_coco_xywh(tmp_path):
    from visrep.runs import RunDir

    task = _task()
    task.setup_spec(_spec())
    det = {
        "boxes": torch.tensor([[10.0, 20.0, 30.0, 60.0], [1.0, 1.0, 3.0, 2.0]]),
        "scores": torch.tensor([0.9, 0.2]),
        "labels": torch.tensor([1, 0]),
    }
    outputs = [{"detections": [det], "image": [torch.zeros(3, 64, 64, dtype=torch.uint8)]}]
    run = RunDir(tmp_path / "run")
    paths = task.write_prediction_files(run, outputs, ["a/b.png"])
    assert paths == ["predictions/00000_b.png"]
    results = json.loads((run.predictions / "detections.json").read_text())
    assert [r["bbox"] for r in results] == [[10.0, 20.0, 20.0, 40.0], [1.0, 1.0, 2.0, 1.0]]
    assert [(r["category_id"], r["category"]) for r in results] == [(1, "blue"), (0, "red")]
    assert task.predict_rows(outputs) == [{"detections": 1, "red": 0, "blue": 1}]


def test_proposals_must_match_the_model():
    with pytest.raises(ConfigError, match="drop --data"):
        _task().setup_spec(_spec(keys=("image", "boxes", "labels", "difficult", "proposals")))
    with pytest.raises(ConfigError, match="needs region proposals"):
        _task("fast_rcnn", hidden=16).setup_spec(_spec())
    task = _task("fast_rcnn", hidden=16)
    task.setup_spec(_spec(keys=("image", "boxes", "labels", "difficult", "proposals")))
    with pytest.raises(ConfigError, match="not on image files"):
        task.detect({"image": torch.zeros(1, 3, 32, 32)})
