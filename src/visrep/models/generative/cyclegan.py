"""CycleGAN's networks (Zhu, Park, Isola and Efros 2017; seed 001): the ResNet generator, the
70x70 PatchGAN discriminator and the history pool of generated images.

- :class:`ResnetGenerator`: Johnson et al. 2016's transformation network as Zhu et al. 2017
  give it in appendix 7.2: ``c7s1-w, d2w, d4w, R4w x n_blocks, u2w, uw, c7s1-out`` (7x7 and
  3x3 convolutions with reflection padding, instance norm, ReLU, residual blocks, tanh).
  ``n_blocks`` 6 for 128x128 and 9 for 256x256 images in the paper; any size divisible by
  ``2**n_down`` keeps its size.
- :class:`PatchDiscriminator`: Isola et al. 2017's PatchGAN (sec. 3.2.2, appendix 6.1.2):
  ``C64-C128-C256-C512`` of 4x4 convolutions, LeakyReLU(0.2), no norm on the first, then a
  convolution to one channel; with ``n_layers=3`` each output scores one 70x70 patch
  (:attr:`PatchDiscriminator.receptive_field`) and the map of scores is ``(B, 1, h, w)``.
- :class:`ImagePool`: Shrivastava et al. 2017's history of generated images, which CycleGAN
  uses to update the discriminators on older fakes (Zhu et al. 2017, sec. 4, a buffer of 50).

The adversarial and cycle losses are in :mod:`visrep.losses.gan` (Zhu et al. 2017, eq. 1-3:
the adversarial loss of eq. 1 in its least-squares form (sec. 4), the L1 cycle loss of eq. 2,
their sum weighted by lambda in eq. 3). Both networks are initialised from ``N(0, 0.02)``
(sec. 7.1): :func:`dcgan_init_`.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from visrep.errors import CheckpointError, ConfigError, ShapeError
from visrep.models.generative.gan import GANNorm, dcgan_init_, norm2d

__all__ = ["ImagePool", "PatchDiscriminator", "ResnetBlock", "ResnetGenerator"]


def _check_int(option: str, value: int, low: int) -> None:
    if not isinstance(value, int) or value < low:
        raise ConfigError(f"{option} must be an integer >= {low}, got {value!r}")


class ResnetBlock(nn.Module):
    """``x + (pad-conv3-norm-ReLU-pad-conv3-norm)(x)``, reflection padding (Zhu et al. 2017,
    appendix 7.2 "R"; He et al. 2016 / Johnson et al. 2016). Shape-preserving."""

    def __init__(self, chans: int, norm: str = "instance", bias: bool = True) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(chans, chans, 3, bias=bias),
            norm2d(norm, chans),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(chans, chans, 3, bias=bias),
            norm2d(norm, chans),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """Image-to-image generator of CycleGAN (Zhu et al. 2017, appendix 7.2).

    ``c7s1-w`` (reflection pad 3, 7x7 conv, norm, ReLU), ``n_down`` stride-2 3x3 convolutions
    doubling the channels (``d2w, d4w``), ``n_blocks`` residual blocks, ``n_down`` stride-2
    transposed convolutions halving them (``u2w, uw``), and ``c7s1-out`` with tanh. Biases
    as in the authors' code (on with instance norm, which has no shift of its own).

    Args:
        in_chans, out_chans: channels of the two domains' images.
        width: ``w``, channels of the first layer (64 in the paper).
        n_blocks: residual blocks (6 for 128x128 images, 9 for 256x256).
        n_down: stride-2 down- (and up-) samplings.
        norm: ``instance`` (the paper) or ``batch``.

    Shape: ``(B, in_chans, H, W) -> (B, out_chans, H, W)``, ``H, W`` divisible by
    ``2**n_down`` and at least ``max(2**(n_down + 1), 4)``; output in [-1, 1].

    >>> g = ResnetGenerator(3, 1, width=4, n_blocks=2)
    >>> g(torch.randn(2, 3, 12, 20)).shape
    torch.Size([2, 1, 12, 20])
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        width: int = 64,
        n_blocks: int = 9,
        n_down: int = 2,
        norm: Literal["instance", "batch"] = "instance",
    ) -> None:
        super().__init__()
        for name, v, low in (
            ("in_chans", in_chans, 1),
            ("out_chans", out_chans, 1),
            ("width", width, 1),
            ("n_blocks", n_blocks, 0),
            ("n_down", n_down, 0),
        ):
            _check_int(name, v, low)
        if norm not in ("instance", "batch"):
            raise ConfigError(f"norm must be one of instance, batch, got {norm!r}")
        self.in_chans, self.out_chans, self.n_down = in_chans, out_chans, n_down
        bias = norm == "instance"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_chans, width, 7, bias=bias),
            norm2d(norm, width),
            nn.ReLU(inplace=True),
        ]
        for i in range(n_down):
            c = width * 2**i
            layers += [
                nn.Conv2d(c, 2 * c, 3, 2, 1, bias=bias),
                norm2d(norm, 2 * c),
                nn.ReLU(inplace=True),
            ]
        layers += [ResnetBlock(width * 2**n_down, norm, bias) for _ in range(n_blocks)]
        for i in range(n_down, 0, -1):
            c = width * 2**i
            layers += [
                nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=bias),
                norm2d(norm, c // 2),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_chans, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        f = 2**self.n_down
        low = max(2 * f, 4)  # reflection padding needs maps larger than the pad (1, and 3)
        if (
            x.dim() != 4
            or x.shape[1] != self.in_chans
            or x.shape[2] % f
            or x.shape[3] % f
            or min(x.shape[2:]) < low
        ):
            raise ShapeError(
                f"ResnetGenerator: input has shape {tuple(x.shape)}, expected (B, "
                f"{self.in_chans}, H, W) with H and W multiples of {f} (2**n_down) and >= {low}"
            )
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017, sec. 3.2.2; Zhu et al. 2017, appendix 7.2):
    one raw score per overlapping patch.

    ``C(w)`` (4x4 conv, stride 2, LeakyReLU(0.2), no norm), ``n_layers - 1`` more stride-2
    ``C(k)`` with norm and channels doubling (capped at ``8 w``), one stride-1 ``C(k)``, and
    a stride-1 4x4 convolution to one channel; all padded by 1. For ``n_layers=3``:
    ``C64-C128-C256-C512``, 70x70 patches.

    Args:
        in_chans: image channels.
        width: channels of the first layer (64).
        n_layers: stride-2 layers (3: 70x70 patches; 1: 16x16; 2: 34x34).
        norm: ``instance`` (CycleGAN), ``batch`` (pix2pix), ``layer`` or ``none``
            (:func:`~visrep.models.generative.gan.norm2d`).

    Shape: ``(B, in_chans, H, W) -> (B, 1, h, w)`` (:meth:`output_size`).

    >>> d = PatchDiscriminator(3, width=4)
    >>> d.receptive_field, d(torch.randn(2, 3, 32, 32)).shape
    (70, torch.Size([2, 1, 2, 2]))
    """

    def __init__(
        self,
        in_chans: int,
        width: int = 64,
        n_layers: int = 3,
        norm: GANNorm = "instance",
    ) -> None:
        super().__init__()
        for name, v in (("in_chans", in_chans), ("width", width), ("n_layers", n_layers)):
            _check_int(name, v, 1)
        self.in_chans, self.norm = in_chans, norm
        norm2d(norm, 1)  # checks the name
        bias = norm in ("instance", "none")
        mults = [min(2**n, 8) for n in range(n_layers + 1)]
        layers: list[nn.Module] = [nn.Conv2d(in_chans, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for n in range(1, n_layers + 1):
            cin, cout = width * mults[n - 1], width * mults[n]
            layers += [
                nn.Conv2d(cin, cout, 4, 2 if n < n_layers else 1, 1, bias=bias),
                norm2d(norm, cout),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(width * mults[n_layers], 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def _convs(self) -> list[nn.Conv2d]:
        return [m for m in self.net if isinstance(m, nn.Conv2d)]

    @property
    def receptive_field(self) -> int:
        """Side of the input patch one output sees: ``1 + sum_l (k_l - 1) prod_{j<l} s_j``."""
        rf, jump = 1, 1
        for conv in self._convs():
            rf += (conv.kernel_size[0] - 1) * jump
            jump *= conv.stride[0]
        return rf

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` of the score map for an ``H x W`` input (0 where it is too small)."""
        size = [height, width]
        for conv in self._convs():
            k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
            size = [max(0, (n + 2 * p - k) // s + 1) if n > 0 else 0 for n in size]
        return size[0], size[1]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans or min(self.output_size(*x.shape[2:])) < 1:
            raise ShapeError(
                f"PatchDiscriminator: input has shape {tuple(x.shape)}, expected (B, "
                f"{self.in_chans}, H, W) large enough for a score map of at least 1x1"
            )
        return self.net(x)


class ImagePool:
    """A history of generated images (Shrivastava et al. 2017, sec. 2.3; Zhu et al. 2017,
    sec. 4: the discriminators see a buffer of 50 earlier fakes rather than only the latest).

    :meth:`query` takes a batch of new fakes and returns as many images to train the
    discriminator on. Image by image, in batch order: while the pool holds fewer than ``size``
    images, the new one is stored and returned; once full, with probability 1/2 a uniformly
    chosen stored image is returned and the new one takes its place, otherwise the new one is
    returned. The batch is handled at once, with the same result as that sequential rule
    (a slot drawn twice in one batch returns, the second time, the image stored the first
    time). ``size=0`` returns the batch unchanged. Images are stored and returned detached.

    Not an ``nn.Module`` (the pool is not a parameter or a buffer of a network);
    :meth:`state_dict` / :meth:`load_state_dict` let a task keep it in its checkpoint.

    >>> pool = ImagePool(2)
    >>> out = pool.query(torch.arange(3.0).view(3, 1), torch.Generator().manual_seed(0))
    >>> len(pool), out[:2].flatten().tolist()
    (2, [0.0, 1.0])
    """

    def __init__(self, size: int = 50) -> None:
        _check_int("pool_size", size, 0)
        self.size = size
        self.count = 0
        self.images: Tensor | None = None

    def __len__(self) -> int:
        return self.count

    def _draw(self, fn: Any, *args: Any, like: Tensor, generator: torch.Generator | None) -> Tensor:
        dev = generator.device if generator is not None else like.device
        return fn(*args, generator=generator, device=dev).to(like.device)

    @torch.no_grad()
    def query(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Images ``(B, ...)`` for the discriminator in exchange for the new fakes ``images``.

        Random draws (``B - filled`` uniforms, then as many slot indices) come from
        ``generator`` on its device (torch's global generator on the images' device if None).
        """
        if images.dim() < 1 or images.shape[0] == 0:
            raise ShapeError(
                f"ImagePool.query: expected a non-empty batch, got {tuple(images.shape)}"
            )
        images = images.detach()
        if self.size == 0:
            return images
        if self.images is None:
            self.images = images.new_empty((self.size, *images.shape[1:]))
        elif self.images.shape[1:] != images.shape[1:]:
            raise ShapeError(
                f"ImagePool.query: images {tuple(images.shape[1:])} differ from the pooled "
                f"{tuple(self.images.shape[1:])}"
            )
        self.images = self.images.to(images.device, images.dtype)
        out = images.clone()
        n_fill = min(self.size - self.count, len(images))
        self.images[self.count : self.count + n_fill] = images[:n_fill]
        self.count += n_fill
        rest = images[n_fill:]
        m = len(rest)
        if m == 0:
            return out
        swap = self._draw(torch.rand, m, like=images, generator=generator) > 0.5
        slot = self._draw(torch.randint, self.size, (m,), like=images, generator=generator)
        # j, j' swapping into one slot with j' < j: j returns the image j' stored (the last such
        # j'); a slot's final content is its last writer's image.
        same = (slot[:, None] == slot[None, :]) & swap[:, None] & swap[None, :]
        order = torch.arange(m, device=images.device)
        earlier = same & (order[None, :] < order[:, None])  # [j, j']: j' < j
        prev = torch.where(earlier, order[None, :], -1).amax(1)
        from_pool = swap & (prev < 0)
        from_batch = swap & (prev >= 0)
        res = out[n_fill:]
        res[from_pool] = self.images[slot[from_pool]]
        res[from_batch] = rest[prev[from_batch]]
        last = swap & ~(same & (order[None, :] > order[:, None])).any(1)
        self.images[slot[last]] = rest[last]
        return out

    def state_dict(self) -> dict[str, Any]:
        """``{"size", "count", "images"}`` (the stored images ``(count, ...)`` or None)."""
        images = None if self.images is None else self.images[: self.count].clone()
        return {"size": self.size, "count": self.count, "images": images}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a pool saved by :meth:`state_dict` (CheckpointError if it does not fit)."""
        try:
            size, count, images = int(state["size"]), int(state["count"]), state["images"]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"ImagePool state must hold size, count and images: {e}") from e
        if size != self.size or not 0 <= count <= size:
            raise CheckpointError(
                f"ImagePool state has size {size} and count {count}; this pool has size {self.size}"
            )
        if images is None:
            if count:
                raise CheckpointError(f"ImagePool state counts {count} images but holds none")
            self.images, self.count = None, 0
            return
        if not isinstance(images, Tensor) or images.dim() < 1 or len(images) != count:
            raise CheckpointError(f"ImagePool state must hold {count} images as one tensor")
        self.images = images.new_empty((size, *images.shape[1:]))
        self.images[:count] = images
        self.count = count
