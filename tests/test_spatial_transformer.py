"""Spatial transformers (issue 18): grid generators, the bilinear sampler against seed 001's
kernel formula, gradients, TPS, the STN layer and the ``stn`` backbone."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from visrep.errors import ConfigError, ShapeError
from visrep.models import SpatialTransformer, create_backbone
from visrep.models.layers import (
    TPSGrid,
    affine_grid,
    bilinear_kernel_reference,
    bilinear_sample,
    spatial_transform,
    tps_control_points,
    tps_grid,
    tps_system_inverse,
)
from visrep.models.layers.spatial_transformer import grid_to_pixels, identity_affine


def _image(b: int = 2, c: int = 3, h: int = 7, w: int = 9, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _theta(b: int = 2, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return identity_affine(b, dtype) + 0.4 * torch.randn(b, 2, 3, generator=g, dtype=dtype)


def _naive_loops(image: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    # Seed 001's double sum, term by term, in plain Python (tiny sizes only).
    h, w = image.shape[-2:]
    out = torch.zeros(image.shape[0], px.shape[0], dtype=image.dtype)
    for i, (x, y) in enumerate(px.tolist()):
        for n in range(h):
            for m in range(w):
                out[:, i] += image[:, n, m] * max(0, 1 - abs(x - m)) * max(0, 1 - abs(y - n))
    return out


# -- identity ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("align_corners", [False, True])
def test_identity_theta_reproduces_the_input(align_corners):
    x = _image()
    y = spatial_transform(x, identity_affine(2, x.dtype), align_corners=align_corners)
    assert torch.allclose(y, x, rtol=0, atol=1e-12)
    # float32: every pixel sampled at its own centre, to rounding of the coordinates
    x32 = x.float()
    y32 = spatial_transform(x32, identity_affine(2), align_corners=align_corners)
    assert torch.allclose(y32, x32, rtol=0, atol=1e-6)


def test_identity_grid_lands_on_pixel_centres():
    for ac in (False, True):
        px = grid_to_pixels(affine_grid(identity_affine(1, torch.float64), (3, 4), ac), (3, 4), ac)
        m, n = torch.meshgrid(torch.arange(4.0), torch.arange(3.0), indexing="xy")
        assert torch.allclose(px[0], torch.stack([m, n], -1).double(), atol=1e-12)


# -- the sampler is seed 001's kernel formula ---------------------------------------------------
@pytest.mark.parametrize("align_corners", [False, True])
def test_sampler_equals_the_seed_kernel_formula(align_corners):
    x = _image(h=5, w=6)
    grid = affine_grid(_theta(), (4, 5), align_corners)  # points inside, outside and on edges
    ref = bilinear_kernel_reference(x, grid, align_corners)
    assert torch.allclose(bilinear_sample(x, grid, align_corners), ref, atol=1e-12)
    # and the reference is the formula itself, summed term by term
    px = grid_to_pixels(grid[0], (5, 6), align_corners).reshape(-1, 2)
    loops = _naive_loops(x[0], px).view(3, 4, 5)
    assert torch.allclose(ref[0], loops, atol=1e-12)


def test_sampler_hand_value():
    # one point at pixel (x, y) = (0.25, 0.5) of [[1, 2], [3, 4]]: 0.75*0.5*1 + 0.25*0.5*2 + ...
    u = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)
    px = torch.tensor([0.25, 0.5], dtype=torch.float64)
    grid = ((2 * px + 1) / 2 - 1).view(1, 1, 1, 2)  # align_corners=False, W = H = 2
    expect = 0.75 * 0.5 * 1 + 0.25 * 0.5 * 2 + 0.75 * 0.5 * 3 + 0.25 * 0.5 * 4
    assert bilinear_sample(u, grid).item() == pytest.approx(expect, abs=1e-12)


# -- gradients ------------------------------------------------------------------------------------
def test_gradcheck_image_and_coordinates():
    x = _image(1, 2, 4, 5).requires_grad_()
    # keep points off the pixel lattice: the kernel has kinks at integer offsets (Eq. 7's cases)
    grid = (affine_grid(_theta(1), (3, 3)) * 0.9 + 0.013).detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda u, g: bilinear_sample(u, g), (x, grid))
    assert torch.autograd.gradcheck(lambda u, g: bilinear_kernel_reference(u, g), (x, grid))


def test_gradients_match_the_seed_formulas():
    """dV/dU (Eq. 6) and dV/dx (Eq. 7) of torch's sampler equal those of the literal formula."""
    x = _image(1, 1, 4, 5)
    grid = affine_grid(_theta(1), (3, 3)) * 0.9 + 0.013
    grads = []
    for f in (bilinear_sample, bilinear_kernel_reference):
        u, g = x.clone().requires_grad_(), grid.clone().requires_grad_()
        (f(u, g) * torch.arange(9.0, dtype=u.dtype).view(1, 1, 3, 3)).sum().backward()
        grads.append((u.grad, g.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-12)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-12)


