"""Inflating 2D networks into 3D ones (Carreira & Zisserman 2017, "Quo Vadis, Action
Recognition?", Sec. 2.4), and the registered ``i3d``: any convolutional 2D visrep backbone, or a
timm ResNet, turned into a spatio-temporal network.

The paper's rule: every ``N x N`` filter becomes ``N x N x N`` (*inflation*), initialised by
repeating the 2D weights ``N`` times along time and dividing by ``N`` (*bootstrapping*: "a
boring video" of one repeated image then gives the 2D network's activations, the "pooled"
response divided by N). Batch norm and pools gain a time axis. Here the time axis is padded by
replicating the first and last frames (``time_padding="replicate"``), so a static clip gives the
2D network's output at *every* time step, borders included; ``"zeros"`` is the paper's (TF
``SAME``) padding, exact only away from the clip's ends.

Which layers a backbone's ``forward_features`` uses is learnt by a dry run with forward hooks,
so the classifier head (which pools a 2D map) stays 2D: the inflated network's features
``(B, F, T', h, w)`` are scored per time step by the 2D head and the scores averaged, as the
paper does ("the predictions are obtained convolutionally in time and averaged", Fig. 3).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import skip_init

from visrep.errors import ConfigError, ShapeError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.interface import Backbone, BackboneFactory
from visrep.models.video.nets import (
    VIDEO_NETS,
    VideoNet,
    build_2d,
    check_clip,
    check_video_args,
    dry_run,
)

__all__ = [
    "InflatedAvgPool3d",
    "InflatedConv3d",
    "InflatedMaxPool3d",
    "TimeRule",
    "called_modules",
    "frames_to_time",
    "head_over_time",
    "i3d",
    "inflate_backbone",
    "inflate_weight",
    "stack_frames_weight",
]

Init = Literal["mean", "center"]
TimePadding = Literal["replicate", "zeros"]
# (index of the layer among the convolutions / pools, in call order; the 2D layer)
#   -> (temporal kernel, temporal stride, temporal padding on each side)
TimeRule = Callable[[int, nn.Module], tuple[int, int, int]]


def inflate_weight(weight: Tensor, time: int, init: Init = "mean") -> Tensor:
    """A 2D kernel ``(O, I, kh, kw)`` as a 3D one ``(O, I, time, kh, kw)``.

    ``"mean"``: repeated ``time`` times and divided by ``time`` (a broadcast view) (Carreira & Zisserman 2017,
    Sec. 2.4); ``"center"``: the 2D kernel at the central time step, zeros elsewhere. Both give a
    static clip the 2D response.

    >>> inflate_weight(torch.ones(1, 1, 1, 1), 4).flatten()
    tensor([0.2500, 0.2500, 0.2500, 0.2500])
    """
    if weight.dim() != 4 or time < 1:
        raise ShapeError(
            f"inflate_weight: need a (O, I, kh, kw) kernel and time >= 1, got "
            f"{tuple(weight.shape)} and {time}"
        )
    if init == "mean":  # a broadcast view: divided once, copied once by the caller
        return (weight / time).unsqueeze(2).expand(-1, -1, time, -1, -1)
    if init == "center":
        out = weight.new_zeros(*weight.shape[:2], time, *weight.shape[2:])
        out[:, :, (time - 1) // 2] = weight
        return out
    raise ConfigError(f"inflate init must be 'mean' or 'center', got {init!r}")


def stack_frames_weight(weight: Tensor, num_frames: int) -> Tensor:
    """A first-layer kernel ``(O, C, kh, kw)`` for ``num_frames`` frames stacked on the channels
    (early fusion), ``(O, T * C, kh, kw)``: repeated per frame and divided by ``T``, so a static
    clip gives the 2D response. The channel order is frame-major, as ``(T, C) -> T * C`` folds.

    >>> stack_frames_weight(torch.ones(1, 2, 1, 1), 2).flatten()
    tensor([0.5000, 0.5000, 0.5000, 0.5000])
    """
    if weight.dim() != 4 or num_frames < 1:
        raise ShapeError(
            f"stack_frames_weight: need a (O, C, kh, kw) kernel and num_frames >= 1, got "
            f"{tuple(weight.shape)} and {num_frames}"
        )
    return weight.repeat(1, num_frames, 1, 1) / num_frames


def _pad_time(x: Tensor, pad: int) -> Tensor:
    # Replicate the first and last frames: (B, C, T, H, W) -> (B, C, T + 2 pad, H, W).
    return F.pad(x, (0, 0, 0, 0, pad, pad), mode="replicate") if pad else x


class InflatedConv3d(nn.Conv3d):
    """``nn.Conv3d`` whose time axis is padded by replicating the end frames (``time_pad`` each
    side) before a convolution without temporal padding; the state dict is ``nn.Conv3d``'s."""

    time_pad: int = 0

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(_pad_time(x, self.time_pad))


