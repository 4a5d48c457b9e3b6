"""Generators and discriminators of GANs (seed 001): DCGAN sized from the data, the WGAN-GP
critic, and the MLPs of the 2-d toy experiments.

- :class:`DCGANGenerator` / :class:`DCGANDiscriminator`: Radford, Metz and Chintala 2016,
  sec. 3 (strided convolutions instead of pooling, batch norm in both networks except the
  generator's output and the discriminator's input layer, no fully connected hidden layers,
  ReLU in the generator with tanh at its output, LeakyReLU(0.2) in the discriminator) and
  sec. 4 (weights from ``N(0, 0.02)``: :func:`dcgan_init_`). Square images of side
  ``s0 * 2**k`` with ``s0`` in 4..7 and ``k >= 1`` (:func:`check_gan_size`): 8, 28 (7 * 4),
  32, 64 ...; the generator starts at ``s0 x s0`` and doubles ``k`` times, the discriminator
  halves ``k`` times and reads the ``s0 x s0`` map with one convolution.
- The discriminator with ``norm="layer"`` (or ``"none"``) is the WGAN-GP critic: the
  gradient penalty is per sample, which batch norm breaks by mixing the samples of a batch, so
  Gulrajani et al. 2017 (sec. 4) replace it by layer normalisation.
- :class:`MLPGenerator` / :class:`MLPDiscriminator`: the ReLU MLPs (3 hidden layers of 512)
  Gulrajani et al. 2017 train on the 8 Gaussians / 25 Gaussians toy sets (sec. 3.1, fig. 1,
  and their ``gan_toy.py``).

Conventions: generators end in tanh (images in [-1, 1]); discriminators and critics return
raw scores ``(B,)``; nothing inside normalises the input (the task maps data to [-1, 1]).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal, get_args

from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "check_gan_size",
    "dcgan_init_",
    "norm2d",
]

GANNorm = Literal["batch", "layer", "instance", "none"]
NORMS: tuple[str, ...] = get_args(GANNorm)
_START_SIZES = (4, 5, 6, 7)


def check_gan_size(image_size: int | Sequence[int], option: str = "image_size") -> tuple[int, int]:
    """``(s0, k)`` with ``H == W == s0 * 2**k``, ``s0`` in 4..7 and ``k >= 1`` (one octave of
    start sizes, so the pair is unique); ConfigError naming ``option`` otherwise.

    >>> check_gan_size((28, 28)), check_gan_size(64), check_gan_size((8, 8))
    ((7, 2), (4, 4), (4, 1))
    >>> check_gan_size((30, 30), "data.image_size")
    Traceback (most recent call last):
    ...
    visrep.errors.ConfigError: data.image_size must be square with side s0 * 2**k (s0 in 4..7, k >= 1: 8, 10, 12, 14, 16, 20, 24, 28, 32, ...), got (30, 30)
    """
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(hw) == 2 and hw[0] == hw[1] and isinstance(hw[0], int) and hw[0] >= 8:
        side, k = hw[0], 0
        while side % 2 == 0 and side > 7:
            side, k = side // 2, k + 1
        if side in _START_SIZES and k >= 1:
            return side, k
    raise ConfigError(
        f"{option} must be square with side s0 * 2**k (s0 in 4..7, k >= 1: 8, 10, 12, 14, 16, "
        f"20, 24, 28, 32, ...), got {image_size!r}"
    )


def _check_choice(value: str, choices: Sequence[str], option: str) -> None:
    if value not in choices:
        raise ConfigError(f"{option} must be one of {', '.join(choices)}, got {value!r}")


def _check_positive(option: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{option} must be an integer >= 1, got {value!r}")


def norm2d(kind: str, chans: int) -> nn.Module:
    """The normalisation layer ``kind`` over ``chans`` channels.

    ``batch``: BatchNorm2d. ``layer``: GroupNorm with one group, i.e. each sample normalised
    over all of its ``(C, H, W)`` values with a per-channel scale and shift (layer
    normalisation as the WGAN-GP code applies it to feature maps). ``instance``:
    InstanceNorm2d without affine parameters or running statistics (CycleGAN's choice).
    ``none``: identity.
    """
    _check_choice(kind, NORMS, "norm")
    if kind == "batch":
        return nn.BatchNorm2d(chans)
    if kind == "layer":
        return nn.GroupNorm(1, chans)
    if kind == "instance":
        return nn.InstanceNorm2d(chans, affine=False, track_running_stats=False)
    return nn.Identity()


def dcgan_init_(module: nn.Module) -> None:
    """DCGAN's initialisation (Radford et al. 2016, sec. 4), in place: convolution, transposed
    convolution and linear weights from ``N(0, 0.02)``, normalisation scales from
    ``N(1, 0.02)``, every bias zero. CycleGAN initialises the same way (Zhu et al. 2017,
    sec. 7.1).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm | nn.InstanceNorm2d | nn.LayerNorm):
            if m.weight is not None:
                nn.init.normal_(m.weight, 1.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """``z -> (C, H, W)`` image in [-1, 1] (Radford et al. 2016, sec. 3 and fig. 1).

    A ``s0 x s0`` transposed convolution projects ``z`` (seen as a 1x1 map) to
    ``width * 2**(k-1)`` channels at ``s0 x s0`` (fig. 1's "project and reshape"), then ``k``
    transposed convolutions (kernel 4, stride 2, padding 1) double the size and halve the
    channels; batch norm and ReLU follow every layer but the last, which gives ``out_chans``
    channels through tanh.

    Args:
        latent_size: dimension of ``z``.
        out_chans: image channels.
        image_size: ``(H, W)`` with ``H == W == s0 * 2**k`` (:func:`check_gan_size`).
        width: channels of the last hidden map (the paper's 128 at 64x64; 64 in most code).
        norm: ``batch`` (the paper) or ``none``.

    Shape: ``(B, latent_size) -> (B, out_chans, H, W)``.

    >>> import torch
    >>> g = DCGANGenerator(8, 1, (28, 28), width=4)
    >>> g(torch.randn(2, 8)).shape
    torch.Size([2, 1, 28, 28])
    """

    def __init__(
        self,
        latent_size: int,
        out_chans: int,
        image_size: int | Sequence[int],
        width: int = 64,
        norm: Literal["batch", "none"] = "batch",
    ) -> None:
        super().__init__()
        for name, v in (("latent_size", latent_size), ("out_chans", out_chans), ("width", width)):
            _check_positive(name, v)
        _check_choice(norm, ("batch", "none"), "norm")
        s0, k = check_gan_size(image_size)
        self.latent_size, self.out_chans, self.image_size = latent_size, out_chans, (s0 << k,) * 2
        bias = norm == "none"
        chans = [width * 2 ** (k - 1 - i) for i in range(k)]  # width * 2**(k-1) ... width
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_size, chans[0], s0, 1, 0, bias=bias),
            norm2d(norm, chans[0]),
            nn.ReLU(inplace=True),
        ]
        for cin, cout in itertools.pairwise(chans):
            layers += [
                nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias),
                norm2d(norm, cout),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(chans[-1], out_chans, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_size:
            raise ShapeError(
                f"DCGANGenerator: z has shape {tuple(z.shape)}, expected (B, {self.latent_size})"
            )
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """Image -> one raw score per sample (Radford et al. 2016, sec. 3).

    ``k`` convolutions (kernel 4, stride 2, padding 1) with LeakyReLU(0.2) halve the size and
    double the channels from ``width`` (no normalisation after the first, as the paper
    advises), then one ``s0 x s0`` convolution reads the last map to a score (the paper's
    "flattened and fed into a single sigmoid output", the sigmoid left to the loss).

    Args:
        in_chans: image channels.
        image_size: ``(H, W)`` with ``H == W == s0 * 2**k`` (:func:`check_gan_size`).
        width: channels of the first map.
        norm: ``batch`` (DCGAN), ``layer`` (the WGAN-GP critic: Gulrajani et al. 2017, sec. 4),
            ``instance`` or ``none`` (:func:`norm2d`).

    Shape: ``(B, in_chans, H, W) -> (B,)``.

    >>> import torch
    >>> d = DCGANDiscriminator(3, (32, 32), width=4, norm="layer")
    >>> d(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2])
    """

    def __init__(
        self,
        in_chans: int,
        image_size: int | Sequence[int],
        width: int = 64,
        norm: GANNorm = "batch",
    ) -> None:
        super().__init__()
        for name, v in (("in_chans", in_chans), ("width", width)):
            _check_positive(name, v)
        _check_choice(norm, NORMS, "norm")
        s0, k = check_gan_size(image_size)
        self.in_chans, self.image_size, self.norm = in_chans, (s0 << k,) * 2, norm
        bias = norm == "none"
        chans = [width * 2**i for i in range(k)]
        layers: list[nn.Module] = [nn.Conv2d(in_chans, chans[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for cin, cout in itertools.pairwise(chans):
            layers += [
                nn.Conv2d(cin, cout, 4, 2, 1, bias=bias),
                norm2d(norm, cout),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(chans[-1], 1, s0, 1, 0))
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans or tuple(x.shape[2:]) != self.image_size:
            raise ShapeError(
                f"DCGANDiscriminator: input has shape {tuple(x.shape)}, expected "
                f"(B, {self.in_chans}, {self.image_size[0]}, {self.image_size[1]})"
            )
        return self.net(x).flatten()


def _mlp(in_dim: int, out_dim: int, hidden: int, depth: int) -> nn.Sequential:
    dims = [in_dim] + [hidden] * depth
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)


def _check_mlp(**options: int) -> None:
    for name, v in options.items():
        if name == "depth":
            if not isinstance(v, int) or v < 0:
                raise ConfigError(f"depth must be an integer >= 0 (hidden layers), got {v!r}")
        else:
            _check_positive(name, v)


class MLPGenerator(nn.Module):
    """``z -> x`` for 2-d toy distributions: ``depth`` ReLU layers of ``hidden`` units and a
    linear output (Gulrajani et al. 2017, sec. 3.1 and ``gan_toy.py``: 3 x 512, no output
    non-linearity, the points are unbounded).

    Shape: ``(B, latent_size) -> (B, out_dim)``.

    >>> import torch
    >>> MLPGenerator(hidden=8)(torch.randn(5, 2)).shape
    torch.Size([5, 2])
    """

    def __init__(self, latent_size: int = 2, out_dim: int = 2, hidden: int = 512, depth: int = 3):
        super().__init__()
        _check_mlp(latent_size=latent_size, out_dim=out_dim, hidden=hidden, depth=depth)
        self.latent_size, self.out_dim = latent_size, out_dim
        self.net = _mlp(latent_size, out_dim, hidden, depth)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_size:
            raise ShapeError(
                f"MLPGenerator: z has shape {tuple(z.shape)}, expected (B, {self.latent_size})"
            )
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """``x -> `` one raw score: ``depth`` ReLU layers of ``hidden`` units and a linear output
    (Gulrajani et al. 2017, sec. 3.1 and ``gan_toy.py``). No normalisation, so it serves as a
    critic for the gradient penalty as well.

    Shape: ``(B, in_dim) -> (B,)``.

    >>> import torch
    >>> MLPDiscriminator(hidden=8)(torch.randn(5, 2)).shape
    torch.Size([5])
    """

    def __init__(self, in_dim: int = 2, hidden: int = 512, depth: int = 3):
        super().__init__()
        _check_mlp(in_dim=in_dim, hidden=hidden, depth=depth)
        self.in_dim = in_dim
        self.net = _mlp(in_dim, 1, hidden, depth)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ShapeError(
                f"MLPDiscriminator: input has shape {tuple(x.shape)}, expected (B, {self.in_dim})"
            )
        return self.net(x).flatten()
