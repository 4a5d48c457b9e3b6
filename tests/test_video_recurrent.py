"""Recurrent video classifiers: cnn_lstm (CNN + LSTM) and convlstm (CNN + ConvLSTM)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from visrep.errors import ConfigError, ShapeError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.interface import Backbone
from visrep.models.layers import convlstm_cell
from visrep.models.video import VIDEO_NETS, cnn_lstm, convlstm

TINY = partial(small_cnn, channels=(8,), convs_per_stage=1)  # with batch norm
# (the convlstm with a per-position peephole checks the feature-map size computed from img_size)
NETS = {
    "cnn_lstm": dict(backbone=TINY, feature_dim=16, hidden_size=8),
    "cnn_lstm_pooled": dict(backbone=TINY, frame_features="pooled", hidden_size=8, readout="mean"),
    "convlstm": dict(backbone=TINY, hidden_dims=(6, 4), peephole=True),
}


def _build(key: str, num_classes: int = 3):
    cls = cnn_lstm if key.startswith("cnn_lstm") else convlstm
    return cls(1, num_classes, 5, (12, 12), **NETS[key])


def moving_squares(n: int, g: torch.Generator, frames: int = 6, size: int = 12):
    """A 2x2 square moving by one pixel per frame (wrapping), class = direction (left, right,
    up, down); the start is uniform, so every single frame has the same distribution for every
    class: only the motion tells the class."""
    y = torch.randint(0, 4, (n,), generator=g)
    pos = torch.randint(0, size, (n, 2), generator=g)
    step = torch.tensor([[0, -1], [0, 1], [-1, 0], [1, 0]])[y]  # (dy, dx)
    t = torch.arange(frames)
    r = (pos[:, None, 0] + step[:, None, 0] * t) % size
    c = (pos[:, None, 1] + step[:, None, 1] * t) % size
    ar = torch.arange(size)
    rows = ((ar - r[..., None]) % size < 2).float()
    cols = ((ar - c[..., None]) % size < 2).float()
    return (rows[..., :, None] * cols[..., None, :])[:, :, None], y


@pytest.mark.parametrize("key", list(NETS))
def test_shapes_gradients_and_reset(key):
    torch.manual_seed(0)
    net = _build(key)
    x = torch.rand(2, 5, 1, 12, 12)
    out = net(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert net.embed(x).shape == (2, net.num_features)
    out.sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    net.reset_classifier(7)
    assert net(x).shape == (2, 7)
    net.reset_classifier(0)
    assert net(x).shape == (2, net.num_features)
    assert net(torch.rand(2, 9, 1, 12, 12)).shape == (2, net.num_features)  # any clip length


@pytest.mark.parametrize("key", ["cnn_lstm", "convlstm"])
def test_shape_probe_at_construction_leaves_batch_norm_statistics_alone(key):
    net = _build(key)  # both probe the backbone's feature-map size from img_size
    bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(int(m.num_batches_tracked) == 0 for m in bn)
    assert all(m.training for m in net.modules())


def test_registered_and_built_from_a_spec_with_a_nested_backbone():
    assert {"cnn_lstm", "convlstm"} <= set(VIDEO_NETS.names())
    spec = {
        "class_path": "convlstm",
        "init_args": {
            "backbone": {"class_path": "small_cnn", "init_args": {"channels": [4]}},
            "hidden_dims": [5],
        },
    }
    net = VIDEO_NETS.build(spec, 2, 4, 8, (16, 16))
    assert isinstance(net, convlstm) and net.backbone.num_features == 4
    assert net(torch.rand(1, 8, 2, 16, 16)).shape == (1, 4)
    assert VIDEO_NETS.spec(partial(cnn_lstm, hidden_size=4))["init_args"] == {"hidden_size": 4}


class _WideHead(Backbone):
    """5-channel maps at half resolution, widened to 7 pooled features by a 1x1 conv in the
    head (as MobileNetV3's conv_head): the map's channels are not ``num_features``."""

    def __init__(self, in_chans: int, num_classes: int, img_size=None) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(in_chans, 5, 3, stride=2, padding=1)
        self.widen = torch.nn.Conv2d(5, 7, 1)
        self.feature_info = [{"num_chs": 5, "reduction": 2, "module": "conv"}]
        self.set_classifier(7, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def forward_head(self, z: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return super().forward_head(self.widen(z), pre_logits)


@pytest.mark.parametrize("peephole", [False, True])
def test_convlstm_reads_the_map_channels_not_num_features(peephole):
    net = convlstm(1, 3, 4, (12, 12), backbone=_WideHead, hidden_dims=(4,), peephole=peephole)
    assert net.backbone.num_features == 7 and net.rnn.cells[0].weight.shape[1] == 5 + 4
    assert net(torch.rand(2, 4, 1, 12, 12)).shape == (2, 3)


def test_convlstm_embed_is_the_pooled_final_hidden_state_of_the_function():
    torch.manual_seed(1)
    net = convlstm(1, 2, 4, (12, 12), backbone=TINY, hidden_dims=(3,)).eval()
    x = torch.rand(2, 4, 1, 12, 12)
    maps = net.feature_maps(x)  # (B, T, 8, 6, 6)
    cell = net.rnn.cells[0]
    h = c = torch.zeros(2, 3, 6, 6)
    for t in range(4):
        h, c = convlstm_cell(maps[:, t], h, c, cell.weight, cell.bias)
    torch.testing.assert_close(net.embed(x), h.mean(dim=(2, 3)), rtol=1e-5, atol=1e-6)


def test_cnn_lstm_reads_the_last_step_or_the_mean():
    torch.manual_seed(2)
    net = cnn_lstm(1, 2, 4, (12, 12), backbone=TINY, feature_dim=8, hidden_size=5).eval()
    x = torch.rand(2, 4, 1, 12, 12)
    out, _ = net.lstm(net.frame_features(x))
    torch.testing.assert_close(net.embed(x), out[:, -1])
    net.readout = "mean"
    torch.testing.assert_close(net.embed(x), out.mean(1))
    # frames are encoded independently: changing frame 3 leaves frames 0-2's vectors unchanged
    x2 = x.clone()
    x2[:, 3] = 0
    torch.testing.assert_close(net.frame_features(x2)[:, :3], net.frame_features(x)[:, :3])


def _fit(net, steps: int, lr: float) -> None:
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        x, y = moving_squares(32, g)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()


@pytest.mark.parametrize(
    ("key", "steps", "lr"),
    [
        ("convlstm", 80, 1e-2),
        ("cnn_lstm", 150, 3e-3),
    ],
)
def test_learns_motion_direction_that_no_single_frame_shows(key, steps, lr):
    torch.manual_seed(0)
    cls = cnn_lstm if key == "cnn_lstm" else convlstm
    opts = dict(hidden_dims=(8,)) if key == "convlstm" else dict(feature_dim=32, hidden_size=16)
    net = cls(1, 4, 6, (12, 12), backbone=TINY, **opts)
    _fit(net, steps, lr)
    x, y = moving_squares(256, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (net(x).argmax(1) == y).float().mean() >= 0.9
        # played backwards, a clip moves the other way: left <-> right, up <-> down
        flipped = torch.tensor([1, 0, 3, 2])[y]
        assert (net(x.flip(1)).argmax(1) == flipped).float().mean() >= 0.9


def test_bad_options_and_input():
    with pytest.raises(ConfigError, match="readout"):
        cnn_lstm(1, 2, 4, (8, 8), backbone=TINY, readout="first")
    with pytest.raises(ConfigError, match="frame_features"):
        cnn_lstm(1, 2, 4, (8, 8), backbone=TINY, frame_features="max")
    with pytest.raises(ConfigError, match="hidden_size"):
        cnn_lstm(1, 2, 4, (8, 8), backbone=TINY, hidden_size=0)
    with pytest.raises(ConfigError, match="dropout"):
        convlstm(1, 2, 4, (8, 8), backbone=TINY, dropout=1.0)
    with pytest.raises(ConfigError, match="dropout"):
        cnn_lstm(1, 2, 4, (8, 8), backbone=TINY, dropout=-0.5)
    with pytest.raises(ConfigError, match="must build a Backbone"):
        convlstm(1, 2, 4, (8, 8), backbone=lambda *a: torch.nn.Identity())
    with pytest.raises(ConfigError, match="kernel_size"):
        convlstm(1, 2, 4, (8, 8), backbone=TINY, kernel_size=2)
    with pytest.raises(ConfigError, match="num_frames"):
        convlstm(1, 2, 0, (8, 8), backbone=TINY)
    net = convlstm(1, 2, 4, (8, 8), backbone=TINY, hidden_dims=(2,))
    with pytest.raises(ShapeError, match=r"\(B, T, 1, H, W\)"):
        net(torch.rand(2, 4, 3, 8, 8))
    with pytest.raises(ShapeError, match=r"\(B, T, 1, H, W\)"):
        net(torch.rand(2, 1, 8, 8))
