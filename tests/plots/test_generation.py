"""Figures of generative models: the tiling is exact, every figure writes a PNG, bad shapes
raise one-line ShapeErrors."""

from __future__ import annotations

import pytest
import torch

from visrep.errors import ShapeError
from visrep.plots import (
    plot_image_grid,
    plot_interpolations,
    plot_latent_manifold,
    plot_reconstructions,
    tile_images,
)

PNG = b"\x89PNG\r\n\x1a\n"


def test_tile_images_places_each_image_in_its_cell():
    images = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 1, 2, 3) / 10
    grid = tile_images(images, ncol=2, pad=1, pad_value=1.0)
    assert grid.shape == (1, 3 * 3 + 1, 2 * 4 + 1)
    for i in range(5):
        r, c = divmod(i, 2)
        cell = grid[0, 1 + 3 * r : 3 + 3 * r, 1 + 4 * c : 4 + 4 * c]
        assert torch.allclose(cell, torch.full((2, 3), i / 10))
    assert (grid[0, 7:9, 5:8] == 1).all()  # the empty sixth cell
    assert (grid[0, 0] == 1).all() and (grid[0, :, 4] == 1).all()  # gaps


def test_every_figure_writes_a_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(10, 1, 8, 8, generator=g)
    rgb = torch.rand(4, 3, 6, 6, generator=g)
    paths = [
        plot_image_grid(x, tmp_path / "grid.png"),
        plot_image_grid(rgb, tmp_path / "rgb.png", ncol=4, title="rgb"),
        plot_reconstructions(x, x.flip(0), tmp_path / "rec.png", ncol=4),
        plot_interpolations(torch.rand(3, 7, 1, 8, 8, generator=g), tmp_path / "interp.png"),
        plot_latent_manifold(
            torch.rand(16, 1, 8, 8, generator=g), [-1.5, -0.5, 0.5, 1.5], tmp_path / "manifold.png"
        ),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == PNG, p


def test_bad_shapes(tmp_path):
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(ShapeError):
        plot_image_grid(torch.rand(4, 8, 8), tmp_path / "a.png")
    with pytest.raises(ShapeError, match="same shape"):
        plot_reconstructions(x, x[:3], tmp_path / "b.png")
    with pytest.raises(ShapeError, match="R, S"):
        plot_interpolations(x, tmp_path / "c.png")
    with pytest.raises(ShapeError, match="n \\* n"):
        plot_latent_manifold(x, [0.0, 1.0, 2.0], tmp_path / "d.png")
    assert not list(tmp_path.iterdir())