def test_gradcheck_theta_affine_and_tps():
    x = _image(2, 1, 5, 5)
    theta = _theta().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: spatial_transform(x, t * 0.97 + 0.011), (theta,))
    cp = tps_control_points(3, dtype=torch.float64)
    src = (cp + 0.05 * torch.randn(2, 9, 2, generator=torch.Generator().manual_seed(3),
                                   dtype=torch.float64)).requires_grad_()  # fmt: skip
    assert torch.autograd.gradcheck(lambda s: tps_grid(s, (4, 4), cp), (src,))


# -- known transforms -----------------------------------------------------------------------------
def test_rotation_theta_rotates_as_torchvision_and_kornia():
    tvf = pytest.importorskip("torchvision.transforms.v2.functional")
    kornia = pytest.importorskip("kornia")
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 1:4, 2:7] = 1.0  # an asymmetric bar
    x[0, 0, 4:8, 5] = 0.5
    a = math.radians(90.0)
    # with y pointing down, sampling at [[cos, -sin], [sin, cos]] p turns the image by +a,
    # counter-clockwise on screen, as torchvision's and kornia's positive angles do
    theta = torch.tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]])
    ours = spatial_transform(x, theta)
    tv = tvf.rotate(x, 90.0, interpolation=tvf.InterpolationMode.BILINEAR)
    ko = kornia.geometry.transform.rotate(x, torch.tensor([90.0]))
    assert torch.allclose(ours, tv, atol=1e-5)
    assert torch.allclose(ours, ko, atol=1e-5)
    assert torch.allclose(ours, torch.rot90(x, 1, (2, 3)), atol=1e-5)
    a = math.radians(30.0)
    theta = torch.tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]])
    ko = kornia.geometry.transform.rotate(x, torch.tensor([30.0]), align_corners=False)
    assert torch.allclose(spatial_transform(x, theta), ko, atol=1e-5)


def test_translation_shifts_by_pixels():
    x = _image(1, 1, 6, 8)
    theta = identity_affine(1, x.dtype)
    theta[0, 0, 2] = 2 * 2 / 8  # sample 2 pixels to the right: content moves left
    y = spatial_transform(x, theta)
    assert torch.allclose(y[..., :6], x[..., 2:], atol=1e-12)
    assert torch.equal(y[..., 6:], torch.zeros_like(y[..., 6:]))  # zeros outside


# -- thin-plate splines ---------------------------------------------------------------------------
@pytest.mark.parametrize("align_corners", [False, True])
def test_tps_with_control_points_at_their_targets_is_the_identity(align_corners):
    cp = tps_control_points(4, span=0.9, dtype=torch.float64)
    grid = tps_grid(cp.expand(2, -1, -1), (7, 9), cp, align_corners)
    ident = affine_grid(identity_affine(2, torch.float64), (7, 9), align_corners)
    assert torch.allclose(grid, ident, atol=1e-12)
    x = _image()
    y = spatial_transform(x, cp.expand(2, -1, -1), "tps", control_points=cp,
                          align_corners=align_corners)  # fmt: skip
    assert torch.allclose(y, x, atol=1e-12)


def test_tps_interpolates_and_matches_scipy():
    interpolate = pytest.importorskip("scipy.interpolate")
    cp = tps_control_points(3, dtype=torch.float64)
    src = cp + 0.1 * torch.randn(1, 9, 2, generator=torch.Generator().manual_seed(4),
                                 dtype=torch.float64)  # fmt: skip
    grid = tps_grid(src, (5, 6), cp)
    target = affine_grid(identity_affine(1, torch.float64), (5, 6)).view(-1, 2)
    ref = interpolate.RBFInterpolator(
        cp.numpy(), src[0].numpy(), kernel="thin_plate_spline", degree=1
    )(target.numpy())
    assert np.allclose(grid[0].numpy().reshape(-1, 2), ref, atol=1e-10)
    # an affine motion of the control points is reproduced exactly by the affine part
    a = torch.tensor([[1.1, 0.2], [-0.1, 0.9]], dtype=torch.float64)
    moved = (cp @ a.T + torch.tensor([0.05, -0.1], dtype=torch.float64))[None]
    assert torch.allclose(tps_grid(moved, (5, 6), cp).view(-1, 2),
                          target @ a.T + torch.tensor([0.05, -0.1], dtype=torch.float64),
                          atol=1e-10)  # fmt: skip


