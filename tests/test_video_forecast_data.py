"""Forecasting data: Moving-MNIST-style sequences and windows of real footage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torchvision.io import write_png

from visrep.data.base import SplitConfig
from visrep.data.samples import FUTURE, META, VIDEO
from visrep.data.video.frames_forecast import FramesForecastDataModule, prepare_frames
from visrep.data.video.io import read_video_frames
from visrep.data.video.motion import MovingDigitsForecastDataModule
from visrep.data.video.moving_digits import trajectories
from visrep.errors import ConfigError, DataError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DAVIS = DATA / "davis2016-subset" / "DAVIS" / "JPEGImages" / "480p"
CLIPS = DATA / "video-clips"


def test_moving_digits_forecast_shapes_spec_and_continuity() -> None:
    dm = MovingDigitsForecastDataModule(train_sequences=8, val_sequences=2, test_sequences=2)
    dm.setup()
    spec = dm.spec()
    assert (spec.family, spec.keys, spec.in_chans, spec.image_size) == (
        "forecast",
        (VIDEO, FUTURE),
        1,
        (64, 64),
    )
    assert (spec.num_frames, spec.future_frames) == (10, 10)
    batch = next(iter(dm.train_dataloader()))
    assert batch[VIDEO].shape == batch[FUTURE].shape == (8, 10, 1, 64, 64)
    ds = dm.train_set.dataset
    s = ds[3]
    full = ds.render([ds.params(3)])[0][:, None]  # the one 20-frame sequence
    torch.testing.assert_close(torch.cat([s[VIDEO], s[FUTURE]]), full, rtol=0, atol=0)
    assert len(s[META]["digits"]) == 2
    again = MovingDigitsForecastDataModule(train_sequences=8, val_sequences=2, test_sequences=2)
    again.setup()
    torch.testing.assert_close(again.train_set.dataset[3][FUTURE], s[FUTURE], rtol=0, atol=0)


def test_moving_digits_forecast_motion_is_srivastava_s() -> None:
    """One digit: every frame is the digit pasted at a whole-pixel position in [0, 36]^2, which
    moves 3.6 px a frame (before truncation) and bounces off the edges."""
    dm = MovingDigitsForecastDataModule(
        num_digits=1, train_sequences=16, val_sequences=1, test_sequences=1
    )
    ds = dm._dataset("train")
    sprite = torch.round(ds.pool.images * 255) / 255
    for i in range(16):
        p = ds.params(i)
        assert float(p.velocity.norm()) == pytest.approx(3.6)
        pos = trajectories(
            p.start, p.velocity, 20, torch.tensor([36.0, 36.0], dtype=torch.float64), True
        )[0]
        assert pos.min() >= 0 and pos.max() <= 36
        steps = pos.diff(dim=0).abs()
        inner = (pos[1:] > 3.6) & (pos[1:] < 36 - 3.6) & (pos[:-1] > 3.6) & (pos[:-1] < 36 - 3.6)
        torch.testing.assert_close(steps[inner], p.velocity.abs().expand(19, 2)[inner])
        clip = ds.render([p])[0]
        for t in range(20):
            x, y = (int(v) for v in pos[t].floor())
            expected = torch.zeros(64, 64)
            expected[y : y + 28, x : x + 28] = sprite[p.digits[0]]
            torch.testing.assert_close(clip[t], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"future_frames": 0}, "data.input_frames and data.future_frames"),
        ({"digit_size": 64}, "data.digit_size"),
        ({"speed": (4.0, 2.0)}, "data.speed"),
        ({"test_sequences": 0}, "data.test_sequences"),
    ],
)
def test_moving_digits_forecast_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MovingDigitsForecastDataModule(**kwargs)


def _folders(root: Path, lengths: dict[str, int]) -> None:
    """Frame folders whose frame k of sequence j is a flat grey of value 10 k + j."""
    for j, (name, n) in enumerate(lengths.items()):
        d = root / name
        d.mkdir(parents=True)
        for k in range(n):
            img = torch.full((3, 12, 16), 10 * k + j, dtype=torch.uint8)
            write_png(img, str(d / f"{k:05d}.png"))


def test_frame_windows_split_by_sequence(tmp_path: Path) -> None:
    lengths = {"a": 8, "b": 9, "c": 10, "d": 7, "e": 12}
    _folders(tmp_path, lengths)
    dm = FramesForecastDataModule(
        root=str(tmp_path),
        input_frames=3,
        future_frames=2,
        image_size=(6, 8),
        frame_step=1,
        train_stride=1,
        eval_stride=2,
        split=SplitConfig(test_fraction=0.2, val_fraction=0.2, seed=3),
    )
    dm.setup()
    parts = dm.split_names
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == sorted(lengths)
    assert len(parts["test"]) == len(parts["val"]) == 1 and len(parts["train"]) == 3
    assert len(dm.train_set) == sum(lengths[n] - 5 + 1 for n in parts["train"])
    assert len(dm.test_set) == len(range(0, lengths[parts["test"][0]] - 5 + 1, 2))
    for ds, names in ((dm.train_set, parts["train"]), (dm.test_set, parts["test"])):
        seen = {ds[i][META]["sequence"] for i in range(len(ds))}
        assert seen == set(names)
    s = dm.train_set[4]
    j = sorted(lengths).index(s[META]["sequence"])
    start = s[META]["start"]
    values = torch.cat([s[VIDEO], s[FUTURE]])[:, 0, 0, 0] * 255
    torch.testing.assert_close(values, torch.tensor([10.0 * (start + k) + j for k in range(5)]))
    assert s[VIDEO].shape == (3, 1, 6, 8) and s[FUTURE].shape == (2, 1, 6, 8)
    assert dm.spec().in_chans == 1 and dm.spec().future_frames == 2


def test_frame_windows_step_explicit_split_and_preload(tmp_path: Path) -> None:
    _folders(tmp_path, {"a": 12, "b": 12, "c": 12})
    kw = {
        "root": str(tmp_path),
        "input_frames": 2,
        "future_frames": 2,
        "image_size": (6, 8),
        "frame_step": 3,
        "grey": False,
        "test_sequences": ["b"],
        "val_sequences": ["c"],
    }
    lazy = FramesForecastDataModule(preload=False, **kw)
    eager = FramesForecastDataModule(preload=True, **kw)
    lazy.setup()
    eager.setup()
    assert lazy.split_names == {"train": ["a"], "val": ["c"], "test": ["b"]}
    assert len(lazy.train_set) == 12 - 9  # a window spans (4 - 1) * 3 + 1 = 10 frames
    for i in range(len(lazy.train_set)):
        x, y = lazy.train_set[i], eager.train_set[i]
        torch.testing.assert_close(x[VIDEO], y[VIDEO], rtol=0, atol=0)
        assert x[META]["frames"] == [i, i + 3, i + 6, i + 9]
    assert lazy.train_set[0][VIDEO].shape == (2, 3, 6, 8)


def test_frame_windows_bad_input(tmp_path: Path) -> None:
    _folders(tmp_path, {"a": 6, "b": 6, "c": 6})
    with pytest.raises(ConfigError, match=r"data\.test_sequences"):
        FramesForecastDataModule(root=str(tmp_path), test_sequences=["zz"]).setup()
    with pytest.raises(ConfigError, match="a window spans 20 frames"):
        FramesForecastDataModule(root=str(tmp_path)).setup()
    with pytest.raises(ConfigError, match="none for training"):
        FramesForecastDataModule(
            root=str(tmp_path),
            input_frames=2,
            future_frames=2,
            split=SplitConfig(test_fraction=0.5, val_fraction=0.5),
        ).setup()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no frame folder"):
        FramesForecastDataModule(root=str(empty)).setup()
    with pytest.raises(DataError, match="is not a folder"):
        FramesForecastDataModule(root=str(tmp_path / "missing")).setup()
    with pytest.raises(ConfigError, match=r"data\.frame_step"):
        FramesForecastDataModule(root=str(tmp_path), frame_step=0)
    # a frame of another size alone in the second read chunk (32 frames) is refused, not resized
    mixed = tmp_path / "mixed" / "m"
    mixed.mkdir(parents=True)
    for k in range(33):
        size = (12, 18) if k == 32 else (12, 16)
        write_png(torch.full((3, *size), k, dtype=torch.uint8), str(mixed / f"{k:05d}.png"))
    shutil.copytree(mixed, tmp_path / "mixed" / "n")
    with pytest.raises(DataError, match=r"00032\.png: frame size \(12, 18\) differs from \(12, 16\)"):  # fmt: skip
        FramesForecastDataModule(
            root=str(tmp_path / "mixed"), input_frames=2, future_frames=2, test_sequences=["n"],
            split=SplitConfig(val_fraction=0.0),
        ).setup()  # fmt: skip


def test_prepare_frames_crops_resizes_and_converts_to_luma() -> None:
    rgb = torch.zeros(1, 20, 40, 3, dtype=torch.uint8)
    rgb[..., 10:30, 0] = 255  # a red centre square; the blue side bands fall outside the crop
    rgb[..., :10, 2] = 255
    rgb[..., 30:, 2] = 255
    out = prepare_frames(rgb, (10, 10), grey=True)
    assert out.shape == (1, 1, 10, 10)
    assert torch.all(out == round(0.299 * 255))
    colour = prepare_frames(rgb, (10, 10), grey=False)
    assert torch.all(colour[0, 0] == 255) and torch.all(colour[0, 1:] == 0)


@pytest.mark.skipif(not CLIPS.is_dir(), reason="shared video clips absent")
def test_frame_windows_from_video_files() -> None:
    names = [
        "mmaction2/tests/data/test.mp4",
        "mmaction2/tests/data/test.avi",
        "mmaction2/demo/demo.mp4",
    ]
    dm = FramesForecastDataModule(
        root=str(CLIPS),
        sequences=names,
        test_sequences=[names[0]],
        val_sequences=[],
        preload=False,
        split=SplitConfig(val_fraction=0.0),
    )
    dm.setup()
    s = dm.test_set[1]
    idx = s[META]["frames"]
    ref = prepare_frames(read_video_frames(CLIPS / names[0], idx), (64, 64), True).float() / 255
    torch.testing.assert_close(torch.cat([s[VIDEO], s[FUTURE]]), ref, rtol=0, atol=0)
    assert {dm.train_set[i][META]["sequence"] for i in (0, len(dm.train_set) - 1)} <= set(names[1:])


@pytest.mark.skipif(not DAVIS.is_dir(), reason="DAVIS subset absent")
def test_frame_windows_from_davis() -> None:
    dm = FramesForecastDataModule(root=str(DAVIS), preload=False)
    dm.setup()
    parts = dm.split_names
    assert len(parts["train"]) == 5 and len(parts["val"]) == 1 and len(parts["test"]) == 2
    assert not set(parts["train"]) & set(parts["test"])
    s = dm.test_set[0]
    assert s[VIDEO].shape == s[FUTURE].shape == (10, 1, 64, 64)
    assert bool(torch.isfinite(s[VIDEO]).all()) and float(s[VIDEO].std()) > 0.05
    assert 0.05 < float(s[VIDEO].mean()) < 0.95