class InflatedMaxPool3d(nn.MaxPool3d):
    """``nn.MaxPool3d`` with replicated temporal padding (``time_pad`` frames each side)."""

    time_pad: int = 0

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(_pad_time(x, self.time_pad))


class InflatedAvgPool3d(nn.AvgPool3d):
    """``nn.AvgPool3d`` with replicated temporal padding (``time_pad`` frames each side)."""

    time_pad: int = 0

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(_pad_time(x, self.time_pad))


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _inflate_conv(
    conv: nn.Conv2d, time: tuple[int, int, int], padding: TimePadding, init: Init
) -> nn.Conv3d:
    kt, st, pt = time
    if isinstance(conv.padding, str):
        raise ConfigError(f"cannot inflate a Conv2d with padding={conv.padding!r}")
    replicate = padding == "replicate"
    cls = InflatedConv3d if replicate else nn.Conv3d
    out = skip_init(  # no random init: the weights are copied below
        cls,
        conv.in_channels,
        conv.out_channels,
        (kt, *_pair(conv.kernel_size)),
        stride=(st, *_pair(conv.stride)),
        padding=(0 if replicate else pt, *_pair(conv.padding)),
        dilation=(1, *_pair(conv.dilation)),
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    if replicate:
        out.time_pad = pt
    with torch.no_grad():
        out.weight.copy_(inflate_weight(conv.weight, kt, init))
        if conv.bias is not None:
            out.bias.copy_(conv.bias)
    return out


def _inflate_pool(pool: nn.Module, time: tuple[int, int, int], padding: TimePadding) -> nn.Module:
    kt, st, pt = time
    replicate = padding == "replicate"
    k, s, p = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.padding)
    common = {
        "kernel_size": (kt, *k),
        "stride": (st, *s),
        "padding": (0 if replicate else pt, *p),
        "ceil_mode": pool.ceil_mode,
    }
    if isinstance(pool, nn.MaxPool2d):
        if pool.return_indices or _pair(pool.dilation) != (1, 1):
            raise ConfigError("cannot inflate a MaxPool2d with return_indices or dilation")
        out = (InflatedMaxPool3d if replicate else nn.MaxPool3d)(**common)
    else:
        if pool.divisor_override is not None:
            raise ConfigError("cannot inflate an AvgPool2d with divisor_override")
        cls = InflatedAvgPool3d if replicate else nn.AvgPool3d
        out = cls(**common, count_include_pad=pool.count_include_pad)
    if replicate:
        out.time_pad = pt
    return out


def _inflate_bn(bn: nn.BatchNorm2d) -> nn.BatchNorm3d:
    out = nn.BatchNorm3d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    out.load_state_dict(bn.state_dict())
    out.train(bn.training)
    return out


def _adaptive(pool: nn.Module) -> nn.Module:
    size = _pair(pool.output_size) if pool.output_size is not None else (None, None)
    if isinstance(pool, nn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool3d((None, *size))
    return nn.AdaptiveMaxPool3d((None, *size))


# Leaf modules that act elementwise or per channel on any number of dimensions.
_ANY_DIM = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.GroupNorm,
)


