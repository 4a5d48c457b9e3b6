"""Optical flow (visrep.data.video.flow): a known translation, input layouts, the method check and
the disk cache."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.nn import functional as nnf

from visrep.data.augment import rgb_to_luma
from visrep.data.video.flow import FlowCache, compute_flow, flow_between
from visrep.errors import ConfigError, DataError, ShapeError


def texture(h: int = 80, w: int = 96, seed: int = 0) -> torch.Tensor:
    """A smooth random grey texture ``(1, 1, H, W)`` in [0, 1] (blurred noise: flow needs texture)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, h, w, generator=g)
    k = torch.exp(-(torch.arange(-4, 5.0) ** 2) / 4.0)
    k = (k[:, None] * k[None]) / (k.sum() ** 2)
    x = nnf.conv2d(nnf.pad(x, (4, 4, 4, 4), mode="reflect"), k[None, None])
    return (x - x.min()) / (x.max() - x.min())


def shifted(img: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """``img`` moved by ``(dx, dy)`` pixels: ``out(x + d) = img(x)`` (bilinear, border clamped)."""
    _, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")  # fmt: skip
    gx, gy = (xs - dx) / (w - 1) * 2 - 1, (ys - dy) / (h - 1) * 2 - 1
    grid = torch.stack([gx, gy], -1)[None]
    return nnf.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)


@pytest.mark.parametrize(("dx", "dy"), [(2.0, -1.0), (1.5, 0.5), (-3.0, 2.0)])
def test_known_translation(dx: float, dy: float) -> None:
    a = texture()
    b = shifted(a, dx, dy)
    c = shifted(a, 2 * dx, 2 * dy)
    frames = torch.cat([a, b, c]).expand(-1, 3, -1, -1)  # (T, C, H, W) float RGB
    flow = compute_flow(frames)
    assert flow.shape == (2, 2, 80, 96) and flow.dtype == torch.float32
    inner = flow[:, :, 12:-12, 12:-12]  # away from the clamped border
    for t in range(2):
        assert inner[t, 0].median() == pytest.approx(dx, abs=0.1)
        assert inner[t, 1].median() == pytest.approx(dy, abs=0.1)
        err = ((inner[t, 0] - dx) ** 2 + (inner[t, 1] - dy) ** 2).sqrt()
        assert (err < 0.5).float().mean() > 0.9


def test_layouts_agree_with_opencv() -> None:
    a, b = texture(seed=1), shifted(texture(seed=1), 1.0, 1.0)
    rgb = torch.cat([a, b]).expand(-1, 3, -1, -1)
    u8 = (rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # (T, H, W, C)
    grey = u8[..., :1].contiguous()  # (T, H, W, 1)
    f_float, f_u8, f_grey = compute_flow(rgb), compute_flow(u8), compute_flow(grey)
    assert torch.equal(f_float, f_u8) and torch.equal(f_u8, f_grey)
    ref = cv2.calcOpticalFlowFarneback(
        grey[0, ..., 0].numpy(), grey[1, ..., 0].numpy(), None, 0.5, 3, 15, 3, 5, 1.2, 0
    )
    assert np.array_equal(f_u8[0].permute(1, 2, 0).numpy(), ref)
    assert torch.equal(flow_between(u8[:1], u8[1:]), f_u8)


def test_luma_is_opencv_bt601() -> None:
    """The one BT.601 helper (flow, forecasting frames, colour jitter) matches OpenCV's grey."""
    x = torch.randint(0, 256, (2, 9, 11, 3), generator=torch.Generator().manual_seed(0))
    x = x.to(torch.uint8)
    y = rgb_to_luma(x, -1).round().to(torch.uint8)[..., 0]
    ref = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in x.numpy()])
    assert np.abs(y.numpy().astype(int) - ref.astype(int)).max() <= 1  # OpenCV: fixed point
    assert (y.numpy() == ref).mean() > 0.95
    with pytest.raises(ShapeError, match="rgb_to_luma expects 3 channels"):
        rgb_to_luma(torch.zeros(2, 4, 5, 5))


def test_bad_input() -> None:
    with pytest.raises(ShapeError, match="needs >= 2 frames"):
        compute_flow(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ShapeError, match="1 or 3 channels"):
        compute_flow(torch.zeros(2, 2, 8, 8))
    with pytest.raises(ConfigError, match="flow method must be one of"):
        compute_flow(torch.zeros(2, 3, 8, 8), method="brox")  # type: ignore[arg-type]


def test_tvl1_needs_contrib() -> None:
    if hasattr(cv2, "optflow"):
        flow = compute_flow(torch.cat([texture(), shifted(texture(), 2.0, 0.0)]), "tvl1")
        assert flow[0, 0, 12:-12, 12:-12].median() == pytest.approx(2.0, abs=0.15)
    else:
        with pytest.raises(ConfigError, match="opencv-contrib"):
            compute_flow(torch.zeros(2, 1, 8, 8), method="tvl1")


def test_flow_cache(tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    src.write_bytes(b"stands for a video file")
    frames = torch.cat([shifted(texture(40, 48), 1.0 * t, 0.0) for t in range(6)])
    calls = []

    def decode() -> torch.Tensor:
        calls.append(1)
        return frames

    cache = FlowCache(tmp_path / "cache")
    f1 = cache.get(src, decode, gap=2, tag="short=40")
    assert f1.shape == (4, 2, 40, 48) and f1.dtype == np.float16 and len(calls) == 1
    ref = flow_between(frames[:-2], frames[2:]).numpy()
    assert np.allclose(f1, ref, atol=2e-3 * np.abs(ref).max() + 1e-3)  # float16 storage
    f2 = cache.get(src, decode, gap=2, tag="short=40")
    assert len(calls) == 1 and np.array_equal(f1, f2)  # the second read comes from disk
    assert isinstance(f2, np.memmap)
    cache.get(src, decode, gap=1, tag="short=40")  # other parameters: another entry
    assert len(calls) == 2 and len(list((tmp_path / "cache").glob("*.npy"))) == 2
    src.write_bytes(b"the file changed: its size and time too")
    cache.get(src, decode, gap=2, tag="short=40")
    assert len(calls) == 3
    with pytest.raises(DataError, match="no pair 9 apart"):
        cache.get(src, decode, gap=9)
    with pytest.raises(ConfigError, match="gap must be >= 1"):
        cache.get(src, decode, gap=0)
