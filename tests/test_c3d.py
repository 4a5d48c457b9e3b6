"""C3D (Tran et al. 2015, Fig. 3): every layer against the caption for a 16 x 112 x 112 clip (on
the meta device: shapes without memory or compute), the width multiplier, bad input."""

from __future__ import annotations

import pytest
import torch

from visrep.errors import ConfigError, ShapeError
from visrep.models.video import c3d
from visrep.models.video.c3d import C3D_LAYERS, c3d_feature_shape

# Fig. 3 and Sec. 3: 8 convolutions (filters 64, 128, 256, 256, 512, 512, 512, 512), 3x3x3
# kernels with stride 1 (padded: only the pools shrink the clip), pool1 1x2x2, pools 2-5 2x2x2,
# fc6 and fc7 of 4096 units; Sports-1M has 487 classes. (C, T, H, W) of each layer's output:
PAPER = {
    "conv1a": (64, 16, 112, 112),
    "pool1": (64, 16, 56, 56),
    "conv2a": (128, 16, 56, 56),
    "pool2": (128, 8, 28, 28),
    "conv3a": (256, 8, 28, 28),
    "conv3b": (256, 8, 28, 28),
    "pool3": (256, 4, 14, 14),
    "conv4a": (512, 4, 14, 14),
    "conv4b": (512, 4, 14, 14),
    "pool4": (512, 2, 7, 7),
    "conv5a": (512, 2, 7, 7),
    "conv5b": (512, 2, 7, 7),
    "pool5": (512, 1, 4, 4),  # 8192 inputs of fc6, as in the authors' released model
    "fc6": (4096,),
    "fc7": (4096,),
}


def _shapes(net: c3d, x: torch.Tensor) -> tuple[dict[str, tuple[int, ...]], torch.Tensor]:
    shapes: dict[str, tuple[int, ...]] = {}
    named = {**dict(net.features.named_children()), **dict(net.fc.named_children())}
    hooks = [
        named[n].register_forward_hook(
            lambda m, a, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:]))
        )
        for n in PAPER
    ]
    out = net(x)
    for h in hooks:
        h.remove()
    return shapes, out


def test_every_layer_matches_the_caption_for_16x112x112():
    with torch.device("meta"):
        net = c3d(3, 487, 16, (112, 112))
        shapes, out = _shapes(net, torch.empty(2, 16, 3, 112, 112))
    assert shapes == PAPER
    assert out.shape == (2, 487)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv3d)]
    pools = [m for m in net.features if isinstance(m, torch.nn.MaxPool3d)]
    assert len(convs) == 8 and len(pools) == 5
    assert all(c.kernel_size == (3, 3, 3) and c.stride == (1, 1, 1) for c in convs)
    assert [p.kernel_size for p in pools] == [(1, 2, 2)] + [(2, 2, 2)] * 4
    assert [n for n, _ in net.features.named_children() if n[:4] in ("conv", "pool")] == list(
        C3D_LAYERS
    )
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (8192, 4096),
        (4096, 4096),
        (4096, 487),
    ]


@pytest.mark.parametrize(
    "frames,size", [(8, (50, 37)), (16, (112, 112)), (3, (9, 20)), (1, (8, 8))]
)
def test_feature_shape_formula_matches_the_network(frames, size):
    with torch.device("meta"):
        net = c3d(1, 4, frames, size, width=0.25)
        z = net.forward_features(torch.empty(1, frames, 1, *size))
    assert tuple(z.shape[1:]) == c3d_feature_shape(frames, size, 128) == net.feature_shape


def test_width_multiplier_trains_on_cpu():
    torch.manual_seed(0)
    net = c3d(3, 5, 8, (32, 32), width=1 / 16, fc_width=16, dropout=0.5, batch_norm=True)
    convs = [m.out_channels for m in net.features if isinstance(m, torch.nn.Conv3d)]
    assert convs == [4, 8, 16, 16, 32, 32, 32, 32]
    x = torch.rand(2, 8, 3, 32, 32)
    out = net(x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert net.eval().embed(x).shape == (2, 16)


def test_bad_input():
    net = c3d(3, 5, 8, (16, 16), width=1 / 16, fc_width=8)
    with pytest.raises(ShapeError, match="built for 8"):
        net(torch.rand(1, 4, 3, 16, 16))
    with pytest.raises(ShapeError, match="built for"):
        net(torch.rand(1, 8, 3, 24, 24))
    with pytest.raises(ShapeError, match=r"\(B, T, 3, H, W\)"):
        net(torch.rand(1, 8, 1, 16, 16))
    with pytest.raises(ConfigError, match="width"):
        c3d(3, 5, 8, (16, 16), width=0)
