"""Keypoint data: CSV and COCO-keypoints readers, keypoints that move with their image, splits
by photo, and the chessboard builder on OpenCV's sample photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visrep.data.base import LoaderConfig, SplitConfig
from visrep.data.keypoints import (
    ChessboardDataModule,
    KeypointAugment,
    KeypointDataModule,
    KeypointDataset,
    KeypointRecord,
    read_coco_keypoints,
    read_keypoint_csv,
    to_source,
    write_chessboard_csv,
    write_keypoint_csv,
)
from visrep.data.keypoints.chessboard import OPENCV_SAMPLES
from visrep.data.samples import IMAGE, KEYPOINTS, META
from visrep.errors import ConfigError, DataError


def write_dot_images(
    root: Path, n: int = 12, size: tuple[int, int] = (24, 32), seed: int = 0
) -> Path:
    """``n`` grey images with two bright 2x2 blocks (keypoints at the blocks' centres; the second
    one unlabelled in every third image) and their ``points.csv``."""
    root.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    h, w = size
    files, kps = [], []
    for i in range(n):
        img = np.zeros((h, w), np.uint8)
        kp = []
        for k in range(2):
            x, y = int(g.integers(2, w - 3)), int(g.integers(2, h - 3))
            img[y : y + 2, x : x + 2] = 255 if k == 0 else 160
            kp.append([x + 0.5, y + 0.5, 0 if (k == 1 and i % 3 == 0) else 2])
        Image.fromarray(img).save(root / f"im{i:02d}.png")
        files.append(f"im{i:02d}.png")
        kps.append(np.array(kp))
    write_keypoint_csv(root / "points.csv", files, kps)
    return root / "points.csv"


def _centroid(image: torch.Tensor) -> tuple[float, float]:
    w = image[0].double()
    ys, xs = torch.meshgrid(torch.arange(w.shape[0]), torch.arange(w.shape[1]), indexing="ij")
    return float((w * xs).sum() / w.sum()), float((w * ys).sum() / w.sum())


def test_csv_round_trip(tmp_path: Path):
    path = write_dot_images(tmp_path, n=4)
    records, names = read_keypoint_csv(str(path), str(tmp_path), None, 2)
    assert names == ("kp0", "kp1") and len(records) == 4
    assert records[0].file == str(tmp_path / "im00.png") and records[0].keypoints.shape == (2, 3)
    assert records[0].keypoints[1, 2] == 0 and records[1].keypoints[1, 2] == 2


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("a.png,1,2,2,3,4", r"row 3: 5 values after the file name, expected 3 x 2 = 6"),
        ("a.png,1,2,2,3,x,2", r"row 3: could not convert"),
        ("a.png,1,2,2,3,4,5", r"row 3: visibilities must be 0, 1 or 2"),
        ("a.png,1,2,2,,,1", r"row 3: a labelled keypoint"),
    ],
)
def test_csv_errors_name_the_file_and_row(tmp_path: Path, row: str, match: str):
    path = tmp_path / "bad.csv"
    path.write_text(f"file,x1,y1,v1,x2,y2,v2\nok.png,1,2,2,,,0\n{row}\n")
    with pytest.raises(DataError, match=match) as e:
        read_keypoint_csv(str(path), str(tmp_path), ["a", "b"])
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_csv_declaration_errors(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        read_keypoint_csv(str(tmp_path / "none.csv"), str(tmp_path), None, 2)
    with pytest.raises(ConfigError, match=r"num_keypoints is 3 but data\.keypoint_names lists 2"):
        read_keypoint_csv(str(tmp_path / "none.csv"), str(tmp_path), ["a", "b"], 3)
    with pytest.raises(ConfigError, match=r"keypoint_names or data\.num_keypoints"):
        read_keypoint_csv(str(tmp_path / "none.csv"), str(tmp_path))


def test_resize_moves_keypoints_with_the_image(tmp_path: Path):
    img = np.zeros((40, 60), np.uint8)
    img[10:12, 30:32] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    rec = KeypointRecord(str(tmp_path / "a.png"), np.array([[30.5, 10.5, 2.0]], np.float32))
    sample = KeypointDataset([rec], 1, (20, 30))[0]
    assert sample[IMAGE].shape == (1, 20, 30) and sample[META]["size"] == (40, 60)
    assert torch.allclose(sample[KEYPOINTS][0, :2], torch.tensor([15.0, 5.0]))
    assert np.allclose(_centroid(sample[IMAGE]), (15.0, 5.0), atol=1e-4)
    back = to_source(sample[KEYPOINTS][:, :2], sample[META]["to_source"])
    assert torch.allclose(back, torch.tensor([[30.5, 10.5]]))


def test_augmentation_moves_keypoints_with_the_image_and_hides_those_it_pushes_out(tmp_path: Path):
    img = np.zeros((41, 61), np.uint8)
    img[15:17, 22:24] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    kp = np.array([[22.5, 15.5, 2.0], [1.0, 1.0, 2.0]], np.float32)
    ds = KeypointDataset([KeypointRecord(str(tmp_path / "a.png"), kp)], 1, None)
    aug = ds.with_transform(
        KeypointAugment(degrees=40, translate=0.2, scale=(0.8, 1.3)).transform()
    )
    torch.manual_seed(0)
    hidden = 0
    for _ in range(8):
        s = aug[0]
        cx, cy = _centroid(s[IMAGE])
        assert (
            abs(cx - float(s[KEYPOINTS][0, 0])) < 0.15
            and abs(cy - float(s[KEYPOINTS][0, 1])) < 0.15
        )
        x, y, v = s[KEYPOINTS][1].tolist()
        inside = -0.5 <= x < 60.5 and -0.5 <= y < 40.5
        assert v == (2.0 if inside else 0.0)
        hidden += not inside
    assert hidden > 0  # the corner point left the image at least once


def test_module_splits_by_file_and_yields_batches(tmp_path: Path):
    path = write_dot_images(tmp_path, n=12)
    dm = KeypointDataModule(
        str(path), num_keypoints=2, channels=1, test_files=["im0[0-2].png"],
        loader=LoaderConfig(batch_size=4), split=SplitConfig(val_fraction=0.25, stratify=False),
    )  # fmt: skip
    dm.setup("fit")
    assert dm.sample_names() == [str(tmp_path / f"im0{i}.png") for i in range(3)]
    train = {dm.train_set.dataset.records[i].file for i in dm.train_set.indices}
    val = {dm.val_set.dataset.records[i].file for i in dm.val_set.indices}
    assert (
        len(train) == 6 and len(val) == 3 and not train & val and not train & set(dm.sample_names())
    )
    spec = dm.spec()
    assert spec.family == "keypoints" and spec.image_size == (24, 32) and spec.num_classes == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch[IMAGE].shape == (4, 1, 24, 32) and len(batch[KEYPOINTS]) == 4
    with pytest.raises(ConfigError, match="match 0 of the 12 files"):
        KeypointDataModule(str(path), num_keypoints=2, test_files=["nothing*"]).setup("fit")


def _coco(tmp_path: Path) -> Path:
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / name)
    data = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
        "categories": [
            {"id": 1, "name": "person", "keypoints": ["head", "foot"], "skeleton": [[1, 2]]}
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "keypoints": [5, 6, 2, 0, 0, 0],
                "bbox": [2, 2, 10, 10],
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 1,
                "keypoints": [20, 5, 2, 22, 25, 1],
                "bbox": [16, 2, 10, 26],
            },
            {
                "id": 12,
                "image_id": 2,
                "category_id": 1,
                "keypoints": [0, 0, 0, 0, 0, 0],
                "bbox": [0, 0, 5, 5],
            },
            {
                "id": 13,
                "image_id": 2,
                "category_id": 1,
                "keypoints": [1, 1, 2, 2, 2, 2],
                "iscrowd": 1,
            },
        ],
    }
    path = tmp_path / "person_keypoints.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_keypoints_single_pose_and_crops(tmp_path: Path):
    path = _coco(tmp_path)
    records, names, limbs = read_coco_keypoints(str(path), str(tmp_path))
    assert names == ("head", "foot") and limbs == ((0, 1),)
    assert len(records) == 1  # the instance with the most labelled keypoints
    assert records[0].keypoints.tolist() == [[20, 5, 2], [22, 25, 1]]
    crops, _, _ = read_coco_keypoints(str(path), str(tmp_path), crop_boxes=True, box_margin=0.5)
    assert [c.box for c in crops] == [(-3.0, -3.0, 20.0, 20.0), (11.0, -11.0, 20.0, 52.0)]
    # in the crop's frame the head moves by the box corner
    sample = KeypointDataset(crops[:1], 3, None)[0]
    assert sample[IMAGE].shape == (3, 20, 20) and sample[KEYPOINTS][0].tolist() == [8.0, 9.0, 2.0]
    resized = KeypointDataset(crops[1:], 3, (13, 5))[0]  # crop and resize, back to the file
    back = to_source(resized[KEYPOINTS][:, :2], resized[META]["to_source"])
    assert torch.allclose(back, torch.tensor([[20.0, 5.0], [22.0, 25.0]]), atol=1e-5)
    bad = json.loads(path.read_text())
    bad["annotations"][0]["keypoints"] = [1, 2, 2]
    path.write_text(json.dumps(bad))
    with pytest.raises(DataError, match="annotation 10: 3 keypoint values, expected 3 x 2 = 6"):
        read_coco_keypoints(str(path), str(tmp_path))


needs_samples = pytest.mark.skipif(
    not Path(OPENCV_SAMPLES, "left01.jpg").is_file(),
    reason="OpenCV sample photos not installed (opencv-doc)",
)


@needs_samples
def test_chessboard_csv_holds_canonically_ordered_corners(tmp_path: Path):
    out = tmp_path / "chessboard.csv"
    missed = write_chessboard_csv(OPENCV_SAMPLES, out, (9, 6))
    records, _ = read_keypoint_csv(str(out), OPENCV_SAMPLES, None, 54)
    assert missed == [] and len(records) == 26 and Path(records[0].file).name == "left01.jpg"
    for r in records:
        g = r.keypoints.reshape(6, 9, 3)
        assert (g[..., 2] == 2).all()
        assert g[0, 0, :2].sum() < g[-1, -1, :2].sum()  # starts at the top-left-most end
        row, col = g[0, -1, :2] - g[0, 0, :2], g[-1, 0, :2] - g[0, 0, :2]
        assert row[0] * col[1] - row[1] * col[0] > 0  # one handedness on every photo
        steps = np.linalg.norm(np.diff(g[..., :2], axis=1), axis=-1)  # neighbours along a row
        assert steps.min() > 10 and steps.max() < 60


@needs_samples
def test_chessboard_module_holds_out_whole_scenes():
    dm = ChessboardDataModule(
        image_size=(120, 160), split=SplitConfig(val_fraction=0.15, stratify=False)
    )
    dm.setup("fit")
    groups = {
        name: {
            dm.train_set.dataset.records[i].group
            if name == "train"
            else ds.dataset.records[i].group
            for i in ds.indices
        }
        for name, ds in (("train", dm.train_set), ("val", dm.val_set))
    }
    test = {Path(f).name for f in dm.sample_names()}
    assert test == {f"{s}{n}.jpg" for s in ("left", "right") for n in (12, 13, 14)}
    assert len(dm.train_set) == 16 and len(dm.val_set) == 4 and not groups["train"] & groups["val"]
    s = dm.train_set[0]
    assert s[IMAGE].shape == (1, 120, 160) and s[KEYPOINTS].shape == (54, 3)


def test_module_reads_coco_with_crops_and_a_test_file(tmp_path: Path):
    path = _coco(tmp_path)
    dm = KeypointDataModule(
        str(path), image_size=(16, 16), test_annotations=str(path), crop_boxes=True,
        split=SplitConfig(val_fraction=0.0, stratify=False),
    )  # fmt: skip
    dm.setup("fit")
    assert dm.limbs == ((0, 1),) and dm.spec().class_names == ("head", "foot")
    assert len(dm.train_set) == 2 and len(dm.test_set) == 2 and dm.spec().image_size == (16, 16)
    with pytest.raises(ConfigError, match=r"expected a \.csv or a COCO-keypoints \.json"):
        KeypointDataModule(str(tmp_path / "a.png"), num_keypoints=2).setup("fit")
