"""Heat-map keypoints: Gaussian targets, soft-argmax (seed 001), sub-pixel argmax, PCK, PAFs."""

from __future__ import annotations

import itertools

import pytest
import torch
from kornia.geometry.subpix import spatial_soft_argmax2d
from scipy.optimize import linear_sum_assignment

from visrep.errors import ShapeError
from visrep.models.layers.heatmaps import (
    HeatmapArgmax,
    SoftArgmax,
    gaussian_heatmaps,
    heatmap_argmax,
    image_to_map,
    map_to_image,
    mean_pixel_error,
    paf_scores,
    paf_targets,
    pck,
    soft_argmax,
)


def _one_hot(h: int, w: int, x: int, y: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.float64)
    m[y, x] = 1.0
    return m


def test_soft_argmax_of_one_hot_tends_to_its_location_as_beta_grows():
    m = _one_hot(9, 12, x=8, y=2)
    errors = [
        float((soft_argmax(m, beta) - torch.tensor([8.0, 2.0], dtype=m.dtype)).norm())
        for beta in (1, 5, 10, 20, 40)
    ]
    assert all(a > b for a, b in itertools.pairwise(errors))
    assert errors[-1] < 1e-12
    # beta = 0: uniform weights, the centre of the map
    assert torch.allclose(soft_argmax(m, 0.0), torch.tensor([5.5, 4.0], dtype=m.dtype))


def test_soft_argmax_of_two_equal_peaks_is_their_mean():
    m = _one_hot(9, 12, x=1, y=1) + _one_hot(9, 12, x=9, y=7)
    assert torch.allclose(soft_argmax(m, 60.0), torch.tensor([5.0, 4.0], dtype=m.dtype), atol=1e-12)


def test_soft_argmax_equals_the_seed_formula_computed_naively():
    g = torch.Generator().manual_seed(0)
    s = torch.rand(5, 7, generator=g, dtype=torch.float64)
    beta = 3.0
    num_x = num_y = den = 0.0
    for y in range(5):
        for x in range(7):
            e = float(torch.exp(beta * s[y, x]))
            num_x, num_y, den = num_x + e * x, num_y + e * y, den + e
    assert torch.allclose(
        soft_argmax(s, beta), torch.tensor([num_x / den, num_y / den], dtype=s.dtype)
    )


@pytest.mark.parametrize("beta", [0.5, 1.0, 7.0])
def test_soft_argmax_matches_kornia_with_temperature_one_over_beta(beta: float):
    g = torch.Generator().manual_seed(1)
    h = torch.randn(2, 3, 6, 8, generator=g)
    ref = spatial_soft_argmax2d(h, temperature=1.0 / beta, normalized_coordinates=False)
    assert torch.allclose(soft_argmax(h, beta), ref, atol=1e-5)


def test_soft_argmax_gradcheck():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: soft_argmax(t, 2.5), (h,))


def test_gaussian_targets_peak_at_the_keypoint_and_decode_back_subpixel():
    kp = torch.tensor(
        [[[10.3, 7.8, 2.0], [3.0, 12.6, 1.0], [20.0, 5.0, 0.0], [float("nan"), 1.0, 2.0]]],
        dtype=torch.float64,
    )
    h, mask = gaussian_heatmaps(kp, (16, 24), sigma=1.5)
    assert h.shape == (1, 4, 16, 24) and mask.tolist() == [[1.0, 1.0, 0.0, 0.0]]
    assert h[0, 2:].abs().sum() == 0  # invisible / non-finite: zero maps
    xy, _ = heatmap_argmax(h[:, :2], "none")
    assert xy[0].tolist() == [[10.0, 8.0], [3.0, 13.0]]  # the nearest pixel centre
    xy, _ = heatmap_argmax(h[:, :2], "quadratic")
    # exact: the log of a Gaussian is a parabola
    assert torch.allclose(xy[0], kp[0, :2, :2], atol=1e-9)


def test_heatmap_decoding_recovers_subpixel_locations_on_random_gaussians():
    g = torch.Generator().manual_seed(3)
    true = torch.rand(64, 2, generator=g) * torch.tensor([27.0, 19.0]) + 1.5
    kp = torch.cat((true, torch.full((64, 1), 2.0)), -1)[None]
    h, _ = gaussian_heatmaps(kp, (22, 30), sigma=2.0)
    noisy = h + 0.01 * torch.randn(h.shape, generator=g)
    errs = {
        r: (heatmap_argmax(noisy, r)[0][0] - true).norm(dim=-1)
        for r in ("none", "quarter", "quadratic")
    }
    assert errs["quadratic"].max() < 0.2 and errs["quadratic"].mean() < 0.06
    assert errs["quarter"].mean() < errs["none"].mean()
    assert errs["quadratic"].mean() < errs["quarter"].mean()
    # the soft-argmax of a single clean Gaussian (large beta) is close too, away from the borders
    soft = soft_argmax(h[0], 20.0)
    assert (soft - true).norm(dim=-1).max() < 0.1


def test_argmax_at_the_border_is_not_refined_outside():
    h = torch.zeros(1, 1, 5, 5)
    h[0, 0, 2, 4] = 1.0
    h[0, 0, 2, 3] = 0.5
    h[0, 0, 3, 4] = 0.25
    xy, v = heatmap_argmax(h, "quadratic")
    assert xy[0, 0, 0] == 4.0 and v.item() == 1.0  # no neighbour beyond x = 4: not refined
    assert 2 < xy[0, 0, 1] < 2.5  # inside along y: refined towards row 3


