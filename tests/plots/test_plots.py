"""Every figure of visrep.plots writes a PNG through the shared ``save``; bad shapes raise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from visrep.errors import ShapeError
from visrep.plots import (
    plot_adversarial_examples,
    plot_attributions,
    plot_confusion_matrix,
    plot_depth,
    plot_embedding,
    plot_event_frames,
    plot_learning_curves,
    plot_neighbours,
    plot_noise,
    plot_prediction_grid,
    plot_robustness,
    plot_robustness_comparison,
    plot_spectral,
    plot_trajectories,
    save,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _images(b: int, c: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def _is_png(p: Path) -> bool:
    return p.read_bytes()[:8] == PNG


def test_save_makes_folders_and_closes_the_figure(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, _ = plt.subplots()
    out = save(fig, tmp_path / "a" / "b" / "f.png")
    assert _is_png(out) and not plt.get_fignums()


def test_attribution_and_embedding_plots_write_pngs(tmp_path: Path) -> None:
    # moved from tests/analysis/test_interpret.py (the plots left visrep.analysis.interpret)
    x = _images(3, 3, 8, 8)
    maps = {"gradcam": torch.rand(3, 8, 8), "occlusion": torch.randn(3, 8, 8)}
    paths = [
        plot_attributions(x, maps, tmp_path / "a.png", titles=["a", "b", "c"]),
        plot_attributions(x[:, :1], maps, tmp_path / "grey.png"),
        plot_neighbours(x, torch.stack([x, x], 1), tmp_path / "n.png", ["q"] * 3, [["a", "b"]] * 3),
        plot_embedding(np.zeros((6, 2)), [0, 1, 2, 0, 1, 2], tmp_path / "e.png", ["x", "y", "z"]),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ShapeError, match="points"):
        plot_embedding(np.zeros((6, 3)), [0] * 6, tmp_path / "bad.png")
    with pytest.raises(ShapeError, match=r"\(B, C, H, W\)"):
        plot_attributions(x[0], maps, tmp_path / "bad.png")


def test_training_and_classification_plots(tmp_path: Path) -> None:
    rows = [{"epoch": str(e), "train/loss": str(1 / (e + 1)), "val/acc": ""} for e in range(3)]
    assert plot_learning_curves([], tmp_path / "none.png") is None
    assert _is_png(plot_learning_curves(rows, tmp_path / "lc.png"))
    assert _is_png(plot_confusion_matrix([[3, 1], [0, 4]], ["a", "b"], tmp_path / "cm.png"))
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    for c in (1, 2, 3):  # grey, two event channels (shown grey), RGB
        path = tmp_path / f"grid{c}.png"
        plot_prediction_grid(_images(3, c, 5, 5), torch.tensor([0, 1, 1]), probs, ["a", "b"], path)
        assert _is_png(path)


def test_robustness_plots(tmp_path: Path) -> None:
    curves = {"fgsm": [(0.0, 0.9), (0.1, 0.5)], "deepfool": [(0.0, 0.9), (0.1, 0.7)]}
    assert _is_png(plot_robustness(curves, 0.9, "linf", torch.rand(10), tmp_path / "r.png"))
    assert _is_png(plot_robustness(curves, 0.9, "l2", None, tmp_path / "r1.png"))
    runs = {"a": {("fgsm", "linf"): curves["fgsm"]}, "b": {("pgd", "linf"): [(0.0, 1.0)]}}
    assert _is_png(plot_robustness_comparison(runs, "linf", tmp_path / "c.png"))
    x = _images(2, 1, 6, 6)
    adv = {"fgsm": (x + 0.1).clamp(0, 1)}
    probs = {
        "clean": torch.tensor([[0.8, 0.2], [0.3, 0.7]]),
        "fgsm": torch.tensor([[0.4, 0.6]] * 2),
    }
    out = plot_adversarial_examples(x, torch.tensor([0, 1]), adv, probs, [], tmp_path / "e.png")
    assert _is_png(out)


def test_stability_plots(tmp_path: Path) -> None:
    class Curve:
        noise_norms = np.array([0.0, 0.5])
        mean_distance = np.array([0.0, 0.2])
        max_distance = np.array([0.0, 0.4])

    norms = {"backbone.blocks.0": torch.rand(8, 5) + 1e-3}
    assert _is_png(plot_trajectories(norms, 1e-2, tmp_path / "t.png"))
    assert _is_png(plot_noise({"blocks.0": Curve()}, Curve(), tmp_path / "n.png"))
    counts = {"blocks.0": np.array([[0, 3, 1], [0, 0, 4]])}
    assert _is_png(plot_depth(counts, [0, 2], ["a", "b", "c"], tmp_path / "d.png"))
    rho = {"blocks.0": torch.ones(2, 8)}
    assert _is_png(plot_spectral(rho, [0, 4], tmp_path / "s.png"))


def test_event_frames_plot(tmp_path: Path) -> None:
    frames = torch.rand(10, 6, 8)
    out = plot_event_frames(frames, torch.rand(3, 6, 8), "x", tmp_path / "ev.png")
    assert _is_png(out)
    assert _is_png(plot_event_frames(frames[:1], frames[:1], "one", tmp_path / "one.png"))
    with pytest.raises(ShapeError):
        plot_event_frames(frames[0], frames[0], "bad", tmp_path / "bad.png")
