"""Readable event pictures (visrep.plots.events): robust scales, diverging maps, polarity overlay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.colors import Normalize
from PIL import Image

from visrep.errors import ConfigError, ShapeError
from visrep.plots.events import (
    DIVERGING_CMAP,
    channel_norm,
    event_images,
    is_signed,
    plot_event_frames,
    polarity_overlay,
    robust_limit,
)


def _counts_with_hot_pixel(seed: int = 0) -> np.ndarray:
    """A sparse 48 x 64 count map, counts 1..12 on a third of the pixels, one pixel at 1e6."""
    rng = np.random.default_rng(seed)
    m = rng.integers(1, 13, size=(48, 64)).astype(np.float64) * (rng.random((48, 64)) < 0.3)
    m[5, 7] = 1e6
    return m


@pytest.mark.parametrize("log", [True, False])
def test_robust_scale_ignores_a_hot_pixel(log: bool) -> None:
    m = _counts_with_hot_pixel()
    rest = m[(m > 0) & (m < 1e6)]
    shown = np.asarray(channel_norm(m, log=log)(rest))
    # the ordinary pixels still span the colour range: the brightest saturate, the 1s stay low
    assert shown.max() == pytest.approx(1.0) and shown.min() < 0.35
    assert np.unique(shown.round(3)).size >= 10  # 1..12 stay distinguishable
    # scaling by the maximum (what visrep drew before) squeezes them into the first 0.01 %
    assert Normalize(0, m.max())(rest).max() < 1e-4
    # the overlay draws a count of 6 strongly despite the hot pixel
    rgb = polarity_overlay(np.where(m == 6, m, 0) + (m == 1e6) * 1e6, np.zeros_like(m), log=log)
    assert (1 - rgb[m == 6]).max(-1).min() > 0.4


def test_robust_limit_per_image_matches_one_image_at_a_time() -> None:
    stack = np.stack([_counts_with_hot_pixel(s) * (s + 1) for s in range(3)] + [np.zeros((48, 64))])
    per = robust_limit(stack, 95.0, axis=(1, 2))
    expected = [float(robust_limit(img, 95.0)) for img in stack]
    assert np.allclose(per, expected) and per[-1] == 1.0  # an empty image: limit 1
    assert float(robust_limit([0.0, -4.0, 2.0], 100.0)) == 4.0  # magnitudes, zeros left out
    with pytest.raises(ConfigError, match="percentile"):
        robust_limit(stack, 0.0)


def test_diverging_norm_maps_zero_to_the_centre() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(0, 1, (32, 32)) * (rng.random((32, 32)) < 0.5)
    v[0, 0] = 40.0  # lopsided: a hot positive pixel must not shift the centre
    assert is_signed(v) and not is_signed(np.abs(v)) and is_signed(np.abs(v), name="voxel")
    norm = channel_norm(v)
    m = float(robust_limit(v))
    assert float(norm(0.0)) == 0.5
    assert float(norm(m)) == pytest.approx(1.0) and float(norm(-m)) == pytest.approx(0.0)
    assert float(norm(40.0)) == 1.0 and float(norm(-1e9)) == 0.0  # clipped, never +-inf
    cmap = colormaps[DIVERGING_CMAP]
    assert np.allclose(cmap(norm(0.0)), cmap(0.5))
    # a voxel grid picture: empty pixels are the colormap's centre, positive red, negative blue
    frames = torch.zeros(1, 3, 4, 5)
    frames[0, 1, 0, 0], frames[0, 2, 1, 1] = 2.0, -2.0
    img = event_images(frames, "voxel")[0]
    assert torch.allclose(img[:, 3, 3], torch.tensor(cmap(0.5)[:3]).float())
    assert img[0, 0, 0] > img[2, 0, 0] and img[2, 1, 1] > img[0, 1, 1]


def test_polarity_overlay_colours() -> None:
    on = np.array([[3.0, 0.0, 0.0, 3.0]])
    off = np.array([[0.0, 3.0, 0.0, 3.0]])
    rgb = polarity_overlay(on, off)[0]
    only_on, only_off, none, both = rgb
    assert only_on[0] > only_on[2] + 0.5 and only_on[0] > only_on[1] + 0.5  # red
    assert only_off[2] > only_off[0] + 0.5 and only_off[2] > only_off[1] + 0.4  # blue
    assert np.array_equal(none, [1.0, 1.0, 1.0])  # white
    assert both[0] == pytest.approx(both[2], abs=0.1) and both[1] < 0.4  # purple
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    with pytest.raises(ShapeError):
        polarity_overlay(on, off[:, :2])


def test_event_images_scale_per_image_or_jointly() -> None:
    frames = torch.zeros(2, 2, 3, 8)  # count maps: OFF channel 0, ON channel 1
    frames[0, 1, 1], frames[1, 1, 1] = 1.0, 100.0  # a row of ON events, 1 or 100 each
    own = event_images(frames, "count")
    assert torch.allclose(own[0], own[1])  # each saturates its own events
    joint = event_images(frames, "count", joint=True)
    # one scale: the 1-count events are paler (more green and blue) than the 100-count ones
    assert (joint[0, 1:, 1] > joint[1, 1:, 1] + 0.3).all()
    assert torch.allclose(joint[1], own[1])
    assert joint.shape == (2, 3, 3, 8) and joint.min() >= 0 and joint.max() <= 1
    grey = event_images(torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    with pytest.raises(ShapeError):
        event_images(torch.zeros(3, 4, 4))


@pytest.mark.parametrize(
    ("name", "channels"), [("count", 2), ("count", 4), ("voxel", 3), (None, 3), ("timesurface", 2)]
)
def test_plot_event_frames_draws_every_kind(
    tmp_path: Path, name: str | None, channels: int
) -> None:
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 5, (channels, 12, 16), generator=g).float()
    if name == "voxel":
        frames -= 2.0
    out = plot_event_frames(frames, None, "t", tmp_path / "f.png", name=name)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 2 * im.size[1]