def test_map_and_image_coordinates_are_inverse_and_centre_aligned():
    kp = torch.tensor([[1.5, -0.5, 2.0], [7.0, 3.0, 1.0]])
    on_map = image_to_map(kp, (4.0, 4.0))
    assert torch.allclose(on_map[1, :2], torch.tensor([1.375, 0.375]))
    assert torch.allclose(map_to_image(on_map[:, :2], (4.0, 4.0)), kp[:, :2])
    assert torch.allclose(on_map[:, 2], kp[:, 2])
    # the centre of map pixel 0 is the centre of the 4x4 block of image pixels 0..3
    assert map_to_image(torch.zeros(2), (4.0, 4.0)).tolist() == [1.5, 1.5]


def test_pck_and_mean_error_on_a_hand_computed_case():
    pred = torch.tensor(
        [[[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]], [[1.0, 1.0], [0.0, 6.0], [0.0, 0.0]]]
    )
    target = torch.zeros(2, 3, 3)
    visible = torch.tensor([[1, 1, 0], [1, 1, 1]])
    # errors: [0, 5, (10)], [sqrt2, 6, 0]; thresholds 0.5 * [10, 8] = [5, 4]
    assert pck(pred, target, visible, 0.5, torch.tensor([10.0, 8.0])).item() == pytest.approx(4 / 5)
    assert pck(pred, target, visible, 0.5, 2.0).item() == pytest.approx(2 / 5)
    assert mean_pixel_error(pred, target, visible).item() == pytest.approx((5 + 2**0.5 + 6) / 5)
    assert torch.isnan(pck(pred, target, torch.zeros(2, 3), 0.5, 1.0))


def test_modules_equal_their_functions():
    g = torch.Generator().manual_seed(4)
    h = torch.randn(2, 3, 7, 9, generator=g)
    assert torch.equal(SoftArgmax(3.0)(h), soft_argmax(h, 3.0))
    for r in ("none", "quarter", "quadratic"):
        a, b = HeatmapArgmax(r)(h), heatmap_argmax(h, r)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_bad_inputs_raise():
    with pytest.raises(ShapeError, match="expected \\(B, K, 3\\)"):
        gaussian_heatmaps(torch.zeros(2, 3), (4, 4), 1.0)
    with pytest.raises(ShapeError, match="sigma"):
        gaussian_heatmaps(torch.zeros(1, 2, 3), (4, 4), 0.0)
    with pytest.raises(ShapeError, match="refine"):
        heatmap_argmax(torch.zeros(3, 3), "cubic")
    with pytest.raises(ShapeError, match="limbs"):
        paf_targets(torch.zeros(1, 1, 2, 3), torch.tensor([[0, 2]]), (4, 4), 1.0)
    with pytest.raises(ShapeError, match=r"\(2, H, W\)"):
        paf_scores(torch.zeros(3, 4, 4), torch.zeros(1, 2), torch.zeros(1, 2))


def test_paf_targets_are_unit_vectors_on_the_limb_and_averaged_where_instances_overlap():
    one = torch.tensor([[2.0, 5.0, 2.0], [12.0, 5.0, 2.0]])
    kp = torch.stack((one, one))[None]  # the same limb twice: the average is still a unit vector
    f = paf_targets(kp, torch.tensor([[0, 1]]), (11, 16), width=1.0)
    assert f.shape == (1, 2, 11, 16)
    assert torch.allclose(f[0, 0, 4:7, 2:13], torch.ones(3, 11)) and f[0, 1].abs().sum() == 0
    assert (
        f[0, 0, :4].abs().sum() == 0
        and f[0, 0, 7:].abs().sum() == 0
        and f[0, 0, :, 13:].abs().sum() == 0
    )
    # two crossing instances: opposite x components cancel where they overlap (Eq. 9's average)
    other = torch.tensor([[12.0, 5.0, 2.0], [2.0, 5.0, 2.0]])
    f2 = paf_targets(torch.stack((one, other))[None], torch.tensor([[0, 1]]), (11, 16), 1.0)
    assert f2[0, 0, 5, 3:12].abs().max() < 1e-6
    # an unlabelled joint: no field
    hidden = one.clone()
    hidden[1, 2] = 0
    assert paf_targets(hidden[None, None], torch.tensor([[0, 1]]), (11, 16), 1.0).abs().sum() == 0


def test_paf_line_integral_recovers_the_pairing_of_two_instances():
    # two crossing limbs (an X): joint 0 at the left, joint 1 at the right of each instance
    kp = torch.tensor(
        [[[[4.0, 4.0, 2.0], [28.0, 24.0, 2.0]], [[4.0, 24.0, 2.0], [28.0, 4.0, 2.0]]]]
    )
    field = paf_targets(kp, torch.tensor([[0, 1]]), (30, 34), width=1.5)[0]
    starts, ends = kp[0, :, 0, :2], kp[0, :, 1, :2]
    scores = paf_scores(field, starts, ends.flip(0), samples=12)  # ends listed in the other order
    _, cols = linear_sum_assignment(-scores.numpy())
    assert cols.tolist() == [1, 0]  # instance 0's start goes with its own end, listed second
    assert scores[0, 1] > 0.8 and scores[1, 0] > 0.8 and scores[0, 0] < 0.3 and scores[1, 1] < 0.3
    # a zero-length candidate scores 0
    assert paf_scores(field, starts[:1], starts[:1]).item() == 0.0
