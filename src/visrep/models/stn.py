"""Spatial transformer networks (seed 001 "Spatial Transformers"; Jaderberg et al. 2015).

:class:`SpatialTransformer` is the layer insertable anywhere in a network: a localisation net
(any registered backbone's ``forward_features``, flattened, then a small fully connected
regressor) predicts ``theta`` from the input itself, a grid generator turns ``theta`` into a
sampling grid (affine, 6 numbers, or thin-plate spline, the ``2K`` source coordinates of ``K``
control points) and the bilinear sampler produces the output
(:mod:`visrep.models.layers.spatial_transformer`). The regressor's last layer starts with zero
weights and the identity transform as its bias, as the paper initialises it, so training starts
from the untransformed input.

The registered backbone ``stn`` puts a spatial transformer in front of any backbone (the
paper's ST-CNN / ST-FCN): a config says
``backbone: {class_path: stn, init_args: {backbone: small_cnn, transform: tps}}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.interface import Backbone, BackboneFactory
from visrep.models.layers.spatial_transformer import (
    TPSGrid,
    affine_grid,
    bilinear_sample,
    identity_affine,
)
from visrep.models.registry import BACKBONES

__all__ = ["SpatialTransformer", "paper_localization", "stn"]

Transform = Literal["affine", "tps"]


def _hw(size: int | Sequence[int] | None, name: str) -> tuple[int, int]:
    if size is None:
        raise ConfigError(f"{name} is needed (the localisation regressor reads a fixed-size map)")
    hw = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) < 1:
        raise ConfigError(f"{name} must be (H, W) with H, W >= 1, got {size}")
    return hw[0], hw[1]


def _build(
    factory: BackboneFactory | str | Mapping[str, Any],
    in_chans: int,
    num_classes: int,
    img_size: tuple[int, int],
    option: str,
) -> Backbone:
    # A factory (class / partial, as jsonargparse gives it) or a plain spec (name or
    # {class_path, init_args}, as a spec read back from a checkpoint holds it).
    if isinstance(factory, str | Mapping):
        net = BACKBONES.build(factory, in_chans, num_classes, img_size)
    else:
        net = factory(in_chans, num_classes, img_size)
    if not isinstance(net, Backbone):
        raise ConfigError(f"stn: {option} must build a Backbone, got {type(net).__name__}")
    return net


def paper_localization(in_chans: int, num_classes: int, img_size: Any = None) -> Backbone:
    """The default localisation feature extractor: two 5x5 convolution stages of 20 maps with
    2x2 max pooling, the shape of the ST-CNN localisation net of Jaderberg et al. 2015 (Sec. 4.1)."""
    return small_cnn(
        in_chans,
        num_classes,
        img_size,
        channels=(20, 20),
        convs_per_stage=1,
        kernel_size=5,
        batch_norm=False,
    )


def _count_features(net: Backbone, in_chans: int, size: tuple[int, int]) -> int:
    # One dry run in eval mode without gradients; train / eval flags restored.
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        with torch.no_grad():
            return net.forward_features(torch.zeros(1, in_chans, *size)).flatten(1).shape[1]
    finally:
        for m, mode in modes:
            m.training = mode


class SpatialTransformer(nn.Module):
    """Localisation net -> ``theta`` -> grid generator -> bilinear sampler (Jaderberg et al. 2015).

    Args:
        in_chans: channels of the input (image or feature map).
        img_size: ``(H, W)`` of the input.
        localization: the localisation net's feature extractor: any backbone factory (its
            ``forward_features`` map is flattened, so it keeps where things are); None:
            :func:`paper_localization`.
        transform: ``affine`` (6 parameters) or ``tps`` (``2K``: the source positions of a
            ``tps_grid_size x tps_grid_size`` grid of control points).
        out_size: output ``(H, W)``; default ``img_size``.
        hidden: width of the regressor's hidden layer (``Linear -> ReLU -> Linear``).
        tps_grid_size: control points per side for ``tps``.
        tps_span: the control grid covers ``[-tps_span, tps_span]^2`` (normalised).
        align_corners: the normalised-coordinate convention of grid and sampler.

    Shape: ``(B, in_chans, H, W) -> (B, in_chans, *out_size)``; :meth:`localize` gives
    ``theta``, ``(B, 2, 3)`` or ``(B, K, 2)``.
    """

    def __init__(
        self,
        in_chans: int,
        img_size: int | tuple[int, int],
        localization: BackboneFactory | None = None,
        transform: Transform = "affine",
        out_size: int | tuple[int, int] | None = None,
        hidden: int = 32,
        tps_grid_size: int = 4,
        tps_span: float = 1.0,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        if transform not in ("affine", "tps"):
            raise ConfigError(f"stn: transform must be 'affine' or 'tps', got {transform!r}")
        if hidden < 1:
            raise ConfigError(f"stn: hidden must be >= 1, got {hidden}")
        self.in_chans = in_chans
        self.img_size = _hw(img_size, "stn: img_size")
        self.out_size = self.img_size if out_size is None else _hw(out_size, "stn: out_size")
        self.transform = transform
        self.align_corners = align_corners
        self.localization = _build(
            localization or paper_localization, in_chans, 0, self.img_size, "localization"
        )
        flat = _count_features(self.localization, in_chans, self.img_size)
        if transform == "affine":
            self.tps: TPSGrid | None = None
            identity = identity_affine(1)[0].flatten()
        else:
            self.tps = TPSGrid(self.out_size, tps_grid_size, tps_span, align_corners)
            identity = self.tps.control_points.flatten()
        self.regressor = nn.Sequential(
            nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, identity.numel())
        )
        # Identity initialisation: zero weights, the identity transform as bias.
        last = self.regressor[-1]
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(identity)

    @property
    def num_params(self) -> int:
        """Size of ``theta``: 6 (affine) or ``2K`` (tps)."""
        return self.regressor[-1].out_features

    def localize(self, x: Tensor) -> Tensor:
        """``theta`` of ``x``: ``(B, 2, 3)`` (affine) or ``(B, K, 2)`` source control points."""
        if x.dim() != 4 or x.shape[1] != self.in_chans or tuple(x.shape[2:]) != self.img_size:
            raise ShapeError(
                f"SpatialTransformer: input has shape {tuple(x.shape)}, expected "
                f"(B, {self.in_chans}, {self.img_size[0]}, {self.img_size[1]})"
            )
        theta = self.regressor(self.localization.forward_features(x).flatten(1))
        return theta.view(x.shape[0], 2, 3) if self.tps is None else theta.view(x.shape[0], -1, 2)

    def grid(self, theta: Tensor) -> Tensor:
        """The sampling grid ``(B, H_out, W_out, 2)`` of ``theta``."""
        if self.tps is None:
            return affine_grid(theta, self.out_size, self.align_corners)
        return self.tps(theta)

    def sample(self, x: Tensor, theta: Tensor) -> Tensor:
        """``x`` warped by a given ``theta`` (grid generator then sampler)."""
        return bilinear_sample(x, self.grid(theta), self.align_corners)

    def forward_with_theta(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The transformed input and the ``theta`` that produced it."""
        theta = self.localize(x)
        return self.sample(x, theta), theta

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_theta(x)[0]


