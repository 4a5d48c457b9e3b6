"""The NAIS-Net stability report of a classifier (visrep.analysis.stability_summary)."""

from __future__ import annotations

import pytest
import torch

from visrep.analysis.stability import fc_frobenius_margin
from visrep.analysis.stability_summary import stability_analysis, stability_metrics
from visrep.models import create_backbone


def test_stability_analysis_of_an_fc_naisnet() -> None:
    torch.manual_seed(0)
    net = create_backbone(
        "naisnet_fc", in_chans=1, num_classes=3, img_size=4, width=8, steps=4, tol=1e-2,
        activation="tanh",
    ).eval()  # fmt: skip
    data = [{"image": x, "label": i % 3} for i, x in enumerate(torch.rand(30, 1, 4, 4))]
    s, curves = stability_analysis(net, data, num_samples=10, noise_levels=[0, 0.5], n_iter=30)
    b = s["blocks"]["blocks.0"]
    assert b["kind"] == "fc" and b["margin_min"] == b["margin_mean"]
    assert b["margin_min"] == pytest.approx(
        float(fc_frobenius_margin(net.blocks[0].R.detach(), 0.01))
    )
    assert 0 < s["rho_max"] < 1  # projected tanh blocks are contractive (Sec. 4-5)
    assert curves["traj"]["blocks.1"].shape == (10, 4)
    assert s["classes"] == [0, 1, 2] and len(b["mean_depth_per_class"]) == 3
    metrics = stability_metrics(s)
    assert metrics["stability/margin_min"] == s["margin_min"]
    assert metrics["stability/blocks.0/mean_depth"] == b["mean_depth"]


def test_stability_analysis_with_relative_tol_and_projected_init() -> None:
    torch.manual_seed(0)
    net = create_backbone(
        "naisnet_fc", in_chans=1, num_classes=3, img_size=4, width=8, steps=8, tol=0.2,
        tol_mode="relative", init="input", h=0.5, activation="tanh",
    ).eval()  # fmt: skip
    data = [{"image": x, "label": i % 3} for i, x in enumerate(torch.rand(30, 1, 4, 4))]
    s, curves = stability_analysis(net, data, num_samples=10, noise_levels=[0], n_iter=10)
    b = s["blocks"]["blocks.0"]
    assert b["tol_mode"] == "relative" and b["tol"] == 0.2
    assert curves["tol"] is None  # no absolute threshold line on the step-norm plot
    counts = torch.tensor(b["depth_counts"])
    assert counts.shape == (3, 9) and counts.sum() == 30  # per-class histograms over 0..K_max
    assert 1 < b["mean_depth"] < 8 and s["flops_saved"] > 0  # the relative rule stops early
