"""GAN figures (visrep.plots.generation): 2-d points over mixture modes, samples beside their
nearest training images, unpaired translations; each writes a PNG, lays its images out as
documented, and refuses bad shapes in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import visrep.plots.generation as gen
from visrep.errors import ShapeError
from visrep.plots.generation import plot_nearest_neighbours, plot_points_2d, plot_translations

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tiled(monkeypatch):
    """The images each figure hands to tile_images, and the columns it asked for."""
    seen: list[tuple[torch.Tensor, int]] = []
    real = gen.tile_images

    def spy(images, ncol, *args, **kwargs):
        seen.append((images.clone(), ncol))
        return real(images, ncol, *args, **kwargs)

    monkeypatch.setattr(gen, "tile_images", spy)
    return seen


def test_points_2d(tmp_path):
    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 2, generator=g)
    p = plot_points_2d(real, real.numpy() * 0.5, torch.zeros(8, 2), tmp_path / "p.png", "ring")
    assert p.read_bytes().startswith(PNG)
    assert plot_points_2d(real, real, None, tmp_path / "q.png").is_file()
    with pytest.raises(ShapeError, match=r"fake must be points \(N, 2\), got \(5, 3\)"):
        plot_points_2d(real, np.zeros((5, 3)), None, tmp_path / "r.png")


def test_nearest_neighbours_rows(tmp_path, tiled):
    samples = torch.full((2, 1, 4, 4), 0.1) * torch.tensor([1.0, 2.0]).view(2, 1, 1, 1)
    neighbours = torch.rand(2, 3, 1, 4, 4)
    path = plot_nearest_neighbours(samples, neighbours, tmp_path / "nn.png", "copies?")
    assert path.read_bytes().startswith(PNG)
    images, ncol = tiled[-1]
    assert ncol == 5 and images.shape == (10, 1, 4, 4)
    rows = images.view(2, 5, 1, 4, 4)
    assert torch.equal(rows[:, 0], samples) and (rows[:, 1] == 1).all()  # sample, blank gap
    assert torch.equal(rows[:, 2:], neighbours)  # then the neighbours, nearest first
    with pytest.raises(ShapeError, match=r"\(N, k, C, H, W\) = \(2, k, 1, 4, 4\)"):
        plot_nearest_neighbours(samples, neighbours[:1], tmp_path / "x.png")


def test_translations_rows_and_grey_beside_colour(tmp_path, tiled):
    a = torch.rand(3, 1, 5, 5)
    ab = torch.rand(3, 3, 5, 5)
    path = plot_translations(a, ab, a.flip(0), tmp_path / "t.png", "A -> B -> A")
    assert path.read_bytes().startswith(PNG)
    images, ncol = tiled[-1]
    assert ncol == 3 and images.shape == (9, 3, 5, 5)  # rows: input, translated, reconstructed
    assert torch.equal(images[:3], a.expand(-1, 3, -1, -1))
    assert torch.equal(images[3:6], ab) and torch.equal(images[6:, :1], a.flip(0))
    assert plot_translations(ab, ab, ab, tmp_path / "rgb.png").is_file()
    with pytest.raises(ShapeError, match="same number of images"):
        plot_translations(a, ab[:2], a, tmp_path / "bad.png")
    with pytest.raises(ShapeError, match="one side must be grey"):
        plot_translations(torch.rand(3, 2, 5, 5), ab, torch.rand(3, 2, 5, 5), tmp_path / "c.png")