@BACKBONES.register
class stn(Backbone):  # noqa: N801 (the registered, user-facing name)
    """A spatial transformer in front of any backbone (the paper's ST-CNN / ST-FCN).

    The classifier backbone sees the transformed input (``out_size``, default the input size);
    its features, head, ``feature_info`` (reductions relative to the transformed input) and
    ``forward_intermediates`` are this backbone's.

    Args:
        in_chans, num_classes, img_size: from the data; ``img_size`` is required.
        backbone: the classifier backbone (any registered one); None: ``small_cnn`` with its
            defaults. (None rather than ``small_cnn`` as the default keeps the spec plain data
            while the backbone registry does not resolve nested backbone specs.)
        localization, transform, out_size, hidden, tps_grid_size, tps_span, align_corners:
            the :class:`SpatialTransformer` options.
        pretrained_path: weights of the whole ST network (a file or a visrep run).
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        img_size: int | tuple[int, int] | None = None,
        backbone: BackboneFactory | None = None,
        localization: BackboneFactory | None = None,
        transform: Transform = "affine",
        out_size: int | tuple[int, int] | None = None,
        hidden: int = 32,
        tps_grid_size: int = 4,
        tps_span: float = 1.0,
        align_corners: bool = False,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        size = _hw(img_size, "stn: img_size (the data's image size)")
        self.transformer = SpatialTransformer(
            in_chans,
            size,
            localization=localization,
            transform=transform,
            out_size=out_size,
            hidden=hidden,
            tps_grid_size=tps_grid_size,
            tps_span=tps_span,
            align_corners=align_corners,
        )
        self.backbone = _build(
            backbone or small_cnn, in_chans, num_classes, self.transformer.out_size, "backbone"
        )
        self.num_features = self.backbone.num_features
        self.num_classes = self.backbone.num_classes
        self.feature_info = [
            {**d, "module": f"backbone.{d['module']}"} for d in self.backbone.feature_info
        ]
        if pretrained_path:
            from visrep.models.pretrained import load_pretrained  # Lightning only when used

            load_pretrained(self, pretrained_path)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.backbone.forward_features(self.transformer(x))

    def forward_head(self, z: Tensor, pre_logits: bool = False) -> Tensor:
        return self.backbone.forward_head(z, pre_logits=pre_logits)

    def reset_classifier(self, num_classes: int) -> None:
        self.backbone.reset_classifier(num_classes)
        self.num_classes = num_classes

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        intermediates_only: bool = True,
        output_fmt: str = "NCHW",
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """The inner backbone's ``forward_intermediates`` of the transformed input."""
        return self.backbone.forward_intermediates(
            self.transformer(x), indices, intermediates_only, output_fmt
        )
