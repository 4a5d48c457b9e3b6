"""Frame forecasting networks by name: ``FORECAST_NETS.build(spec, in_chans, img_size,
future_frames)``.

A :class:`ForecastNet` maps the frames seen, ``(B, T_in, C, H, W)`` in ``[0, 1]``, to the frames
that follow, ``(B, T_out, C, H, W)`` in ``[0, 1]`` (a sigmoid output; :meth:`ForecastNet.
forward_logits` gives the values before it, for a binary cross-entropy loss).

:class:`convlstm_forecaster` is the encoding-forecasting network of Shi et al., "Convolutional
LSTM Network: A Machine Learning Approach for Precipitation Nowcasting", NIPS 2015 (Sec. 3.2,
Fig. 3; seed 004, "ConvLSTM").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.layers.convlstm import ConvLSTM, State
from visrep.utils.registry import Registry

__all__ = [
    "FORECAST_NETS",
    "ForecastNet",
    "ForecastNetFactory",
    "convlstm_forecaster",
    "depth_to_space",
    "space_to_depth",
]


class ForecastNet(nn.Module):
    """Base class of the registered forecasting networks.

    Subclasses define ``__init__(in_chans, img_size, future_frames, <typed options>)`` and
    :meth:`forward_logits`.

    Attributes:
        in_chans: frame channels.
        img_size: ``(H, W)`` the network was built for.
        future_frames: ``T_out``, the frames :meth:`forward` predicts by default.
    """

    in_chans: int
    img_size: tuple[int, int]
    future_frames: int

    def forward_logits(self, video: Tensor, steps: int | None = None) -> Tensor:
        """The forecast before the output sigmoid, ``(B, steps or future_frames, C, H, W)``."""
        raise NotImplementedError

    def forward(self, video: Tensor, steps: int | None = None) -> Tensor:
        """The next ``steps`` (default ``future_frames``) frames, in ``[0, 1]``.

        Shape: ``(B, T_in, C, H, W) -> (B, T_out, C, H, W)``.
        """
        return torch.sigmoid(self.forward_logits(video, steps))


def _load_forecast_nets() -> None:
    import visrep.models.video  # noqa: F401  (registers the built-in forecasting networks)


FORECAST_NETS: Registry[ForecastNet] = Registry(
    "forecasting network",
    ForecastNet,
    leading=("in_chans", "img_size", "future_frames"),
    loader=_load_forecast_nets,
)

# A forecasting network constructor with its options bound, called with
# (in_chans, img_size, future_frames) once the data is known.
ForecastNetFactory = Callable[[int, tuple[int, int], int], ForecastNet]


def space_to_depth(x: Tensor, patch: int) -> Tensor:
    """Non-overlapping ``patch x patch`` patches as channels: ``(..., C, H, W) -> (...,
    C * patch**2, H / patch, W / patch)`` (Shi et al. 2015, Sec. 4.1: 64x64 Moving MNIST frames
    as 16x16x16 tensors with 4x4 patches). Channel ``c * patch**2 + i * patch + j`` holds pixel
    ``(i, j)`` of each patch of channel ``c`` (``F.pixel_unshuffle``).

    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> space_to_depth(x, 2)[0, :, 0, 0].tolist()  # the top-left 2x2 patch
    [0.0, 1.0, 4.0, 5.0]
    """
    if patch == 1:
        return x
    lead = x.shape[:-3]
    y = F.pixel_unshuffle(x.reshape(-1, *x.shape[-3:]), patch)
    return y.view(*lead, *y.shape[1:])


def depth_to_space(x: Tensor, patch: int) -> Tensor:
    """The inverse of :func:`space_to_depth`: ``(..., C * patch**2, h, w) -> (..., C,
    h * patch, w * patch)``.

    >>> x = torch.rand(2, 3, 1, 8, 8)
    >>> torch.equal(depth_to_space(space_to_depth(x, 4), 4), x)
    True
    """
    if patch == 1:
        return x
    lead = x.shape[:-3]
    y = F.pixel_shuffle(x.reshape(-1, *x.shape[-3:]), patch)
    return y.view(*lead, *y.shape[1:])


@FORECAST_NETS.register
class convlstm_forecaster(ForecastNet):  # noqa: N801 (the registered, user-facing name)
    """The encoding-forecasting ConvLSTM network (Shi et al. 2015, Sec. 3.2, Fig. 3).

    - Frames are cut into ``patch_size x patch_size`` patches stacked on the channels
      (:func:`space_to_depth`; Sec. 4.1 uses 4x4 patches on 64x64 Moving MNIST: 16x16x16).
    - The **encoding network**, stacked ConvLSTM layers (eq. 3, zero initial states), reads the
      ``T_in`` frames and compresses them into its final states.
    - The **forecasting network**, stacked ConvLSTM layers of the same widths, starts from those
      states ("the initial states and cell outputs of the forecasting network are copied from
      the last state of the encoding network": layer ``l`` from encoder layer ``l``) and runs
      without input for ``T_out`` steps; layer ``l`` reads layer ``l - 1``'s hidden state.
    - At every step the hidden states of all forecasting layers are concatenated and a 1x1
      convolution gives the prediction ("as our prediction target has the same dimensionality
      as the input"), then patches go back to pixels and a sigmoid gives ``[0, 1]``.

    The paper's best Moving MNIST network (Table 1) has three layers of 128, 64 and 64 channels
    with 5x5 kernels and 4x4 patches, trained with cross-entropy (``forward_logits`` with
    ``binary_cross_entropy_with_logits``) and RMSProp (learning rate 1e-3, decay 0.9): the
    defaults here.

    Args:
        in_chans, img_size, future_frames: from the data (``T_out``).
        hidden_dims: hidden channels of each layer (encoder and forecaster alike).
        kernel_size: input-to-state kernel (odd; one for all layers or one per layer).
        hidden_kernel_size: state-to-state kernel (default: ``kernel_size``).
        patch_size: the space-to-depth patch (1: none); must divide ``img_size``.
        peephole: the peephole terms of eq. 3, one weight per channel and position (the
            network then takes only frames of ``img_size``).
        forget_bias: added to the forget gates' initial bias (see
            :class:`~visrep.models.layers.ConvLSTMCell`).

    Shape: ``(B, T_in, C, H, W) -> (B, T_out, C, H, W)``; ``H, W`` multiples of ``patch_size``.

    >>> net = convlstm_forecaster(1, (16, 16), 3, hidden_dims=(8, 4), kernel_size=3)
    >>> net(torch.rand(2, 5, 1, 16, 16)).shape
    torch.Size([2, 3, 1, 16, 16])
    """

    def __init__(
        self,
        in_chans: int,
        img_size: tuple[int, int],
        future_frames: int,
        hidden_dims: Sequence[int] = (128, 64, 64),
        kernel_size: int | Sequence[int] = 5,
        hidden_kernel_size: int | Sequence[int] | None = None,
        patch_size: int = 4,
        peephole: bool = False,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        name = "convlstm_forecaster"
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if in_chans < 1 or future_frames < 1:
            raise ConfigError(
                f"{name}: in_chans and future_frames must be >= 1, got {in_chans}, {future_frames}"
            )
        if patch_size < 1:
            raise ConfigError(f"{name}: patch_size must be >= 1, got {patch_size}")
        if len(size) != 2 or min(size) < 1 or size[0] % patch_size or size[1] % patch_size:
            raise ConfigError(
                f"{name}: img_size must be (H, W) with H and W multiples of patch_size "
                f"{patch_size}, got {img_size}"
            )
        self.in_chans, self.future_frames = in_chans, future_frames
        self.img_size = (int(size[0]), int(size[1]))
        self.patch_size = patch_size
        self.peephole = peephole
        depth = in_chans * patch_size**2
        grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        peep = grid if peephole else None
        dims = tuple(hidden_dims)
        # Same widths and kernels: forecaster layer l starts from encoder layer l's state.
        self.encoder, self.forecaster = (
            ConvLSTM(c, dims, kernel_size, hidden_kernel_size, True, peephole, peep, forget_bias)
            for c in (depth, 0)
        )
        self.head = nn.Conv2d(sum(self.encoder.hidden_dims), depth, 1)

    def _check(self, video: Tensor) -> None:
        p = self.patch_size
        if video.dim() != 5 or video.shape[2] != self.in_chans or video.shape[1] < 1:
            raise ShapeError(
                f"convlstm_forecaster: video has shape {tuple(video.shape)}, expected "
                f"(B, T_in, {self.in_chans}, H, W) with T_in >= 1"
            )
        h, w = video.shape[-2:]
        if h % p or w % p:
            raise ShapeError(
                f"convlstm_forecaster: frames of {h}x{w} are not multiples of patch_size {p}"
            )
        if self.peephole and (h, w) != self.img_size:
            raise ShapeError(
                f"convlstm_forecaster: with peepholes, frames must be {self.img_size}, got {(h, w)}"
            )

    def encode(self, video: Tensor) -> list[State]:
        """The encoding network's final ``(H, C)`` of every layer (the forecaster's start)."""
        self._check(video)
        _, states = self.encoder(space_to_depth(video, self.patch_size))
        return states

    def forward_logits(self, video: Tensor, steps: int | None = None) -> Tensor:
        steps = self.future_frames if steps is None else steps
        if steps < 1:
            raise ShapeError(f"convlstm_forecaster: steps must be >= 1, got {steps}")
        layers, _ = self.forecaster.forward_layers(None, self.encode(video), steps)
        z = torch.cat(layers, dim=2)  # (B, T_out, sum(hidden_dims), h, w)
        y = self.head(z.flatten(0, 1))
        return depth_to_space(y.view(*z.shape[:2], *y.shape[1:]), self.patch_size)
