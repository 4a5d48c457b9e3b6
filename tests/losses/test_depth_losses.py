"""Godard et al. 2017's losses: SSIM, appearance, edge-aware smoothness, left-right consistency."""

from __future__ import annotations

import pytest
import torch

from tests.models.test_depth import shifted_pair, texture
from visrep.errors import ConfigError, ShapeError
from visrep.losses.depth import (
    MonodepthLoss,
    appearance_loss,
    disparity_smoothness,
    lr_consistency,
    monodepth_loss,
    ssim_map,
)
from visrep.models.depth import warp_with_disparity


def test_ssim_matches_scikit_image_uniform_3x3():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 12, 15, dtype=torch.float64, generator=g)
    y = (x + 0.2 * torch.rand(1, 3, 12, 15, dtype=torch.float64, generator=g)).clamp(0, 1)
    ours = ssim_map(x, y)[0]
    assert ours.shape == (3, 10, 13)
    for c in range(3):
        _, full = structural_similarity(
            x[0, c].numpy(), y[0, c].numpy(), win_size=3, gaussian_weights=False,
            use_sample_covariance=False, data_range=1.0, full=True,
        )  # fmt: skip
        # scikit-image pads by reflection; its interior is the valid windows
        assert torch.allclose(ours[c], torch.from_numpy(full[1:-1, 1:-1]), atol=1e-10)


def test_ssim_is_one_for_equal_images_and_kornia_agrees_on_order():
    import kornia

    x = texture(16, 16)
    assert torch.allclose(ssim_map(x, x), torch.ones(1, 3, 14, 14, dtype=x.dtype))
    noisy = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0),
                                    dtype=x.dtype)).clamp(0, 1)  # fmt: skip
    noisier = (x + 0.2 * (noisy - x) / 0.05).clamp(0, 1)
    # kornia's (Gaussian window) SSIM ranks the two distortions the same way
    ours = [float(ssim_map(x, n).mean()) for n in (noisy, noisier)]
    theirs = [float(kornia.metrics.ssim(x, n, 3, padding="valid").mean()) for n in (noisy, noisier)]
    assert ours[0] > ours[1] and theirs[0] > theirs[1]


def test_appearance_loss_value():
    x = texture(8, 8)
    assert float(appearance_loss(x, x)) == pytest.approx(0.0, abs=1e-12)
    y = (x + 0.1).clamp(0, 1)
    want = 0.85 * ((1 - ssim_map(x, y)) / 2).clamp(0, 1).mean() + 0.15 * (x - y).abs().mean()
    assert torch.allclose(appearance_loss(y, x), want)
    assert torch.allclose(appearance_loss(y, x, alpha=0.0), (x - y).abs().mean())
    with pytest.raises(ConfigError, match="alpha"):
        appearance_loss(x, y, alpha=1.5)


def test_smoothness_zero_for_constant_and_smaller_at_image_edges():
    h, w = 6, 10
    const = torch.full((1, 1, h, w), 0.2)
    img = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    assert float(disparity_smoothness(const, img)) == 0.0
    step = torch.zeros(1, 1, h, w)
    step[..., 5:] = 0.1  # a disparity edge between columns 4 and 5
    flat = torch.full((1, 3, h, w), 0.5)
    edge = flat.clone()
    edge[..., 5:] = 1.0  # an image edge at the same place
    on_flat, on_edge = disparity_smoothness(step, flat), disparity_smoothness(step, edge)
    # analytic: one column of x-gradients of 0.1 over h * (w - 1) terms, weight e^0 or e^-0.5
    assert float(on_flat) == pytest.approx(0.1 * h / (h * (w - 1)))
    assert float(on_edge) == pytest.approx(0.1 * h / (h * (w - 1)) * torch.exp(torch.tensor(-0.5)))
    assert on_edge < on_flat


def test_lr_consistency_zero_for_consistent_disparities():
    """A fronto-parallel plane (constant d) is consistent in both views; so is a tilted plane
    whose right disparity is the left one carried along the match."""
    d = torch.full((1, 1, 8, 20), 0.1)
    assert float(lr_consistency(d, d)) == pytest.approx(0.0, abs=1e-7)
    # left disparity varying along y only: d^r(x - d^l) = d^l for every column
    ramp = torch.linspace(0.05, 0.2, 8).view(1, 1, 8, 1).expand(1, 1, 8, 20).contiguous()
    assert float(lr_consistency(ramp, ramp)) == pytest.approx(0.0, abs=1e-7)
    wrong = ramp.flip(-2)
    assert float(lr_consistency(ramp, wrong)) > 0.05
    with pytest.raises(ShapeError, match="differ"):
        lr_consistency(d, d[..., :10])


def test_total_loss_is_the_weighted_sum_over_scales():
    left, right = shifted_pair(16, 32, 2)
    left, right = left.float(), right.float()
    g = torch.Generator().manual_seed(0)
    disps = [0.05 + 0.1 * torch.rand(1, 2, 16 // 2**s, 32 // 2**s, generator=g) for s in range(4)]
    total, parts = monodepth_loss(disps, left, right, 0.85, 0.1, 1.0)
    want = torch.zeros(())
    for s, d in enumerate(disps):
        il = torch.nn.functional.interpolate(left, size=d.shape[-2:], mode="area")
        ir = torch.nn.functional.interpolate(right, size=d.shape[-2:], mode="area")
        dl, dr = d[:, :1], d[:, 1:]
        want = want + appearance_loss(warp_with_disparity(ir, dl, "right_to_left"), il)
        want = want + appearance_loss(warp_with_disparity(il, dr, "left_to_right"), ir)
        want = want + 0.1 / 2**s * (disparity_smoothness(dl, il) + disparity_smoothness(dr, ir))
        want = want + lr_consistency(dl, dr)
    assert torch.allclose(total, want, atol=1e-6)
    assert torch.allclose(MonodepthLoss()(disps, left, right), total)
    assert set(parts) == {"appearance", "smoothness", "lr_consistency"}


def test_true_disparity_lowers_the_appearance_term():
    d = 2
    left, right = shifted_pair(16, 32, d)
    true = torch.full((1, 2, 16, 32), d / 32, dtype=left.dtype)
    zero = torch.zeros_like(true)
    assert (
        monodepth_loss([true], left, right)[1]["appearance"]
        < 0.2 * monodepth_loss([zero], left, right)[1]["appearance"]
    )


def test_monodepth_loss_bad_input():
    x = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ShapeError, match="expected \\(1, 2"):
        monodepth_loss([torch.zeros(1, 1, 8, 8)], x, x)
    with pytest.raises(ShapeError, match="finest"):
        monodepth_loss([torch.zeros(1, 2, 4, 4)], x, x)
    with pytest.raises(ShapeError, match="left"):
        monodepth_loss([torch.zeros(1, 2, 8, 8)], x, x[..., :4])
    with pytest.raises(ConfigError, match="lr_weight"):
        MonodepthLoss(lr_weight=-1)
