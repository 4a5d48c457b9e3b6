"""DAVIS-style VOS data (visrep.data.vos): mask reading (2016 grey, 2017 palette), sequence
discovery, episodes (consistent augmentation across frames), whole sequences, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visrep.data.samples import VIDEO
from visrep.data.vos import (
    OBJECT_MASKS,
    DavisVosDataModule,
    VosEpisodes,
    find_vos_sequences,
    read_object_mask,
)
from visrep.errors import ConfigError, DataError

H, W = 32, 48


def _palette_png(path: Path, ids: np.ndarray) -> None:
    im = Image.fromarray(ids.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 - 3) * 3)
    im.save(path)


def _davis(root: Path, frames: int = 6) -> Path:
    """Two sequences: 'one' (a red square moving right, grey {0, 255} masks) and 'two' (two
    objects, palette masks)."""
    for name in ("one", "two"):
        fd, md = root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name
        fd.mkdir(parents=True)
        md.mkdir(parents=True)
        for t in range(frames):
            img = np.full((H, W, 3), 40, np.uint8)
            ids = np.zeros((H, W), np.uint8)
            x = 4 + 3 * t
            img[8:20, x : x + 10] = (250, 10, 10)
            ids[8:20, x : x + 10] = 1
            if name == "two":
                img[22:30, 30:40] = (10, 250, 10)
                ids[22:30, 30:40] = 2
            Image.fromarray(img).save(fd / f"{t:05d}.png")  # lossless, so colours stay exact
            if name == "one":
                Image.fromarray(ids * 255).save(md / f"{t:05d}.png")
            else:
                _palette_png(md / f"{t:05d}.png", ids)
    return root


def test_read_object_mask(tmp_path: Path) -> None:
    root = _davis(tmp_path)
    one = read_object_mask(root / "Annotations/480p/one/00000.png")
    two = read_object_mask(root / "Annotations/480p/two/00000.png")
    assert one.dtype == np.uint8 and set(np.unique(one)) == {0, 1}
    assert set(np.unique(two)) == {0, 1, 2} and (two == 2).sum() == 80


def test_find_sequences_davis_and_flat_layouts(tmp_path: Path) -> None:
    seqs = find_vos_sequences(_davis(tmp_path / "d"))
    assert sorted(seqs) == ["one", "two"] and len(seqs["one"]) == 6
    flat = tmp_path / "flat"
    (flat / "JPEGImages").mkdir(parents=True)
    (flat / "SegmentationClassPNG").mkdir()
    for t in range(3):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(flat / "JPEGImages" / f"{t}.jpg")
        _palette_png(flat / "SegmentationClassPNG" / f"{t}.png", np.zeros((H, W)))
    seqs = find_vos_sequences(flat, resolution="", annotations="SegmentationClassPNG")
    assert list(seqs) == ["flat"] and len(seqs["flat"]) == 3
    with pytest.raises(DataError, match="does not exist"):
        find_vos_sequences(tmp_path / "missing")


def test_episodes_keep_frames_and_masks_aligned(tmp_path: Path) -> None:
    seqs = find_vos_sequences(_davis(tmp_path))
    ds = VosEpisodes([seqs["one"], seqs["two"]], 40, 3, (16, 24), max_stride=2, min_crop=0.7)
    torch.manual_seed(0)
    for i in range(40):
        s = ds[i]
        v, m = s[VIDEO], s[OBJECT_MASKS]
        assert (
            v.shape == (3, 3, 16, 24)
            and m.shape == (3, 16, 24)
            and set(m.unique().tolist()) <= {0, 1}
        )
        obj = s["meta"]["object"]
        colour = 0 if obj == 1 else 1  # red square (object 1) or green (object 2)
        # the object's pixels are its colour in every frame, whatever the crop and flip
        inside = v[:, colour][m.bool()]
        assert inside.numel() > 0 and inside.mean() > 0.55, s["meta"]  # edges blur
        outside = v[:, colour][~m.bool()]
        assert outside.mean() < 0.3
        f = s["meta"]["frames"]
        assert f == sorted(f) and len(set(np.diff(f))) == 1


def test_whole_sequences_and_module(tmp_path: Path) -> None:
    root = _davis(tmp_path)
    dm = DavisVosDataModule(str(root), test_sequences=["two"], size=(16, 24), episode_frames=3,
                            episodes_per_epoch=5)  # fmt: skip
    dm.setup("fit")
    assert dm.sequence_names["train"] == ["one"] and len(dm.train_set) == 5
    s = dm.test_set[0]
    assert s[VIDEO].shape == (6, 3, 16, 24) and s[OBJECT_MASKS].shape == (6, H, W)
    assert set(s[OBJECT_MASKS].unique().tolist()) == {0, 1, 2} and s["meta"]["sequence"] == "two"
    batch = next(iter(dm.test_dataloader()))
    assert batch[VIDEO].shape[0] == 1
    assert dm.spec().family == "vos" and OBJECT_MASKS in dm.spec().keys


@pytest.mark.parametrize(
    "kw, error, words",
    [
        ({"test_sequences": []}, ConfigError, "test_sequences"),
        ({"test_sequences": ["nope"]}, DataError, "nope"),
        ({"test_sequences": ["two"], "val_sequences": ["two"]}, ConfigError, "both"),
        ({"test_sequences": ["two"], "train_sequences": ["two"]}, ConfigError, "held out"),
        ({"test_sequences": ["two"], "episode_frames": 9}, ConfigError, "episode_frames"),
        ({"test_sequences": ["two"], "size": (8, 8)}, ConfigError, "size"),
    ],
)
def test_bad_options(tmp_path: Path, kw: dict, error: type, words: str) -> None:
    root = _davis(tmp_path)
    with pytest.raises(error, match=words):
        DavisVosDataModule(str(root), **kw).setup("fit")


def test_static_episodes_move_the_object_with_its_mask(tmp_path: Path) -> None:
    from visrep.data.samples import IMAGE, MASK
    from visrep.data.vos import StaticEpisodes, VosFrames, deform_episode

    image = torch.full((3, 40, 60), 0.15)
    image[0, 10:25, 20:40] = 1.0
    mask = torch.zeros(40, 60, dtype=torch.long)
    mask[10:25, 20:40] = 1
    g = torch.Generator().manual_seed(0)
    video, masks = deform_episode(image, mask, 5, (40, 60), g, rotate=10, scale=0.1, shift=0.1)
    assert video.shape == (5, 3, 40, 60) and masks.shape == (5, 40, 60)
    torch.testing.assert_close(video[0], image, atol=1e-6, rtol=0)  # frame 0: the image itself
    assert torch.equal(masks[0], mask)
    centres = []
    for t in range(5):
        m = masks[t].bool()
        assert video[t, 0][m].mean() > 0.9 and video[t, 0][~m].mean() < 0.3  # aligned
        ys, xs = m.nonzero(as_tuple=True)
        centres.append((xs.float().mean(), ys.float().mean()))
    assert len({(round(float(x), 1), round(float(y), 1)) for x, y in centres}) > 1  # it moves
    seqs = find_vos_sequences(_davis(tmp_path))
    frames = VosFrames([seqs["two"]])
    assert len(frames) == 6 and frames[0][IMAGE].shape == (3, H, W)
    assert set(frames[0][MASK].unique().tolist()) == {0, 1, 2}
    ep = StaticEpisodes(frames, 4, 3, (16, 24))[1]
    assert ep[VIDEO].shape == (3, 3, 16, 24) and ep["meta"]["class"] in (1, 2)
    assert set(ep[OBJECT_MASKS].unique().tolist()) <= {0, 1} and ep[OBJECT_MASKS][0].any()
