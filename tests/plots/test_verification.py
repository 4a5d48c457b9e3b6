"""ROC and distance-histogram figures (visrep.plots.verification)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visrep.errors import ShapeError
from visrep.plots import plot_distance_histogram, plot_roc


def test_roc_and_histogram_write_pngs(tmp_path):
    far = torch.tensor([0.0, 0.0, 0.01, 0.5, 1.0])
    tar = torch.tensor([0.0, 0.6, 0.9, 0.99, 1.0])
    p = plot_roc({"a": (far, tar), "b": (np.linspace(0, 1, 5), np.linspace(0, 1, 5))},
                 tmp_path / "roc.png", "t")  # fmt: skip
    assert p.read_bytes()[:4] == b"\x89PNG"
    h = plot_distance_histogram(torch.rand(50), torch.rand(80) + 0.5, tmp_path / "h.png", 0.7)
    assert h.read_bytes()[:4] == b"\x89PNG"
    # all distances equal: still a valid range
    assert plot_distance_histogram([1.0, 1.0], [1.0], tmp_path / "same.png").is_file()


def test_bad_inputs():
    with pytest.raises(ShapeError, match="equal-length"):
        plot_roc({"a": ([0, 1], [0, 0.5, 1])}, "unused.png")
    with pytest.raises(ShapeError, match="at least one curve"):
        plot_roc({}, "unused.png")
    with pytest.raises(ShapeError, match="same and different"):
        plot_distance_histogram([], [1.0], "unused.png")
