"""Spatial transformer parts: grid generators and the bilinear sampler (seed 001, Jaderberg et al. 2015).

A spatial transformer computes a sampling grid ``G = T_theta(G_target)`` from parameters
``theta`` and samples the input there. This module holds the parameter-free functional core:

- :func:`affine_grid`: seed 001's affine example (Jaderberg et al. 2015, Eq. 1)
  ``(x_s, y_s)^T = A_theta (x_t, y_t, 1)^T`` with ``A_theta`` the ``(2, 3)`` matrix ``theta``;
- :func:`tps_grid`: the thin-plate-spline transform (Jaderberg et al. 2015, Sec. 3.1 and
  Appendix; Bookstein 1989): ``theta`` is the source position of ``K`` control points whose
  target positions are fixed; :func:`tps_system_inverse` solves the TPS kernel system once;
- :func:`bilinear_sample`: the bilinear sampling kernel of seed 001 / Jaderberg et al. 2015,
  Eq. 5, ``V_i = sum_n sum_m U_nm max(0, 1 - |x_i - m|) max(0, 1 - |y_i - n|)``, computed by
  torch's ``grid_sample`` (whose autograd gives Eqs. 6-7, the image and coordinate gradients);
- :func:`bilinear_kernel_reference`: the same formula evaluated literally over every input
  pixel (``O(H W)`` per output pixel), the reference the tests and ``benchmarks/geometry.py``
  compare the sampler against.

Coordinates are normalised as torch's ``affine_grid`` / ``grid_sample`` read them: ``x`` along
the width and ``y`` along the height, both in ``[-1, 1]``. With ``align_corners=False`` (the
default everywhere here) ``-1`` and ``1`` are the outer edges of the border pixels, so pixel
``m`` (0-based) of a width-``W`` image sits at ``x = (2 m + 1) / W - 1``; with ``True`` they are
the centres of the border pixels, ``x = 2 m / (W - 1) - 1``. The identity ``theta`` samples
every pixel at its own centre under either convention, so it reproduces the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError

__all__ = [
    "TPSGrid",
    "affine_grid",
    "bilinear_kernel_reference",
    "bilinear_sample",
    "check_control_points",
    "grid_to_pixels",
    "identity_affine",
    "spatial_transform",
    "tps_control_points",
    "tps_grid",
    "tps_kernel",
    "tps_system_inverse",
]

PaddingMode = Literal["zeros", "border", "reflection"]


def _size(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    hw = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) < 1:
        raise ConfigError(f"{name} must be (H, W) with H, W >= 1, got {size}")
    return hw[0], hw[1]


def identity_affine(batch: int = 1, dtype: torch.dtype | None = None) -> Tensor:
    """The identity ``theta``, ``(batch, 2, 3)``: ``[[1, 0, 0], [0, 1, 0]]``."""
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=dtype)
    return eye.expand(batch, 2, 3).clone()


def affine_grid(theta: Tensor, size: int | Sequence[int], align_corners: bool = False) -> Tensor:
    """The sampling grid of the affine transform ``theta`` (Jaderberg et al. 2015, Eq. 1).

    Each target pixel ``(x_t, y_t)`` (normalised) is mapped to the source point
    ``(x_s, y_s) = theta @ (x_t, y_t, 1)``.

    Args:
        theta: ``(B, 2, 3)`` affine matrices (or ``(B, 6)``, read row by row).
        size: output ``(H, W)`` (or an int for a square output).
        align_corners: the normalised-coordinate convention (see the module docstring).

    Returns:
        ``(B, H, W, 2)`` source coordinates ``(x_s, y_s)`` in ``[-1, 1]`` where inside.

    >>> affine_grid(identity_affine(1), (1, 2))[0, 0]
    tensor([[-0.5000,  0.0000],
            [ 0.5000,  0.0000]])
    """
    if theta.dim() == 2 and theta.shape[1] == 6:
        theta = theta.view(-1, 2, 3)
    if theta.dim() != 3 or tuple(theta.shape[1:]) != (2, 3):
        raise ShapeError(
            f"affine theta has shape {tuple(theta.shape)}, expected (B, 2, 3) or (B, 6)"
        )
    h, w = _size(size)
    return F.affine_grid(theta, [theta.shape[0], 1, h, w], align_corners=align_corners)


def tps_control_points(
    grid_size: int | Sequence[int] = 4,
    span: float = 1.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """A regular ``gh x gw`` grid of control points covering ``[-span, span]^2``, ``(gh gw, 2)``.

    Points are ``(x, y)``, row by row (y outer, x inner), as the STN paper places them.

    >>> tps_control_points(2)
    tensor([[-1., -1.],
            [ 1., -1.],
            [-1.,  1.],
            [ 1.,  1.]])
    """
    gh, gw = _size(grid_size, "tps grid_size")
    if gh < 2 or gw < 2:
        raise ConfigError(f"tps grid_size must be at least 2 x 2, got {grid_size}")
    if not span > 0:
        raise ConfigError(f"tps span must be > 0, got {span}")
    ys = torch.linspace(-span, span, gh, dtype=dtype, device=device)
    xs = torch.linspace(-span, span, gw, dtype=dtype, device=device)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)


def tps_kernel(sq_dist: Tensor) -> Tensor:
    """The TPS radial basis ``U(r) = r^2 log r^2`` of squared distances (``U(0) = 0``)."""
    safe = torch.where(sq_dist > 0, sq_dist, torch.ones_like(sq_dist))
    return torch.where(sq_dist > 0, sq_dist * safe.log(), torch.zeros_like(sq_dist))


def check_control_points(points: Tensor, name: str = "tps control points") -> None:
    """Raise a ``ShapeError`` / ``ConfigError`` unless ``points`` are ``(K, 2)``, ``K >= 3``,
    pairwise distinct and not all on one line (the TPS system is singular otherwise)."""
    if points.dim() != 2 or points.shape[1] != 2 or points.shape[0] < 3:
        raise ShapeError(f"{name} have shape {tuple(points.shape)}, expected (K, 2) with K >= 3")
    p = points.detach().double()
    extent = float((p.max(0).values - p.min(0).values).max())
    if not extent > 0:
        raise ConfigError(f"{name} are degenerate: all {len(p)} points coincide")
    d = torch.cdist(p, p) + torch.eye(len(p), dtype=p.dtype, device=p.device) * 2 * extent
    if float(d.min()) < 1e-6 * extent:
        i, j = divmod(int(d.argmin()), len(p))
        raise ConfigError(f"{name} are degenerate: points {i} and {j} are repeated")
    s = torch.linalg.svdvals(p - p.mean(0))
    if float(s[-1]) < 1e-6 * float(s[0]):
        raise ConfigError(f"{name} are degenerate: all {len(p)} points are collinear")


def tps_system_inverse(control_points: Tensor) -> Tensor:
    """The inverse of the TPS system matrix ``L = [[K, P], [P^T, 0]]`` of the target points.

    ``K_ij = U(|c_i - c_j|)`` and ``P = [1, x, y]`` (Bookstein 1989; Jaderberg et al. 2015,
    Appendix). Fixed target control points make it a constant of the layer, so it is
    computed once (in float64) and the per-sample solve is one matrix product.

    Args:
        control_points: ``(K, 2)`` target control points, normalised ``(x, y)``.

    Returns:
        ``(K + 3, K + 3)`` in the dtype of ``control_points``.

    Raises:
        ConfigError: repeated or collinear control points (a singular system).
    """
    check_control_points(control_points)
    c = control_points.detach().double()
    k = c.shape[0]
    p = torch.cat([torch.ones(k, 1, dtype=c.dtype, device=c.device), c], dim=1)
    top = torch.cat([tps_kernel(torch.cdist(c, c).square()), p], dim=1)
    bottom = torch.cat([p.T, torch.zeros(3, 3, dtype=c.dtype, device=c.device)], dim=1)
    return torch.linalg.inv(torch.cat([top, bottom])).to(control_points.dtype)


def _tps_points(theta: Tensor, k: int) -> Tensor:
    if theta.dim() == 2 and theta.shape[1] == 2 * k:
        theta = theta.view(-1, k, 2)
    if theta.dim() != 3 or tuple(theta.shape[1:]) != (k, 2):
        raise ShapeError(
            f"tps theta has shape {tuple(theta.shape)}, expected (B, {k}, 2) or (B, {2 * k}) "
            f"for {k} control points"
        )
    return theta


def tps_grid(
    theta: Tensor,
    size: int | Sequence[int],
    control_points: Tensor | None = None,
    align_corners: bool = False,
    inverse: Tensor | None = None,
) -> Tensor:
    """The sampling grid of a thin-plate-spline transform (Jaderberg et al. 2015, Sec. 3.1).

    ``theta`` holds the source positions ``c'_k`` of the ``K`` control points whose target
    positions ``c_k`` are ``control_points``; the TPS ``T(p) = a_0 + a_x x + a_y y +
    sum_k w_k U(|p - c_k|)`` with ``T(c_k) = c'_k`` and minimal bending energy maps every target
    pixel to its source point. With ``theta == control_points`` it is the identity.

    Args:
        theta: ``(B, K, 2)`` source control points ``(x, y)`` (or ``(B, 2K)``), normalised.
        size: output ``(H, W)``.
        control_points: ``(K, 2)`` target control points; default :func:`tps_control_points`
            of a ``4 x 4`` grid (then ``K = 16``).
        align_corners: the normalised-coordinate convention (module docstring).
        inverse: :func:`tps_system_inverse` of ``control_points``, if already computed.

    Returns:
        ``(B, H, W, 2)`` source coordinates.
    """
    if control_points is None:
        control_points = tps_control_points(4, dtype=theta.dtype, device=theta.device)
    if inverse is None:
        inverse = tps_system_inverse(control_points)
    k = control_points.shape[0]
    theta = _tps_points(theta, k)
    if tuple(inverse.shape) != (k + 3, k + 3):
        raise ShapeError(f"tps inverse has shape {tuple(inverse.shape)}, expected ({k + 3},) * 2")
    h, w = _size(size)
    # Target pixels in the same normalised convention as the affine grid.
    target = affine_grid(identity_affine(1, theta.dtype).to(theta.device), (h, w), align_corners)
    target = target.view(h * w, 2)
    c = control_points.to(theta)
    basis = torch.cat(
        [tps_kernel(torch.cdist(target, c).square()), torch.ones_like(target[:, :1]), target],
        dim=1,
    )  # (HW, K + 3)
    rhs = torch.cat([theta, theta.new_zeros(theta.shape[0], 3, 2)], dim=1)  # (B, K + 3, 2)
    coeff = inverse.to(theta) @ rhs  # [w; a]: (B, K + 3, 2)
    return (basis @ coeff).view(theta.shape[0], h, w, 2)


class TPSGrid(nn.Module):
    """Module form of :func:`tps_grid` with fixed target control points and the solved system
    kept as buffers (one matrix product per call).

    Args:
        size: output ``(H, W)``.
        grid_size: control points per side (``gh x gw``), placed by :func:`tps_control_points`.
        span: the control grid covers ``[-span, span]^2``.
        align_corners: the normalised-coordinate convention.

    Shape: theta ``(B, K, 2)`` or ``(B, 2K)`` -> grid ``(B, H, W, 2)``.
    """

    control_points: Tensor
    inverse: Tensor

    def __init__(
        self,
        size: int | Sequence[int],
        grid_size: int | Sequence[int] = 4,
        span: float = 1.0,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.size = _size(size)
        self.align_corners = align_corners
        points = tps_control_points(grid_size, span)
        self.register_buffer("control_points", points)
        self.register_buffer("inverse", tps_system_inverse(points))

    @property
    def num_points(self) -> int:
        return self.control_points.shape[0]

    def forward(self, theta: Tensor) -> Tensor:
        return tps_grid(theta, self.size, self.control_points, self.align_corners, self.inverse)


def bilinear_sample(
    image: Tensor,
    grid: Tensor,
    align_corners: bool = False,
    padding_mode: PaddingMode = "zeros",
) -> Tensor:
    """Sample ``image`` at ``grid`` with the bilinear kernel (Jaderberg et al. 2015, Eq. 5).

    ``V_i^c = sum_n sum_m U_nm^c max(0, 1 - |x_i - m|) max(0, 1 - |y_i - n|)`` with ``(x_i, y_i)``
    the grid point in pixels; torch's ``grid_sample`` evaluates the (at most four) non-zero
    terms, and its backward gives the sub-gradients of Eqs. 6-7 with respect to the image and
    to the coordinates. ``padding_mode="zeros"`` is the formula as written (pixels outside the
    image are 0).

    Args:
        image: ``(B, C, H, W)``.
        grid: ``(B, H_out, W_out, 2)`` normalised ``(x, y)`` source points.
        align_corners: the normalised-coordinate convention of ``grid``.
        padding_mode: value outside the image: ``zeros``, ``border`` or ``reflection``.

    Returns:
        ``(B, C, H_out, W_out)``.
    """
    if image.dim() != 4:
        raise ShapeError(
            f"bilinear_sample: image has shape {tuple(image.shape)}, expected (B, C, H, W)"
        )
    if grid.dim() != 4 or grid.shape[-1] != 2 or grid.shape[0] != image.shape[0]:
        raise ShapeError(
            f"bilinear_sample: grid has shape {tuple(grid.shape)}, expected "
            f"({image.shape[0]}, H_out, W_out, 2)"
        )
    return F.grid_sample(
        image, grid.to(image.dtype), "bilinear", padding_mode, align_corners=align_corners
    )


def grid_to_pixels(grid: Tensor, size: int | Sequence[int], align_corners: bool = False) -> Tensor:
    """Normalised ``(x, y)`` points to 0-based pixel coordinates ``(m, n)`` of an ``(H, W)`` image."""
    h, w = _size(size)
    scale = grid.new_tensor([w, h])
    if align_corners:
        return (grid + 1) / 2 * (scale - 1)
    return ((grid + 1) * scale - 1) / 2


def bilinear_kernel_reference(image: Tensor, grid: Tensor, align_corners: bool = False) -> Tensor:
    """Seed 001's bilinear sampling formula evaluated literally, for tests and benchmarks.

    Every output point sums over every input pixel: ``V_i^c = sum_n sum_m U_nm^c
    max(0, 1 - |x_i - m|) max(0, 1 - |y_i - n|)`` (Jaderberg et al. 2015, Eq. 5), with pixels
    indexed from 0 and zero outside the image. Memory and time grow as
    ``B * H_out W_out * (H + W)`` and ``B * C * H_out W_out * H W``: small images only.

    Shape: image ``(B, C, H, W)``, grid ``(B, H_out, W_out, 2)`` -> ``(B, C, H_out, W_out)``.
    """
    b, c, h, w = image.shape
    px = grid_to_pixels(grid.to(image.dtype), (h, w), align_corners).flatten(1, 2)  # (B, P, 2)
    m = torch.arange(w, dtype=image.dtype, device=image.device)
    n = torch.arange(h, dtype=image.dtype, device=image.device)
    kx = (1 - (px[..., :1] - m).abs()).clamp(min=0)  # (B, P, W): max(0, 1 - |x_i - m|)
    ky = (1 - (px[..., 1:] - n).abs()).clamp(min=0)  # (B, P, H): max(0, 1 - |y_i - n|)
    v = torch.einsum("bcnm,bpn,bpm->bcp", image, ky, kx)
    return v.view(b, c, *grid.shape[1:3])


def spatial_transform(
    image: Tensor,
    theta: Tensor,
    transform: Literal["affine", "tps"] = "affine",
    out_size: int | Sequence[int] | None = None,
    control_points: Tensor | None = None,
    align_corners: bool = False,
) -> Tensor:
    """Grid generator then sampler: ``image`` warped by ``theta`` (Jaderberg et al. 2015, Sec. 3).

    Args:
        image: ``(B, C, H, W)``.
        theta: ``(B, 2, 3)`` for ``affine``; ``(B, K, 2)`` source control points for ``tps``.
        transform: ``affine`` or ``tps``.
        out_size: output ``(H_out, W_out)``; default the input size.
        control_points: the ``tps`` target control points (default a 4 x 4 grid).
        align_corners: the normalised-coordinate convention.

    >>> x = torch.arange(6.0).view(1, 1, 2, 3)
    >>> torch.allclose(spatial_transform(x, identity_affine(1)), x)
    True
    """
    if image.dim() != 4:
        raise ShapeError(
            f"spatial_transform: image has shape {tuple(image.shape)}, expected (B, C, H, W)"
        )
    size = image.shape[-2:] if out_size is None else out_size
    if transform == "affine":
        grid = affine_grid(theta.to(image.dtype), size, align_corners)
    elif transform == "tps":
        grid = tps_grid(theta.to(image.dtype), size, control_points, align_corners)
    else:
        raise ConfigError(f"transform must be 'affine' or 'tps', got {transform!r}")
    return bilinear_sample(image, grid, align_corners)
