"""MaskDetectionDataModule: objects from binary / semantic / instance mask images, connected
components, sequence splits, bad input; DAVIS-2016 and labelme's class PNGs when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED_DATA
from visrep.data.base import SplitConfig
from visrep.data.detection.base import object_counts
from visrep.data.detection.labelme import LabelmeDetectionDataModule
from visrep.data.detection.masks import MaskDetectionDataModule, instance_boxes, mask_instances
from visrep.errors import ConfigError, DataError

H, W = 12, 16


def _binary(k: int) -> np.ndarray:
    """Frame k: two blobs (8-connected through one diagonal step on odd frames), and a speck."""
    m = np.zeros((H, W), np.uint8)
    m[1:4, 1 + k % 3 : 5 + k % 3] = 255
    m[6:10, 8:12] = 200
    if k % 2:
        m[4, 5 + k % 3] = 255  # diagonal neighbour of the first blob's corner ...
        m[5, 6 + k % 3 : 8] = 255  # ... and a bridge to the second: one component
    m[11, 15] = 130  # a one-pixel speck (above the threshold 127)
    return m


def _davis(root: Path, sequences: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for seq, n in sequences.items():
        for d in ("JPEGImages/480p", "Annotations/480p"):
            (root / d / seq).mkdir(parents=True)
        for k in range(n):
            image = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / "JPEGImages/480p" / seq / f"{k:05d}.jpg")
            Image.fromarray(_binary(k)).save(root / "Annotations/480p" / seq / f"{k:05d}.png")
    return root


def test_mask_instances_analytic() -> None:
    m = _binary(0)
    inst, value = mask_instances(m, "binary")
    assert value.tolist() == [1] and np.array_equal(inst > 0, m > 127)
    inst, value = mask_instances(m, "binary", components=True)
    assert value.tolist() == [1, 1, 1]
    assert instance_boxes(inst, 3).tolist() == [[1, 1, 5, 4], [8, 6, 12, 10], [15, 11, 16, 12]]
    inst, value = mask_instances(m, "binary", components=True, min_area=2)
    assert len(value) == 2 and inst.max() == 2 and inst[11, 15] == 0
    bridged = mask_instances(_binary(1), "binary", components=True, min_area=2)[1]
    assert len(bridged) == 1  # 8-connectivity joins the diagonal step
    sem = np.array([[0, 3, 3, 255], [1, 0, 3, 1]], np.uint8)
    inst, value = mask_instances(sem, "semantic")
    assert value.tolist() == [1, 3] and inst.tolist() == [[0, 2, 2, 0], [1, 0, 2, 1]]
    inst, value = mask_instances(sem, "semantic", components=True)
    assert value.tolist() == [1, 1, 3] and inst.tolist() == [[0, 3, 3, 0], [1, 0, 3, 2]]
    inst, value = mask_instances(sem, "instance", ignore_value=None)
    assert value.tolist() == [1, 3, 255]


def test_davis_layout_boxes_masks_and_sequence_splits(tmp_path: Path) -> None:
    root = _davis(tmp_path / "davis", {"a": 3, "b": 2, "c": 2, "d": 2, "e": 2})
    dm = MaskDetectionDataModule(str(root), split=SplitConfig(val_fraction=0.25, test_fraction=0.2))
    s = dm.load()
    seqs = dm.split_sequences
    # ceil(0.2 * 5) = 1 test and ceil(0.25 * 4) = 1 validation sequence, drawn with the seed
    assert len(seqs["test"]) == 1 and len(seqs["val"]) == 1 and len(seqs["train"]) == 3
    assert sorted(seqs["train"] + seqs["val"] + seqs["test"]) == list("abcde")
    frames = {
        name: {Path(a.image).parent.name for a in d.annotations}
        for name, d in (("train", s.train), ("val", s.val), ("test", s.test))
    }
    assert {k: sorted(v) for k, v in frames.items()} == {k: sorted(v) for k, v in seqs.items()}
    again = MaskDetectionDataModule(str(root), split=SplitConfig(0.25, 0.2))
    again.load()
    assert again.split_sequences == seqs
    assert s.class_names == ["object"]
    x = next(
        s_ for d in (s.train, s.val, s.test) for s_ in (d[i] for i in range(len(d)))
    )  # any frame: one instance, the whole foreground
    m = x["masks"].numpy()
    assert m.shape[0] == 1 and x["labels"].tolist() == [0]
    ys, xs = np.nonzero(m[0])
    assert x["boxes"].tolist() == [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]


def test_named_sequences_classes_and_components(tmp_path: Path) -> None:
    root = _davis(tmp_path / "davis", {"swan": 2, "dog": 3, "cow": 2})
    classes = {"swan": "bird", "dog": "dog", "cow": "cow"}
    dm = MaskDetectionDataModule(
        str(root), sequence_classes=classes, components=True, min_area=2,
        val_sequences=("dog",), test_sequences=("cow",),
    )  # fmt: skip
    dm.setup()
    assert dm.spec().class_names == ("bird", "cow", "dog")
    assert dm.spec().keys == ("image", "boxes", "labels", "difficult", "masks")
    # frames 0 (two blobs), 1 (bridged: one), 2 (two): the speck is below min_area
    assert object_counts(dm.val_set, 3).tolist() == [0, 0, 5]
    assert object_counts(dm.train_set, 3).tolist() == [3, 0, 0]
    assert object_counts(dm.test_set, 3).tolist() == [0, 3, 0]
    with pytest.raises(ConfigError, match=r"names no class for the sequences \['cow'\]"):
        MaskDetectionDataModule(str(root), sequence_classes={"swan": "bird", "dog": "dog"})
    with pytest.raises(ConfigError, match=r"in both data.val_sequences and test_sequences"):
        MaskDetectionDataModule(str(root), val_sequences=("dog",), test_sequences=("dog",))
    with pytest.raises(DataError, match=r"sequences \['owl'\] are not in"):
        MaskDetectionDataModule(str(root), val_sequences=("owl",)).load()
    with pytest.raises(ConfigError, match=r"is left for val: name data.val_sequences or set"):
        MaskDetectionDataModule(
            str(root), sequences=["swan", "dog"], test_sequences=("cow",)
        ).load()
    with pytest.raises(ConfigError, match=r"left for training"):
        MaskDetectionDataModule(
            str(root), val_sequences=("dog", "swan"), test_sequences=("cow",)
        ).load()


def test_flat_semantic_and_instance_masks(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    (root / "img").mkdir(parents=True)
    (root / "cls").mkdir()
    rng = np.random.default_rng(1)
    sem = np.zeros((H, W), np.uint8)
    sem[0:3, 0:4] = 2  # owl
    sem[5:7, 2:6] = 2  # another owl region
    sem[8:11, 9:15] = 1  # cat
    sem[11, :] = 255  # border: ignored
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(
            root / "img" / f"{i}.jpg"
        )
        im = Image.fromarray(sem if i else np.zeros_like(sem), mode="L").convert("P")
        im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [255, 255, 255] * 253)
        im.save(root / "cls" / f"{i}.png")
    (root / "class_names.txt").write_text("_background_\ncat\nowl\n")
    dm = MaskDetectionDataModule(str(root), images="img", masks="cls", mode="semantic")
    s = dm.load()
    assert s.class_names == ["cat", "owl"] and s.val is None and s.test is None
    assert s.train[0]["boxes"].shape == (0, 4)  # an empty mask: no objects
    x = s.train[1]
    assert x["labels"].tolist() == [0, 1]
    assert x["boxes"].tolist() == [[9, 8, 15, 11], [0, 0, 6, 7]]
    assert np.array_equal(x["masks"].numpy()[1], (sem == 2).astype(np.uint8))
    comp = MaskDetectionDataModule(
        str(root), images="img", masks="cls", mode="semantic", components=True
    ).load()
    assert comp.train[1]["boxes"].tolist() == [[9, 8, 15, 11], [0, 0, 4, 3], [2, 5, 6, 7]]
    inst = MaskDetectionDataModule(str(root), images="img", masks="cls", mode="instance").load()
    assert inst.class_names == ["object"] and inst.train[1]["labels"].tolist() == [0, 0]
    with pytest.raises(DataError, match=r"1\.png' holds value 2; expected indices into"):
        MaskDetectionDataModule(
            str(root), images="img", masks="cls", mode="semantic", class_names=["bg", "cat"]
        ).load()
    with pytest.raises(ConfigError, match=r"holds no sequence folders to name"):
        MaskDetectionDataModule(str(root), images="img", masks="cls", test_sequences=("x",)).load()


def test_bad_pairs(tmp_path: Path) -> None:
    root = _davis(tmp_path / "davis", {"a": 2, "b": 2})
    Image.fromarray(np.zeros((H, W + 2), np.uint8)).save(root / "Annotations/480p/a/00001.png")
    with pytest.raises(
        DataError, match=r"mask .*00001\.png' is 18x12 \(WxH\) but its image .* is 16x12"
    ):
        MaskDetectionDataModule(
            str(root), val_sequences=("b",), split=SplitConfig(test_fraction=0)
        ).load()
    (root / "Annotations/480p/b/00000.png").unlink()
    with pytest.raises(DataError, match=r"00000\.jpg' has no label map 00000\.\* in"):
        MaskDetectionDataModule(str(root), test_sequences=("a",), split=SplitConfig(0.0)).load()
    with pytest.raises(DataError, match=r"does not exist"):
        MaskDetectionDataModule(str(root), images="nope")
    with pytest.raises(ConfigError, match=r"data.mode must be"):
        MaskDetectionDataModule(str(root), mode="colour")
    with pytest.raises(ConfigError, match=r"one class; data.class_names lists"):
        MaskDetectionDataModule(str(root), class_names=["a", "b"])


# --- real data ----------------------------------------------------------------------------------
DAVIS = SHARED_DATA / "davis2016-subset" / "DAVIS"


@pytest.mark.skipif(not DAVIS.is_dir(), reason="shared/data/davis2016-subset is absent")
def test_davis2016_objects() -> None:
    """Every DAVIS-2016 frame holds its one annotated object; boxes are the masks' extents."""
    dm = MaskDetectionDataModule(
        str(DAVIS), sequences=["blackswan", "car-shadow"], val_sequences=("dog",),
        test_sequences=("kite-surf",),
    )  # fmt: skip
    s = dm.load()
    assert (len(s.train), len(s.val), len(s.test)) == (90, 60, 50)
    assert [object_counts(d, 1).tolist() for d in (s.train, s.val, s.test)] == [[90], [60], [50]]
    for i in (0, 45, 89):
        x = s.train[i]
        assert x["image"].shape == (3, 480, 854) and x["masks"].shape == (1, 480, 854)
        ys, xs = np.nonzero(x["masks"][0].numpy())
        assert x["boxes"].tolist() == [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
        with Image.open(s.train.annotations[i].source) as im:
            assert np.array_equal(x["masks"][0].numpy(), (np.array(im) > 127).astype(np.uint8))


CLASS_PNGS = SHARED_DATA / "labelme-examples" / "examples" / "video_annotation"


@pytest.mark.skipif(not CLASS_PNGS.is_dir(), reason="shared/data/labelme-examples is absent")
def test_labelme_class_pngs_agree_with_the_json() -> None:
    """labelme drew SegmentationClassPNG from the JSON (track, track, car, each over the earlier):
    the car, drawn last, is the same mask from the PNG as from the JSON's polygon."""
    root = CLASS_PNGS / "data_dataset_voc"
    kw = {"images": "JPEGImages", "masks": "SegmentationClassPNG", "mode": "semantic"}
    s = MaskDetectionDataModule(str(root), **kw).load()
    assert s.class_names == ["car", "track"] and len(s.train) == 5
    assert object_counts(s.train, 2).tolist() == [5, 5]
    comp = MaskDetectionDataModule(str(root), components=True, **kw).load()
    assert object_counts(comp.train, 2).tolist() == [5, 10]
    lm = LabelmeDetectionDataModule(
        str(CLASS_PNGS / "data_annotated"), class_names="../labels.txt", masks=True
    ).load()
    for i in range(5):
        car_png = s.train[i]["masks"][s.train[i]["labels"] == 0]
        car_json = lm.train[i]["masks"][lm.train[i]["labels"] == 0]
        assert car_png.shape[0] == 1 and np.array_equal(car_png.numpy(), car_json.numpy())
