"""Convolution arithmetic: output sizes, padding, parameters, MACs/FLOPs and receptive fields.

Pure integer functions, one spatial dimension at a time unless stated otherwise (seed 002;
Dumoulin & Visin 2016, "A guide to convolution arithmetic for deep learning"; Araujo et al. 2019,
"Computing receptive fields of convolutional neural networks", Distill).

Counting convention (seed 002, "Convolution flops: example"): one multiply-accumulate (MAC) is a
multiplication plus an addition, so ``FLOPs = 2 * MACs`` for convolutions and linear layers; the
bias addition is taken as the last accumulation of the dot product and not counted separately.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IntOrTuple = int | Sequence[int]


def _check(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _prod(values: IntOrTuple) -> int:
    return math.prod(values) if isinstance(values, Sequence) else int(values)


def conv_output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Output length of a convolution along one dimension.

    ``o = floor((i + 2p - d(k - 1) - 1) / s) + 1`` (Dumoulin & Visin, Relationship 6; with
    ``d = 1`` the seed's ``H_out = floor((H_in - H_K + 2P) / S) + 1``).

    Args:
        size: input length ``i``.
        kernel_size: kernel length ``k``.
        stride: stride ``s``.
        padding: zero padding ``p`` on each side.
        dilation: dilation ``d`` (effective kernel ``d(k - 1) + 1``).

    Returns:
        The output length (at least 1 is required; otherwise ``ValueError``).

    >>> conv_output_size(32, 5, padding=2)  # seed 002: 32 - 5 + 2 * 2 + 1
    32
    >>> conv_output_size(6, 3), conv_output_size(9, 3)  # "valid": 6x9 -> 4x7
    (4, 7)
    >>> conv_output_size(6, 3, stride=2, padding=1), conv_output_size(9, 3, stride=2, padding=1)
    (3, 5)
    >>> conv_output_size(7, 3, dilation=2)  # effective kernel 5
    3
    """
    _check("size", size, 1)
    _check("kernel_size", kernel_size, 1)
    _check("stride", stride, 1)
    _check("padding", padding, 0)
    _check("dilation", dilation, 1)
    out = (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1
    if out < 1:
        raise ValueError(
            f"kernel_size {kernel_size} (dilation {dilation}) does not fit the input of size "
            f"{size} with padding {padding}"
        )
    return out


def conv_transpose_output_size(
    size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    dilation: int = 1,
) -> int:
    """Output length of a transposed convolution (the shape of the conv's input it inverts).

    ``o = (i - 1)s - 2p + d(k - 1) + output_padding + 1`` (Dumoulin & Visin, Relationship 14,
    as implemented by ``torch.nn.ConvTranspose2d``).

    >>> conv_transpose_output_size(3, 3, stride=2, padding=1)  # inverts 6 -> 3 up to 5
    5
    >>> conv_transpose_output_size(3, 3, stride=2, padding=1, output_padding=1)
    6
    >>> conv_transpose_output_size(16, 4, stride=2, padding=1)  # the usual 2x upsampling
    32
    """
    _check("size", size, 1)
    _check("kernel_size", kernel_size, 1)
    _check("stride", stride, 1)
    _check("padding", padding, 0)
    _check("dilation", dilation, 1)
    if not 0 <= output_padding < max(stride, dilation):
        raise ValueError(
            f"output_padding must be in [0, max(stride, dilation)) = [0, {max(stride, dilation)}),"
            f" got {output_padding}"
        )
    return (size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1


def same_padding(
    kernel_size: int, stride: int = 1, dilation: int = 1, size: int | None = None
) -> tuple[int, int]:
    """Zero padding ``(before, after)`` so that the output has ``ceil(size / stride)`` samples.

    With stride 1 this is the seed's ``P = (K - 1) / 2`` for odd kernels; even kernels need one
    more zero after than before. With ``stride > 1`` the total depends on ``size`` (TensorFlow's
    "SAME" rule).

    >>> same_padding(3), same_padding(5), same_padding(4)
    ((1, 1), (2, 2), (1, 2))
    >>> same_padding(3, dilation=2)
    (2, 2)
    >>> same_padding(3, stride=2, size=224)  # 224 -> 112
    (0, 1)
    """
    _check("kernel_size", kernel_size, 1)
    _check("stride", stride, 1)
    _check("dilation", dilation, 1)
    effective = dilation * (kernel_size - 1) + 1
    if stride == 1:
        total = effective - 1
    else:
        if size is None:
            raise ValueError("same_padding with stride > 1 needs the input size (size=...)")
        _check("size", size, 1)
        total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def pool_output_size(
    size: int,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length of max/average pooling (PyTorch's rule, ``stride`` defaults to the kernel).

    As :func:`conv_output_size`, but with ``ceil_mode`` the division rounds up, except that the
    last window may not start inside the right padding.

    >>> pool_output_size(32, 2)
    16
    >>> pool_output_size(7, 2), pool_output_size(7, 2, ceil_mode=True)
    (3, 4)
    >>> pool_output_size(1, 2, ceil_mode=True)  # small_cnn on 8x8 digits keeps 1x1 maps
    1
    >>> pool_output_size(112, 3, stride=2, padding=1)  # ResNet stem max-pool
    56
    """
    stride = kernel_size if stride is None else stride
    _check("size", size, 1)
    _check("kernel_size", kernel_size, 1)
    _check("stride", stride, 1)
    _check("dilation", dilation, 1)
    span = size + 2 * padding - dilation * (kernel_size - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
    else:
        out = span // stride + 1
    if out < 1:
        raise ValueError(f"pooling kernel {kernel_size} does not fit the input of size {size}")
    return out


def conv_params(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrTuple,
    groups: int = 1,
    bias: bool = True,
) -> int:
    """Learnable parameters of a (grouped) convolution: ``C_out (C_in / g * prod(k) + 1)``.

    Seed 002: a ``C_out x C_in x H_K x W_K`` convolution has ``C_out (C_in H_K W_K + 1)``.
    ``kernel_size`` (and ``output_size`` below) is a tuple with one entry per spatial
    dimension; a bare int is one dimension (a 1-D convolution).

    >>> conv_params(8, 16, (5, 5))  # seed 002: 16 x (8 x 5 x 5 + 1) = 16 x 201
    3216
    >>> conv_params(3, 1, (5, 5))  # "a 5 by 5 convolution" on RGB: 75 weights + 1 bias
    76
    >>> conv_params(1, 1, (1, 2), bias=False)  # the vertical-edge kernel [-1, 1]
    2
    >>> conv_params(128, 128, (3, 3), groups=32, bias=False)  # ResNeXt 32x4d grouped 3x3
    4608
    """
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups {groups} must divide in {in_channels} and out {out_channels}")
    return out_channels * (in_channels // groups * _prod(kernel_size) + int(bias))


def conv_macs(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrTuple,
    output_size: IntOrTuple,
    groups: int = 1,
) -> int:
    """Multiply-accumulates of a convolution: ``(C_out prod(out)) (C_in / g prod(k))``.

    Every output value is a dot product of ``C_in / g * prod(k)`` weights with inputs. FLOPs are
    twice this (:func:`conv_flops`). For a transposed convolution pass the *input* size as
    ``output_size`` and swap the channels: each input value is scattered through the kernel.

    >>> conv_macs(8, 16, (5, 5), (32, 32))  # seed 002: 16,384 outputs x 200, "about 3.25M"
    3276800
    >>> conv_macs(1, 1, (1, 2), (224, 223))  # the vertical-edge convolution
    99904
    """
    if in_channels % groups:
        raise ValueError(f"groups {groups} must divide in_channels {in_channels}")
    return out_channels * _prod(output_size) * (in_channels // groups) * _prod(kernel_size)


def conv_flops(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrTuple,
    output_size: IntOrTuple,
    groups: int = 1,
) -> int:
    """FLOPs of a convolution, ``2 (C_out H_out W_out)(C_in H_K W_K)`` (seed 002).

    >>> conv_flops(8, 16, (5, 5), (32, 32))  # seed 002: 16,384 x 200 x 2, "about 6.5M"
    6553600

    The seed's vertical-edge count, ``3 H (W - 1)`` (about 150 K for 224x224), takes 2
    multiplications and 1 addition per output; this convention also counts the bias-free
    accumulation into zero, giving 4 per output:

    >>> conv_flops(1, 1, (1, 2), (224, 223)), 3 * 224 * 223
    (199808, 149856)
    """
    return 2 * conv_macs(in_channels, out_channels, kernel_size, output_size, groups)


def linear_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """Parameters of a fully connected layer: ``out (in + 1)`` (``out * in`` without bias).

    Seed 002, "Vertical edge detection with FC layer": mapping an ``H x W`` image to the
    ``H x (W - 1)`` edge map needs ``(HW)(H(W - 1)) ~ H^2 W^2`` weights, "more than 2.5e9" for
    224x224, against 2 for the convolution (:func:`conv_params`):

    >>> linear_params(224 * 224, 224 * 223, bias=False)
    2506391552
    >>> linear_params(224 * 224, 224 * 223, bias=False) > 2.5e9
    True
    """
    return out_features * (in_features + int(bias))


def linear_macs(in_features: int, out_features: int, batch: int = 1) -> int:
    """Multiply-accumulates of a linear layer on ``batch`` vectors: ``batch * in * out``.

    FLOPs are ``2 * MACs``: the seed's "more than 5e9" for the FC edge detector.

    >>> 2 * linear_macs(224 * 224, 224 * 223)
    5012783104
    """
    return batch * in_features * out_features


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a receptive-field computation (a convolution or a pooling window)."""

    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    transposed: bool = False


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of the units of one layer along one dimension.

    Attributes:
        size: number of input samples that can affect one unit (``r``).
        jump: distance in input samples between neighbouring units (``j``, effective stride).
        start: centre of unit 0's receptive field in input pixel indices (pixel 0 at 0);
            negative means part of it lies in the padding.
    """

    size: float = 1
    jump: float = 1
    start: float = 0.0


def receptive_field_step(rf: ReceptiveField, layer: LayerSpec) -> ReceptiveField:
    """Apply one layer to a receptive field (the standard recurrence).

    With effective kernel ``k' = d(k - 1) + 1`` (Araujo et al. 2019, Eq. 1-2, dilated kernels):
    ``r_out = r_in + (k' - 1) j_in``, ``j_out = j_in s``,
    ``start_out = start_in + ((k' - 1) / 2 - p) j_in``.

    A transposed convolution with stride ``s`` is a stride-1 convolution on the input dilated by
    ``s``: ``j_out = j_in / s``, ``r_out = r_in + floor((k' - 1) / s) j_in`` (the widest output
    phase), ``start_out = start_in + (p - (k' - 1) / 2) j_in / s``.

    >>> receptive_field_step(ReceptiveField(), LayerSpec(3, stride=2, padding=1))
    ReceptiveField(size=3, jump=2, start=0.0)
    """
    k = layer.dilation * (layer.kernel_size - 1) + 1
    if layer.transposed:
        return ReceptiveField(
            size=rf.size + (k - 1) // layer.stride * rf.jump,
            jump=rf.jump / layer.stride,
            start=rf.start + (layer.padding - (k - 1) / 2) * rf.jump / layer.stride,
        )
    return ReceptiveField(
        size=rf.size + (k - 1) * rf.jump,
        jump=rf.jump * layer.stride,
        start=rf.start + ((k - 1) / 2 - layer.padding) * rf.jump,
    )


def receptive_field(
    layers: Iterable[LayerSpec | tuple[int, ...]], rf: ReceptiveField | None = None
) -> list[ReceptiveField]:
    """Receptive field after each layer of a stack (Araujo et al. 2019; seed 002).

    Args:
        layers: ``LayerSpec`` or tuples ``(kernel_size, stride, padding, dilation)`` (trailing
            items optional), applied in order.
        rf: the receptive field of the stack's input (default: one pixel).

    Returns:
        One :class:`ReceptiveField` per layer.

    Three 3x3 stride-1 convolutions see ``1 + L(K - 1) = 7`` pixels (seed 002):

    >>> [r.size for r in receptive_field([(3, 1, 1)] * 3)]
    [3, 5, 7]

    Stride makes it grow exponentially; dilation 2 and 4 do too, without downsampling:

    >>> receptive_field([(3, 2, 1), (3, 2, 1), (3, 2, 1)])[-1]
    ReceptiveField(size=15, jump=8, start=0.0)
    >>> receptive_field([(3, 1, 1, 1), (3, 1, 2, 2), (3, 1, 4, 4)])[-1]
    ReceptiveField(size=15, jump=1, start=0.0)

    The ResNet stem, a 7x7/2 conv with padding 3 then a 3x3/2 max-pool with padding 1:

    >>> receptive_field([(7, 2, 3), (3, 2, 1)])[-1]
    ReceptiveField(size=11, jump=4, start=0.0)
    """
    out: list[ReceptiveField] = []
    rf = rf or ReceptiveField()
    for layer in layers:
        spec = layer if isinstance(layer, LayerSpec) else LayerSpec(*layer)
        rf = receptive_field_step(rf, spec)
        out.append(rf)
    return out


def receptive_field_size(kernel_sizes: Sequence[int], strides: Sequence[int]) -> int:
    """Closed form of seed 002: ``r_L = 1 + sum_l (K_l - 1) prod_{i < l} S_i``.

    >>> receptive_field_size([3, 3, 3], [1, 1, 1])  # 1 + L(K - 1)
    7
    >>> receptive_field_size([3] * 4, [2] * 4)  # 1 + 2 (1 + 2 + 4 + 8)
    31
    """
    if len(kernel_sizes) != len(strides):
        raise ValueError(
            f"kernel_sizes ({len(kernel_sizes)}) and strides ({len(strides)}) differ in length"
        )
    return 1 + sum((k - 1) * math.prod(strides[:i]) for i, k in enumerate(kernel_sizes))