def called_modules(model: nn.Module, fn: Callable[[Tensor], Tensor], x: Tensor) -> list[str]:
    """Names of the leaf modules ``fn(x)`` calls, in the order of their first call."""
    names = {id(m): n for n, m in model.named_modules()}
    order: list[str] = []
    seen: set[int] = set()

    def hook(m: nn.Module, args: object) -> None:
        if id(m) not in seen:
            seen.add(id(m))
            order.append(names[id(m)])

    hooks = [m.register_forward_pre_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        dry_run(model, fn, x)
    finally:
        for h in hooks:
            h.remove()
    return order


def inflate_backbone(
    backbone: Backbone,
    in_chans: int,
    num_frames: int,
    img_size: tuple[int, int],
    conv_rule: TimeRule,
    pool_rule: TimeRule,
    time_padding: TimePadding = "replicate",
    init: Init = "mean",
) -> Backbone:
    """A copy of ``backbone`` whose ``forward_features`` maps clips ``(B, C, T, H, W)`` to
    ``(B, F, T', h, w)``; the head (and anything ``forward_features`` does not call) stays 2D.

    Every ``nn.Conv2d`` called by ``forward_features`` becomes a 3D convolution whose kernel is
    :func:`inflate_weight` of the 2D one, every ``BatchNorm2d`` a ``BatchNorm3d`` with the same
    statistics, every max / average pool a 3D pool, adaptive pools keep the time axis, and
    ``Dropout2d`` becomes ``Dropout3d``. A dry run on a ``(1, in_chans, num_frames, *img_size)``
    clip checks the result. ``conv_rule(i, conv)`` and ``pool_rule(i, pool)`` give the
    temporal ``(kernel, stride, padding)`` of the i-th convolution / pool in call order.

    Raises:
        ConfigError: the backbone has no convolution, calls a layer that cannot be inflated (a
            ``Conv2d`` subclass, a 2D-only layer), or its forward fails on a clip (it reshapes
            or calls functional 2D ops itself: MLPs, ViTs, NAIS-Nets).
    """
    name = type(backbone).__name__
    model = copy.deepcopy(backbone)
    probe = torch.zeros(1, in_chans, *img_size)
    try:
        leaves = called_modules(model, model.forward_features, probe)
    except Exception as e:  # the backbone does not run on its own img_size: report it as is
        raise ConfigError(f"inflate: backbone {name} fails on a 2D input: {e}") from e
    convs = pools = 0
    t = num_frames  # the time length if the layers ran one after the other
    for leaf in leaves:
        m = model.get_submodule(leaf)
        if type(m) is nn.Conv2d:
            rule = conv_rule(convs, m)
            new = _inflate_conv(m, rule, time_padding, init)
            t, convs = _time_out(t, *rule, False, time_padding), convs + 1
        elif type(m) in (nn.MaxPool2d, nn.AvgPool2d):
            rule = pool_rule(pools, m)
            new = _inflate_pool(m, rule, time_padding)
            t, pools = _time_out(t, *rule, m.ceil_mode, time_padding), pools + 1
        elif type(m) is nn.BatchNorm2d:
            new = _inflate_bn(m)
        elif type(m) in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d):
            new = _adaptive(m)
        elif type(m) is nn.Dropout2d:
            new = nn.Dropout3d(m.p, m.inplace)
        elif isinstance(m, _ANY_DIM):
            continue
        else:
            raise ConfigError(
                f"inflate: backbone {name} uses {type(m).__name__} ({leaf}), which cannot be "
                "inflated; use a convolutional backbone (small_cnn, resnet_small, resnet9, "
                "resnet18, timm/resnet*)"
            )
        parent, _, attr = leaf.rpartition(".")
        setattr(model.get_submodule(parent), attr, new)
    if convs == 0:
        raise ConfigError(f"inflate: backbone {name} has no Conv2d to inflate")
    try:
        clip = probe.unsqueeze(2).expand(-1, -1, num_frames, -1, -1)
        out = dry_run(model, model.forward_features, clip)
    except Exception as e:
        raise ConfigError(
            f"inflate: backbone {name} does not run on clips once inflated ({type(e).__name__}: "
            f"{e}); it reshapes or calls 2D functions itself, or a residual shortcut pools time "
            "that its branch does not (raise temporal_pool_after, stem_time_stride 1)"
        ) from e
    if out.dim() != 5:
        raise ConfigError(f"inflate: backbone {name} gives {tuple(out.shape)} features on clips")
    if out.shape[2] != t:
        # A residual branch changed time differently from its shortcut and the sum broadcast.
        raise ConfigError(
            f"inflate: backbone {name}'s time axis does not add up ({num_frames} frames give "
            f"{out.shape[2]} time steps, its layers in sequence {t}): a residual branch strides "
            "or pools time and its shortcut does not; use a plain stack or keep time strides "
            "outside residual blocks"
        )
    return model


def _time_out(t: int, kernel: int, stride: int, pad: int, ceil: bool, padding: str) -> int:
    # PyTorch's output size along time (ceil mode: a last window must start inside the input
    # or its left padding); replicated frames are part of the input, zeros are padding.
    if padding == "replicate":
        t, pad = t + 2 * pad, 0
    span = t + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    return out - 1 if ceil and (out - 1) * stride >= t + pad else out


def _i3d_rules(
    time_kernel: int | None, stem_time_stride: int, temporal_pool_after: int
) -> tuple[TimeRule, TimeRule]:
    def conv_rule(i: int, conv: nn.Module) -> tuple[int, int, int]:
        k = _pair(conv.kernel_size)[0]
        kt = k if time_kernel is None or k == 1 else time_kernel
        st = stem_time_stride if i == 0 else 1
        return kt, st, (kt - 1) // 2

    def pool_rule(i: int, pool: nn.Module) -> tuple[int, int, int]:
        if i < temporal_pool_after:
            return 1, 1, 0
        k, s = _pair(pool.kernel_size)[0], _pair(pool.stride or pool.kernel_size)[0]
        return k, s, (k - 1) // 2 if k > s else 0

    return conv_rule, pool_rule


