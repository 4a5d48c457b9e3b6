"""Clip sampling (visrep.data.video.clips) and clip transforms (visrep.data.video.transforms)."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from visrep.data.video.clips import clip_indices, clip_span, resample_indices
from visrep.data.video.transforms import FlowField, clip_augment, short_side, video_transform
from visrep.errors import ConfigError, DataError


@pytest.mark.parametrize("mode", ["uniform", "random", "dense"])
@pytest.mark.parametrize(
    ("n", "t", "s", "k"), [(100, 16, 1, 1), (100, 16, 2, 5), (31, 16, 2, 3), (7, 1, 1, 9)]
)
def test_clip_invariants(mode: str, n: int, t: int, s: int, k: int) -> None:  # fmt: skip
    c = clip_indices(n, t, s, mode, k, torch.Generator().manual_seed(0))
    assert c.shape == (k, t) and c.dtype == torch.int64
    assert int(c.min()) >= 0 and int(c.max()) <= n - 1
    assert (c[:, 1:] - c[:, :-1] == s).all()  # every clip: frames exactly `stride` apart
    if mode != "random":
        assert (c[1:, 0] >= c[:-1, 0]).all()  # spread from the start to the end, in order


def test_dense_uniform_random_positions() -> None:
    d = clip_indices(100, 16, 2, "dense", 3)  # span 31: starts 0 .. 69
    assert d[:, 0].tolist() == [0, 35, 69] and int(d[-1, -1]) == 99
    assert clip_indices(100, 10, 1, "dense", 1)[0, 0] == 45  # one dense clip: the centre one
    u = clip_indices(100, 10, 1, "uniform", 1)
    assert int(u[0, 0]) == 45  # centre of the start range 0..90
    # an odd last start (3: starts 0..3): one dense clip is the uniform centre clip, start 2
    assert clip_indices(7, 4, 1, "dense", 1).tolist() == [[2, 3, 4, 5]]
    assert torch.equal(clip_indices(7, 4, 1, "dense", 1), clip_indices(7, 4, 1, "uniform", 1))
    for n in range(4, 12):  # every last start 0..7
        assert torch.equal(clip_indices(n, 4, 1, "dense", 1), clip_indices(n, 4, 1, "uniform", 1))
    u4 = clip_indices(100, 10, 1, "uniform", 4)[:, 0]  # centres of 4 segments of 0..90
    assert u4.tolist() == [11, 34, 56, 79]  # floor((2k + 1) * 91 / 8)
    assert clip_indices(16, 16, 1, "random", 4).unique().numel() == 16  # exactly fits: start 0
    g = torch.Generator().manual_seed(3)
    starts = clip_indices(20, 5, 1, "random", 4000, g)[:, 0]
    assert torch.equal(
        clip_indices(20, 5, 1, "random", 4000, torch.Generator().manual_seed(3))[:, 0], starts
    )
    counts = torch.bincount(starts, minlength=16).float()  # uniform over the 16 possible starts
    assert counts.numel() == 16 and (counts / 4000 - 1 / 16).abs().max() < 0.025


def test_clip_errors() -> None:
    with pytest.raises(
        DataError,
        match=r"v\.mp4: a clip of 16 frames at stride 2 spans 31 frames, but the video has only 30",
    ):
        clip_indices(30, 16, 2, source="v.mp4")
    for kw in ({"clip_len": 0}, {"stride": 0}, {"num_clips": 0}):
        with pytest.raises(ConfigError, match=f"{next(iter(kw))} must be >= 1"):
            clip_indices(**{"num_frames": 30, "clip_len": 4, **kw})
    with pytest.raises(ConfigError, match="clip mode"):
        clip_indices(30, 4, mode="middle")  # type: ignore[arg-type]
    assert clip_span(16, 2) == 31


def test_resample_indices() -> None:
    assert resample_indices(10, 30, 15).tolist() == [0, 2, 4, 6, 8]
    assert resample_indices(3, 25, 50).tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(resample_indices(7, 24, 24), torch.arange(7))
    r = resample_indices(300, 29.97, 25.0)
    assert len(r) == 251  # ceil(300 * 25 / 29.97): the duration is kept
    assert (r[1:] >= r[:-1]).all() and int(r[-1]) <= 299
    times = torch.arange(len(r)) / 25.0  # each resampled frame shows the last source frame <= t
    assert ((r / 29.97 <= times + 1e-9) & ((r + 1) / 29.97 > times)).all()
    with pytest.raises(ConfigError, match="frame rates must be > 0"):
        resample_indices(10, 0, 25)


def test_transform_same_crop_and_flip_for_all_frames() -> None:
    torch.manual_seed(0)
    frame = torch.rand(3, 20, 30)
    clip = tv_tensors.Video(frame.expand(6, -1, -1, -1).clone())
    t = video_transform((8, 8), train=True)
    for _ in range(10):
        out = t(clip)
        assert isinstance(out, tv_tensors.Video) and out.shape == (6, 3, 8, 8)
        assert (out == out[:1]).all()  # identical frames stay identical: one draw for the clip
    assert short_side((112, 112)) == 128  # C3D: 128 x 171 frames, 112 x 112 crops
    centre = video_transform((8, 8), train=False, resize=20)(clip)
    assert torch.equal(centre[0], frame[:, 6:14, 11:19])  # resize 20 = no change, centre crop
    with pytest.raises(ConfigError, match="resize 6 must be >= the crop size"):
        video_transform((8, 8), resize=6)


def test_flow_moves_with_the_frames() -> None:
    h, w = 6, 10
    flow = torch.zeros(2, 2, h, w)
    flow[:, 0] = torch.arange(w, dtype=torch.float32)  # dx grows to the right
    flow[:, 1] = 1.0
    f = FlowField(flow)
    flipped = v2.functional.horizontal_flip(f)
    assert isinstance(flipped, FlowField)
    assert torch.equal(flipped[0, 0, 0], -torch.arange(w, dtype=torch.float32).flip(0))
    assert torch.equal(flipped[:, 1], flow[:, 1])  # dy unchanged by a horizontal flip
    vflip = v2.functional.vertical_flip(f)
    assert torch.equal(vflip[:, 1], -flow[:, 1])
    big = v2.functional.resize(f, [12, 20])  # twice the size: twice the displacement
    assert big.shape == (2, 2, 12, 20)
    assert torch.allclose(big[:, 1], torch.full((2, 12, 20), 2.0))
    const = FlowField(torch.stack([torch.full((h, w), 3.0), torch.full((h, w), 1.0)])[None])
    tall = v2.functional.resize(const, [12, 10])  # rows doubled, columns kept
    assert torch.allclose(tall[0, 0], torch.full((12, 10), 3.0))  # dx unchanged
    assert torch.allclose(tall[0, 1], torch.full((12, 10), 2.0))  # dy doubled
    wide = v2.functional.resize(const, [6, 30])
    assert torch.allclose(wide[0, 0], torch.full((6, 30), 9.0))
    assert torch.allclose(wide[0, 1], torch.full((6, 30), 1.0))
    cut = v2.functional.crop(f, 1, 2, 3, 4)
    assert torch.equal(cut.as_subclass(torch.Tensor), flow[:, :, 1:4, 2:6])
    # video and flow in one call: the same crop, and a flip negates dx
    torch.manual_seed(1)
    video = tv_tensors.Video(torch.arange(w, dtype=torch.float32).expand(3, 3, h, w).clone())
    seen = set()
    for _ in range(20):
        v, fl = clip_augment((4, 4), train=True)(video, f)
        flipped_now = bool(v[0, 0, 0, 0] > v[0, 0, 0, -1])
        seen.add(flipped_now)
        x0 = v[0, 0, 0].as_subclass(torch.Tensor)  # the columns the crop kept (flipped or not)
        assert torch.equal(fl[0, 0, 0].as_subclass(torch.Tensor), -x0 if flipped_now else x0)
    assert seen == {True, False}
    with pytest.raises(ConfigError, match="not supported on optical flow"):
        v2.RandomRotation(10)(video, f)
    with pytest.raises(ConfigError, match=r"FlowField expects \(\.\.\., 2, H, W\)"):
        FlowField(torch.zeros(2, 3, 4, 4))
