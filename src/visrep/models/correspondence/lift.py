"""LIFT: Learned Invariant Feature Transform (Yi, Trulls, Lepetit and Fua, ECCV 2016; seed 001,
"the LIFT pipeline"), sized for a CPU.

Three networks joined by differentiable glue (paper Sec. 3, Fig. 2):

* ``DET`` (:class:`LiftDetector`): one convolution and a GHH activation (paper Sec. 3.1, Eq. 1)
  giving a score map ``S`` of a patch ``P``; the keypoint is ``softargmax(S)`` (seed 001:
  ``sum_x exp(beta S(x)) x / sum_x exp(beta S(x))``, :func:`~visrep.models.layers.heatmaps.
  soft_argmax`), and ``Crop(P, x)`` cuts a patch around it through visrep's spatial
  transformer (:func:`crop`), so gradients reach the location.
* ``ORI`` (:class:`LiftOrientation`): a small CNN with two outputs; ``angle = atan2(ORI[1],
  ORI[2])`` (seed 001's 1-based indices: ``atan2(out[:, 0], out[:, 1])``), and
  ``Rot(P, x, angle)`` samples the crop with its axes turned by ``angle``.
* ``DESC`` (:class:`LiftDescriptor`): three convolutions with tanh and L2 pooling (paper Sec.
  3.3), L2-normalised.

``G(P, x) = Rot(P, x, angle_ORI(Crop(P, x)))`` (seed 001's global cost) is
:meth:`LIFT.describe_at`. At run time (paper Sec. 5, seed 001 "How the detector is used at
run-time"): the whole image through DET -> non-maximum suppression (:func:`nms`, the max-pool
trick) -> top-k keypoints -> ORI -> DESC, batched over the keypoints (:meth:`LIFT.extract`).
Every network standardises its input per patch (zero mean, unit variance), LIFT's input
normalisation, which also makes it blind to contrast and brightness changes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.data.correspondence.lift_patches import crop_theta
from visrep.errors import ConfigError, ShapeError
from visrep.models.layers.heatmaps import soft_argmax
from visrep.models.layers.spatial_transformer import affine_grid, bilinear_sample

__all__ = [
    "GHH",
    "LIFT",
    "LiftDescriptor",
    "LiftDetector",
    "LiftOrientation",
    "crop",
    "ghh",
    "lift_features",
    "nms",
    "orientation_angle",
    "standardise",
]


def standardise(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Each patch ``(N, C, H, W)`` to zero mean and unit standard deviation."""
    mean = x.mean((-3, -2, -1), keepdim=True)
    std = x.std((-3, -2, -1), keepdim=True, unbiased=False)
    return (x - mean) / (std + eps)