def frames_to_time(video: Tensor) -> Tensor:
    """``(B, T, C, H, W) -> (B, C, T, H, W)``, the layout of ``nn.Conv3d``."""
    return video.transpose(1, 2)


def head_over_time(backbone: Backbone, z: Tensor, pre_logits: bool = False) -> Tensor:
    """The 2D head at every time step of ``z`` ``(B, F, T', h, w)``, averaged over time."""
    b, t = z.shape[0], z.shape[2]
    out = backbone.forward_head(z.transpose(1, 2).flatten(0, 1), pre_logits=pre_logits)
    return out.view(b, t, -1).mean(1)


@VIDEO_NETS.register
class i3d(VideoNet):  # noqa: N801 (the registered, user-facing name)
    """A 2D backbone inflated to 3D (Carreira & Zisserman 2017, Sec. 2.4 and Fig. 3).

    Convolutions ``N x N`` become ``N x N x N`` (or ``time_kernel x N x N``; ``1 x 1`` stay
    ``1 x 1 x 1``) with weights repeated over time and divided by the temporal size; the first
    convolution strides ``stem_time_stride`` in time (2 in the paper's Inflated Inception-V1);
    the first ``temporal_pool_after`` pools do not pool time (the paper's first two max-pools
    are ``1 x 3 x 3``), later ones pool time as they pool space. The features
    ``(B, F, T', h, w)`` are classified at every time step by the 2D head and the logits
    averaged over time (Fig. 3).

    Args:
        in_chans, num_classes, num_frames, img_size: from the data.
        backbone: the 2D backbone (any convolutional visrep backbone or ``timm/resnet*``).
        pretrained_path: 2D weights loaded into the backbone before inflation: a state dict, a
            ``.ckpt`` or a visrep run (its ``net.backbone.`` tensors), read with
            :func:`~visrep.models.pretrained.read_backbone_state`.
        time_kernel: temporal size of inflated ``N x N`` kernels (None: ``N``, cubic).
        stem_time_stride: temporal stride of the first convolution.
        temporal_pool_after: pools before this index (in call order) keep the time axis.
        time_padding: ``"replicate"`` (a static clip gives the 2D output exactly) or ``"zeros"``.
        init: ``"mean"`` (the paper) or ``"center"`` (the 2D kernel at the central time step).

    Shape: ``(B, T, C, H, W) -> (B, num_classes)``.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        num_frames: int,
        img_size: tuple[int, int],
        backbone: BackboneFactory = small_cnn,
        pretrained_path: str | None = None,
        time_kernel: int | None = None,
        stem_time_stride: int = 1,
        temporal_pool_after: int = 2,
        time_padding: TimePadding = "replicate",
        init: Init = "mean",
    ) -> None:
        super().__init__()
        size = check_video_args("i3d", in_chans, num_classes, num_frames, img_size)
        if time_kernel is not None and time_kernel < 1:
            raise ConfigError(f"model.net.time_kernel must be >= 1 or None, got {time_kernel}")
        if stem_time_stride < 1 or temporal_pool_after < 0:
            raise ConfigError(
                f"model.net.stem_time_stride must be >= 1 and temporal_pool_after >= 0, got "
                f"{stem_time_stride}, {temporal_pool_after}"
            )
        if time_padding not in ("replicate", "zeros") or init not in ("mean", "center"):
            raise ConfigError(
                f"model.net.time_padding must be replicate|zeros and init mean|center, got "
                f"{time_padding!r}, {init!r}"
            )
        net2d = build_2d(backbone, in_chans, num_classes, size)
        if pretrained_path:
            from visrep.models.pretrained import load_matching, read_backbone_state

            load_matching(net2d, read_backbone_state(pretrained_path), str(pretrained_path))
        conv_rule, pool_rule = _i3d_rules(time_kernel, stem_time_stride, temporal_pool_after)
        self.backbone = inflate_backbone(
            net2d, in_chans, num_frames, size, conv_rule, pool_rule, time_padding, init
        )
        self.in_chans, self.num_frames = in_chans, num_frames
        self.num_features = self.backbone.num_features
        self.num_classes = num_classes

    def forward_features(self, video: Tensor) -> Tensor:
        """Spatio-temporal features ``(B, F, T', h, w)`` of clips ``(B, T, C, H, W)``."""
        check_clip("i3d", video, self.in_chans)
        return self.backbone.forward_features(frames_to_time(video))

    def embed(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        return head_over_time(self.backbone, self.forward_features(video), pre_logits=True)

    def forward(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        return head_over_time(self.backbone, self.forward_features(video))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.backbone.reset_classifier(num_classes)