def test_tps_module_equals_function():
    m = TPSGrid((6, 5), grid_size=3, span=0.8).double()
    src = m.control_points + 0.1 * torch.randn(2, 9, 2, generator=torch.Generator().manual_seed(5),
                                               dtype=torch.float64)  # fmt: skip
    assert torch.allclose(m(src), tps_grid(src, (6, 5), m.control_points), atol=1e-12)
    assert torch.allclose(m(src.flatten(1)), m(src))


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("theta", "match"),
    [(torch.zeros(2, 3, 3), r"affine theta has shape \(2, 3, 3\)"), (torch.zeros(6), "affine")],
)
def test_affine_theta_of_the_wrong_shape(theta, match):
    with pytest.raises(ShapeError, match=match):
        affine_grid(theta, (4, 4))


def test_tps_theta_of_the_wrong_shape():
    with pytest.raises(ShapeError, match=r"tps theta has shape \(2, 9, 2\), expected \(B, 16, 2\)"):
        tps_grid(torch.zeros(2, 9, 2), (4, 4))


@pytest.mark.parametrize(
    ("points", "match"),
    [
        ([[0, 0], [1, 0], [2, 0], [3, 0]], "collinear"),
        ([[0, 0], [1, 0], [0, 1], [1, 0]], "points 1 and 3 are repeated"),
        ([[0.5, 0.5]] * 3, "coincide"),
    ],
)
def test_degenerate_tps_control_points(points, match):
    with pytest.raises(ConfigError, match=match):
        tps_system_inverse(torch.tensor(points, dtype=torch.float64))


def test_bad_control_point_shapes_and_grid_sizes():
    with pytest.raises(ShapeError, match=r"expected \(K, 2\) with K >= 3"):
        tps_system_inverse(torch.zeros(2, 2))
    with pytest.raises(ConfigError, match="at least 2 x 2"):
        tps_control_points(1)
    with pytest.raises(ShapeError, match="grid has shape"):
        bilinear_sample(torch.zeros(2, 1, 4, 4), torch.zeros(3, 4, 4, 2))


# -- the STN layer and the stn backbone ------------------------------------------------------------
@pytest.mark.parametrize("transform", ["affine", "tps"])
def test_stn_starts_at_the_identity_and_module_equals_function(transform):
    torch.manual_seed(0)
    st = SpatialTransformer(1, (12, 10), transform=transform, tps_grid_size=3).double()
    last = st.regressor[-1]
    assert torch.equal(last.weight, torch.zeros_like(last.weight))
    x = _image(2, 1, 12, 10)
    y, theta = st.forward_with_theta(x)
    # identity initialisation (tps: the float32-solved system of the buffers, then doubled)
    assert torch.allclose(y, x, atol=1e-10 if transform == "affine" else 1e-5)
    with torch.no_grad():
        last.weight.normal_(0, 0.05)  # a non-trivial transform
    y, theta = st.forward_with_theta(x)
    if transform == "affine":
        ref = bilinear_sample(x, affine_grid(theta, (12, 10)))
    else:
        ref = bilinear_sample(x, tps_grid(theta, (12, 10), st.tps.control_points))
    assert torch.allclose(y, ref, atol=1e-12) and not torch.allclose(y, x, atol=1e-3)
    theta.sum().backward()  # the localisation net is trained through theta
    assert st.localization.features[0].weight.grad.abs().sum() > 0


def test_stn_output_size_and_bad_input():
    st = SpatialTransformer(2, 16, out_size=(8, 6))
    assert st(torch.rand(3, 2, 16, 16)).shape == (3, 2, 8, 6)
    with pytest.raises(ShapeError, match=r"expected \(B, 2, 16, 16\)"):
        st(torch.rand(3, 2, 12, 16))
    with pytest.raises(ConfigError, match="transform must be 'affine' or 'tps'"):
        SpatialTransformer(1, 8, transform="projective")
    with pytest.raises(ConfigError, match="img_size"):
        create_backbone("stn", in_chans=1, num_classes=3)


def test_stn_backbone_wraps_any_backbone():
    torch.manual_seed(0)
    inner = {"class_path": "mlp", "init_args": {"width": 16}}
    m = create_backbone("stn", in_chans=1, num_classes=4, img_size=12, backbone=inner,
                        transform="tps", tps_grid_size=3, out_size=10).eval()  # fmt: skip
    x = torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        warped = m.transformer(x)
        assert warped.shape == (2, 1, 10, 10)
        assert torch.allclose(m(x), m.backbone(warped))
    assert type(m.backbone).__name__ == "mlp" and m.num_features == m.backbone.num_features
    m.reset_classifier(6)
    assert m(x).shape == (2, 6) and m.num_classes == 6
    F.cross_entropy(m(x), torch.tensor([0, 1])).backward()