def ghh(x: Tensor, ns: int, nm: int) -> Tensor:
    """Generalised hinging hyperplanes (LIFT Eq. 1; Wang and Sun 2005):
    ``sum_n delta_n max_m x_{n, m}`` with ``delta_n = (-1)^n``, over ``ns x nm`` groups of
    channels.

    Shape: ``(B, C ns nm, H, W)`` -> ``(B, C, H, W)``.

    >>> ghh(torch.tensor([1.0, 3.0, 2.0, 5.0]).view(1, 4, 1, 1), 2, 2).item()  # 3 - 5
    -2.0
    """
    b, c, h, w = x.shape
    if c % (ns * nm):
        raise ShapeError(f"ghh: {c} channels are not a multiple of ns * nm = {ns * nm}")
    groups = x.view(b, c // (ns * nm), ns, nm, h, w).amax(3)
    sign = torch.tensor([(-1.0) ** n for n in range(ns)], dtype=x.dtype, device=x.device)
    return (groups * sign.view(1, 1, ns, 1, 1)).sum(2)


class GHH(nn.Module):
    """Module form of :func:`ghh`."""

    def __init__(self, ns: int = 4, nm: int = 4) -> None:
        super().__init__()
        self.ns, self.nm = ns, nm

    def forward(self, x: Tensor) -> Tensor:
        return ghh(x, self.ns, self.nm)


def crop(
    images: Tensor, centres: Tensor, radius: Tensor | float, angle: Tensor | float, out: int
) -> Tensor:
    """``Crop`` / ``Rot`` of seed 001: ``K`` square crops of each image around ``centres`` (half
    side ``radius`` pixels, axes turned by ``angle``; see :func:`~visrep.data.correspondence.
    lift_patches.crop_theta`), by visrep's affine grid generator and bilinear sampler
    (Jaderberg et al. 2015), differentiable in the image, the centres and the angle.

    Shape: images ``(B, C, H, W)``, centres ``(B, K, 2)`` -> ``(B, K, C, out, out)``.
    """
    if images.dim() != 4 or centres.dim() != 3 or centres.shape[0] != images.shape[0]:
        raise ShapeError(
            f"crop: images (B, C, H, W) and centres (B, K, 2) expected, got "
            f"{tuple(images.shape)} and {tuple(centres.shape)}"
        )
    b, k = centres.shape[:2]
    theta = crop_theta(centres.to(images.dtype), radius, angle, tuple(images.shape[-2:]))
    grid = affine_grid(theta.reshape(b * k, 2, 3), (out, out))
    # the K grids of an image stacked along the height: one sampler call, no copies of the image
    crops = bilinear_sample(images, grid.reshape(b, k * out, out, 2))
    return crops.reshape(b, images.shape[1], k, out, out).transpose(1, 2)


def orientation_angle(ori: Tensor) -> Tensor:
    """Seed 001's ``angle = atan2(ORI[1], ORI[2])`` (1-based): ``(N, 2)`` -> ``(N,)`` radians."""
    return torch.atan2(ori[:, 0], ori[:, 1])


def nms(scores: Tensor, radius: int, num: int, border: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Non-maximum suppression by the max-pool trick, then the ``num`` strongest maxima.

    A pixel is kept when it equals the maximum of its ``(2 radius + 1)^2`` window (a
    ``max_pool2d`` with stride 1) and lies at least ``border`` pixels inside the map.

    Args:
        scores: ``(B, 1, H, W)`` score maps.
        radius: suppression radius in pixels (>= 1).
        num: keypoints wanted per map.
        border: pixels left out along the edges.

    Returns:
        ``xy`` ``(B, K, 2)`` (pixel-index x, y, strongest first), their scores ``(B, K)`` and
        ``valid`` ``(B, K)`` (False where a map has fewer than ``K = min(num, H W)`` maxima).
    """
    if scores.dim() != 4 or scores.shape[1] != 1:
        raise ShapeError(f"nms: scores must be (B, 1, H, W), got {tuple(scores.shape)}")
    if radius < 1 or num < 1 or border < 0:
        raise ConfigError(
            f"nms: radius >= 1, num >= 1, border >= 0 expected, got {radius}, {num}, {border}"
        )
    h, w = scores.shape[-2:]
    peak = scores == F.max_pool2d(scores, 2 * radius + 1, stride=1, padding=radius)
    if border:
        inner = torch.zeros_like(peak)
        inner[..., border : h - border, border : w - border] = True
        peak &= inner
    masked = torch.where(peak, scores, torch.full_like(scores, -math.inf)).flatten(1)
    values, idx = masked.topk(min(num, h * w), dim=1)
    xy = torch.stack([idx % w, idx // w], -1).to(scores.dtype)
    return xy, values, torch.isfinite(values)


class LiftDetector(nn.Module):
    """DET: a ``kernel x kernel`` convolution (valid) with ``ns nm`` maps and GHH (LIFT Sec. 3.1).

    ``forward(P)`` gives the score map ``(B, 1, S - kernel + 1, S - kernel + 1)``; map pixel
    ``(i, j)`` is patch pixel ``(i + kernel // 2, j + kernel // 2)``.
    """

    def __init__(self, kernel: int = 15, ns: int = 4, nm: int = 4) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ConfigError(f"--model.det_kernel must be odd and >= 1, got {kernel}")
        self.kernel = kernel
        self.conv = nn.Conv2d(1, ns * nm, kernel)
        self.act = GHH(ns, nm)

    @property
    def margin(self) -> int:
        return self.kernel // 2

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(standardise(x)))

    def score_image(self, image: Tensor) -> Tensor:
        """The score map of a whole image, the size of the image (reflection padding)."""
        m = self.margin
        return self.act(self.conv(F.pad(standardise(image), (m, m, m, m), mode="reflect")))

    def locate(self, x: Tensor, beta: float) -> tuple[Tensor, Tensor]:
        """``softargmax(DET(P))`` in patch pixels ``(B, 2)``, and the score map."""
        score = self(x)
        return soft_argmax(score[:, 0], beta) + self.margin, score


class LiftOrientation(nn.Module):
    """ORI: three conv + pool stages and two fully connected layers with two outputs (LIFT
    Sec. 3.2; Yi et al. CVPR 2016's orientation network, smaller), on ``size x size`` crops."""

    def __init__(self, size: int = 32, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * width, 64), nn.ReLU(), nn.Linear(64, 2)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 1, s, s)`` -> ``ORI`` ``(N, 2)``."""
        return self.head(self.features(standardise(x)))


class LiftDescriptor(nn.Module):
    """DESC: conv 7x7 - tanh - L2 pool, conv 5x5 - tanh - L2 pool, conv - tanh (LIFT Sec. 3.3,
    after Simo-Serra et al. 2015), flattened and L2-normalised; ``(N, 1, s, s)`` -> ``(N, dim)``."""

    def __init__(self, size: int = 32, dim: int = 128, width: int = 32) -> None:
        super().__init__()
        s1 = (size - 6) // 2
        s2 = (s1 - 4) // 2
        if s2 < 1:
            raise ConfigError(f"--model.crop_size {size} is too small for the descriptor (>= 20)")
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 7), nn.Tanh(), nn.LPPool2d(2, 2),
            nn.Conv2d(width, 2 * width, 5), nn.Tanh(), nn.LPPool2d(2, 2),
            nn.Conv2d(2 * width, dim, s2), nn.Tanh(), nn.Flatten(),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.net(standardise(x)), dim=1)


class LIFT(nn.Module):
    """The three networks and the differentiable glue (module docstring).

    Args:
        crop_size: side of the crops ORI and DESC read (pixels at the patch's scale).
        det_kernel: DET's convolution size.
        ghh: DET's GHH groups ``(ns, nm)``.
        beta: the soft-argmax's inverse temperature.
        ori_width: ORI's first channel count.
        desc_width: DESC's first channel count.
        dim: descriptor length.
    """

    def __init__(
        self,
        crop_size: int = 32,
        det_kernel: int = 15,
        ghh: tuple[int, int] = (4, 4),
        beta: float = 10.0,
        ori_width: int = 16,
        desc_width: int = 32,
        dim: int = 128,
    ) -> None:
        super().__init__()
        self.crop_size, self.beta = crop_size, float(beta)
        self.det = LiftDetector(det_kernel, *ghh)
        self.ori = LiftOrientation(crop_size, ori_width)
        self.desc = LiftDescriptor(crop_size, dim, desc_width)

    @property
    def radius(self) -> float:
        return self.crop_size / 2

    def describe_at(
        self, images: Tensor, centres: Tensor, angle: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``DESC(G(P, x))`` with ``G(P, x) = Rot(P, x, angle_ORI(Crop(P, x)))``; with ``angle``
        given, ORI is bypassed (the stage that trains DESC alone).

        Shape: images ``(B, 1, H, W)``, centres ``(B, K, 2)`` -> descriptors ``(B, K, D)`` and
        angles ``(B, K)``.
        """
        b, k = centres.shape[:2]
        s = self.crop_size
        if angle is None:
            upright = crop(images, centres, self.radius, 0.0, s).reshape(b * k, 1, s, s)
            angle = orientation_angle(self.ori(upright)).view(b, k)
        rotated = crop(images, centres, self.radius, angle, s).reshape(b * k, 1, s, s)
        return self.desc(rotated).view(b, k, -1), angle

    def forward(self, patches: Tensor) -> dict[str, Tensor]:
        """The training pipeline on patches ``(B, 1, S, S)``: ``xy`` ``(B, 2)`` (soft-argmax of
        DET, patch pixels), ``angle`` ``(B,)``, ``desc`` ``(B, D)`` and ``score`` (DET's map)."""
        xy, score = self.det.locate(patches, self.beta)
        desc, angle = self.describe_at(patches, xy[:, None])
        return {"xy": xy, "angle": angle[:, 0], "desc": desc[:, 0], "score": score}

    @torch.no_grad()
    def extract(self, image: Tensor, num: int = 1000, nms_radius: int = 4) -> tuple[Tensor, Tensor]:
        """Keypoints and descriptors of one grey image ``(1, 1, H, W)`` in [0, 1].

        Returns:
            keypoints ``(K, 5)``: x, y (pixels), scale (the crop's half side), angle (radians),
            DET score, strongest first; descriptors ``(K, D)``; ``K <= num``.
        """
        if image.dim() != 4 or image.shape[:2] != (1, 1):
            raise ShapeError(
                f"LIFT.extract: a (1, 1, H, W) grey image expected, got {tuple(image.shape)}"
            )
        score = self.det.score_image(image)
        border = math.ceil(self.radius)
        xy, value, valid = nms(score, nms_radius, num, border)
        xy, value = xy[valid][None], value[valid]
        desc, angle = self.describe_at(image, xy)
        radius = torch.full_like(value, self.radius)
        keypoints = torch.cat([xy[0], radius[:, None], angle[0, :, None], value[:, None]], 1)
        return keypoints, desc[0]


def lift_features(
    model: LIFT, image: np.ndarray, num: int = 1000, nms_radius: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`LIFT.extract` on a grey uint8 ``(H, W)`` image, as float32 numpy arrays (the
    :data:`~visrep.models.correspondence.repeatability.Extractor` form)."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ShapeError(
            f"lift_features: a grey uint8 (H, W) image expected, got {image.shape} {image.dtype}"
        )
    p = next(model.parameters())
    x = torch.from_numpy(image).to(p.device, p.dtype).div(255.0)[None, None]
    was = model.training
    model.eval()
    try:
        kp, desc = model.extract(x, num, nms_radius)
    finally:
        model.train(was)
    return kp.float().cpu().numpy(), desc.float().cpu().numpy()
