"""Video figures (visrep.plots.video)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visrep.errors import ShapeError
from visrep.plots.video import plot_clip_strips, plot_forecast, plot_per_step, save_gif


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def test_clip_strips(tmp_path: Path) -> None:
    clips = torch.rand(3, 12, 3, 16, 20, generator=torch.Generator().manual_seed(0))
    a = _png(plot_clip_strips(clips, ["pred 3 / true 3", "pred 1 / true 2", "c"], tmp_path / "a.png", max_frames=4))  # fmt: skip
    b = _png(plot_clip_strips(clips, ["a", "b", "c"], tmp_path / "b.png", max_frames=12))
    assert b.shape[1] > a.shape[1] * 2  # 12 columns against 4
    red = plot_clip_strips(clips, ["x", "y", "z"], tmp_path / "r.png", correct=[True, False, True])
    px = _png(red).reshape(-1, 3).astype(int)
    assert ((px[:, 0] > 200) & (px[:, 1] < 60) & (px[:, 2] < 60)).any()  # a red title
    grey = plot_clip_strips(torch.rand(1, 2, 1, 8, 8), ["g"], tmp_path / "g.png")
    assert grey.is_file()
    with pytest.raises(ShapeError, match="2 titles for 3 clips"):
        plot_clip_strips(clips, ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ShapeError, match="clips must have 5 dimensions"):
        plot_clip_strips(clips[0], ["a"], tmp_path / "x.png")


def test_gif(tmp_path: Path) -> None:
    t = torch.linspace(0, 1, 5).view(5, 1, 1, 1).expand(5, 3, 6, 9)
    path = save_gif(t, tmp_path / "sub" / "c.gif", fps=4)
    with Image.open(path) as im:
        assert im.n_frames == 5 and im.size == (9, 6) and im.info["duration"] == 250
        means = []
        for k in range(5):
            im.seek(k)
            means.append(float(np.asarray(im.convert("L")).mean()))
    assert np.allclose(means, np.linspace(0, 255, 5), atol=2)
    with Image.open(save_gif(t[:, :1], tmp_path / "grey.gif")) as im:
        assert im.n_frames == 5
    with pytest.raises(ShapeError, match="fps must be > 0"):
        save_gif(t, tmp_path / "x.gif", fps=0)


def test_forecast_and_per_step(tmp_path: Path) -> None:
    inputs, truth = torch.rand(5, 4, 1, 8, 8), torch.rand(5, 3, 1, 8, 8)
    p = _png(plot_forecast(inputs, truth, truth.flip(1), tmp_path / "f.png", max_rows=2))
    q = _png(plot_forecast(inputs, truth, truth, tmp_path / "g.png", max_rows=1))
    assert p.shape[0] > q.shape[0] * 1.5  # two sequences (6 rows) against one (3 rows)
    with pytest.raises(ShapeError, match="truth"):
        plot_forecast(inputs, truth, truth[:, :2], tmp_path / "h.png")
    s = plot_per_step({"ConvLSTM": [0.01, 0.02, 0.04], "copy last frame": [0.03, 0.05, 0.06]}, "MSE", tmp_path / "s.png")  # fmt: skip
    assert _png(s).shape[1] > 300
