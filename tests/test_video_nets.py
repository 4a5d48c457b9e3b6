"""Video networks: the registry, fusion CNNs (Karpathy et al. 2014), the TCC embedder (Table 8 of
seed 004), two-stream networks (Simonyan & Zisserman 2014) and VideoClassifier."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from visrep.errors import ConfigError, ShapeError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.backbones.resnet_small import resnet_small
from visrep.models.video import (
    VIDEO_NETS,
    VideoClassifier,
    average_softmax,
    c3d,
    context_windows,
    early_fusion,
    i3d,
    late_fusion,
    single_frame,
    slow_fusion,
    stack_flow,
    tcc_embedder,
    two_stream,
)
from visrep.models.video.nets import check_dropout, mixture_log_weights

TINY = partial(small_cnn, channels=(4, 6), convs_per_stage=1)
C, T, S = 2, 10, 12  # channels, frames (Karpathy's 10), frame size
NETS = {
    "single_frame": (single_frame, dict(backbone=TINY)),
    "early_fusion": (early_fusion, dict(backbone=TINY)),
    "late_fusion": (late_fusion, dict(backbone=TINY, hidden=(8,))),
    "slow_fusion": (slow_fusion, dict(backbone=TINY, hidden=(8, 8))),
    "i3d": (i3d, dict(backbone=TINY)),
    "c3d": (c3d, dict(width=1 / 16, fc_width=8, dropout=0.0)),
    "tcc_embedder": (
        tcc_embedder,
        dict(backbone=TINY, conv_channels=4, fc_width=8, embedding_dim=6, batch_norm=True),
    ),
    "two_stream": (two_stream, dict(backbone=TINY)),
}


def _clip(b: int = 2, t: int = T, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, t, C, S, S, generator=torch.Generator().manual_seed(seed))


def _flow(b: int = 2, t: int = T - 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, t, 2, S, S, generator=torch.Generator().manual_seed(seed))


def _build(key: str, num_classes: int = 3):
    torch.manual_seed(0)
    cls, opts = NETS[key]
    return cls(C, num_classes, T, (S, S), **opts)


def test_every_registered_net_of_this_file_is_tested():
    # The recurrent nets (cnn_lstm, convlstm) are tested in test_video_recurrent.py.
    assert set(NETS) <= set(VIDEO_NETS.names())
    assert set(VIDEO_NETS.names()) - set(NETS) <= {"cnn_lstm", "convlstm"}


@pytest.mark.parametrize("key", list(NETS))
def test_shapes_gradients_and_reset(key):
    net = _build(key)
    x, f = _clip(), _flow()
    out = net(x, f)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert net.embed(x, f).shape == (2, net.num_features)
    out.sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    net.reset_classifier(7)
    assert net(x, f).shape == (2, 7)
    net.reset_classifier(0)
    assert net(x, f).shape == (2, net.num_features)


@pytest.mark.parametrize("key", list(NETS))
def test_wrong_channels_is_a_shape_error(key):
    net = _build(key)
    with pytest.raises(ShapeError, match="expected"):
        net(torch.rand(2, T, C + 1, S, S), _flow())


def test_registry_builds_nested_backbone_specs():
    spec = VIDEO_NETS.spec(partial(i3d, backbone=TINY, time_kernel=3))
    assert spec["init_args"]["backbone"]["class_path"].endswith("small_cnn")
    assert spec["init_args"]["backbone"]["init_args"]["channels"] == [4, 6]
    net = VIDEO_NETS.build(spec, C, 5, T, (S, S))
    assert isinstance(net, i3d) and net(_clip()).shape == (2, 5)
    net = VIDEO_NETS.build(
        {"class_path": "late_fusion", "init_args": {"backbone": "resnet_small", "hidden": [4]}},
        C,
        5,
        T,
        (S, S),
    )
    assert net(_clip()).shape == (2, 5)
    with pytest.raises(ConfigError, match="no option"):
        VIDEO_NETS.spec({"class_path": "c3d", "init_args": {"widht": 0.5}})


def test_average_softmax():
    logits = torch.randn(3, 4, 5)
    expected = F.softmax(logits, -1).mean(1)
    torch.testing.assert_close(average_softmax(logits).exp(), expected)
    w = torch.tensor([1.0, 0.0, 3.0, 0.0])
    expected = (F.softmax(logits, -1) * (w / w.sum())[None, :, None]).sum(1)
    log_w = mixture_log_weights(w, 4)
    torch.testing.assert_close(log_w.exp(), w / w.sum())
    torch.testing.assert_close(average_softmax(logits, log_weights=log_w).exp(), expected)
    # zero weights contribute nothing, not NaN, to the value and the gradient
    x = logits.clone().requires_grad_()
    average_softmax(x, log_weights=log_w).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[:, [1, 3]].abs().max() == 0
    # no underflow for huge logits
    big = torch.tensor([[[1000.0, 0.0], [0.0, 1000.0]]])
    torch.testing.assert_close(average_softmax(big).exp(), torch.tensor([[0.5, 0.5]]))
    for bad in ([1.0, -1.0, 0.0, 0.0], [0.0] * 4, [1.0] * 3):
        with pytest.raises(ConfigError, match=r"opt must be 4 non-negative"):
            mixture_log_weights(bad, 4, "opt")
    with pytest.raises(ShapeError, match="log_weights"):
        average_softmax(logits, log_weights=log_w[:3])


def test_check_dropout():
    check_dropout("net", 0.0)
    check_dropout("net", 0.5)
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match=r"net: model\.net\.dropout"):
            check_dropout("net", bad)


@pytest.mark.parametrize("key", ["late_fusion", "slow_fusion", "c3d", "tcc_embedder"])
def test_dropout_is_checked_by_every_net_that_has_it(key):
    cls, opts = NETS[key]
    with pytest.raises(ConfigError, match=rf"^{key}: model\.net\.dropout"):
        cls(C, 3, T, (S, S), **{**opts, "dropout": 1.0})


# -- the fusion models ---------------------------------------------------------------------------


def test_single_frame_averages_frame_softmax_and_ignores_order():
    net = _build("single_frame").eval()
    x = _clip()
    per_frame = net.backbone(x.flatten(0, 1)).view(2, T, -1)
    torch.testing.assert_close(net(x).exp(), F.softmax(per_frame, -1).mean(1))
    perm = torch.randperm(T, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(net(x[:, perm]), net(x), rtol=1e-5, atol=1e-6)
    assert net(x[:, :3]).shape == (2, 3)  # any number of frames


def test_early_fusion_stacks_frames_on_channels():
    net = _build("early_fusion").eval()
    assert net.backbone.features[0].in_channels == C * T
    x = _clip()
    torch.testing.assert_close(net(x), net.backbone(x.reshape(2, T * C, S, S)))
    assert not torch.allclose(net(x.flip(1)), net(x))  # frame order matters
    with pytest.raises(ShapeError, match="built for 10"):
        net(_clip(t=T - 1))


def test_late_fusion_sees_only_its_two_frames():
    net = late_fusion(C, 3, T, (S, S), backbone=TINY, hidden=(8,), frame_gap=4).eval()
    x = _clip()
    y = x.clone()
    keep = torch.tensor([0, 4])
    others = torch.ones(T, dtype=torch.bool)
    others[keep] = False
    y[:, others] = torch.rand_like(y[:, others])
    torch.testing.assert_close(net(y), net(x))
    swapped = x.clone()
    swapped[:, [0, 4]] = x[:, [4, 0]]
    assert not torch.allclose(net(swapped), net(x))  # the FC layer compares the two towers
    with pytest.raises(ConfigError, match="frame_gap"):
        late_fusion(C, 3, T, (S, S), backbone=TINY, frame_gap=T)


def test_slow_fusion_time_extents_follow_the_paper():
    """Karpathy et al. 2014: extents 4, 2, 2 with stride 2 on 10 frames give 4, 2, 1 responses."""
    net = slow_fusion(C, 3, T, (S, S), backbone=partial(small_cnn, channels=(4, 6, 8)))
    net.eval()
    sizes = []
    convs = [m for m in net.backbone.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [m.kernel_size[0] for m in convs] == [4, 2, 2, 1, 1, 1]
    hooks = [m.register_forward_hook(lambda m, a, o: sizes.append(o.shape[2])) for m in convs]
    x = _clip(b=1).requires_grad_()
    net(x).sum().backward()
    for h in hooks:
        h.remove()
    assert sizes == [4, 2, 1, 1, 1, 1] and net.time_steps == 1
    # the third layer already sees the whole clip: every frame moves the output
    assert (x.grad.abs().sum((0, 2, 3, 4)) > 0).all()
    with pytest.raises(ConfigError, match="too few"):
        slow_fusion(C, 3, 3, (S, S), backbone=TINY)


def test_slow_fusion_refuses_residual_backbones_cleanly():
    with pytest.raises(ConfigError, match="inflate"):
        slow_fusion(C, 3, T, (S, S), backbone=partial(resnet_small, channels=(4, 8)))


# -- TCC embedder ---------------------------------------------------------------------------------


def test_context_windows():
    x = torch.arange(6.0).view(1, 6, 1, 1, 1).expand(2, 6, 3, 2, 2)
    w = context_windows(x, context=3, stride=2)
    assert w.shape == (2, 2, 3, 3, 2, 2)
    assert w[0, :, 0, :, 0, 0].tolist() == [[0.0, 2.0, 4.0], [1.0, 3.0, 5.0]]
    with pytest.raises(ConfigError, match="T >= 7"):
        context_windows(x, context=4, stride=2)


def test_tcc_frame_embeddings_are_causal_per_window():
    net = tcc_embedder(
        C, 3, T, (S, S), backbone=TINY, context=3, context_stride=2, conv_channels=4, fc_width=8
    ).eval()
    x = _clip()
    e = net.frame_embeddings(x)
    assert e.shape == (2, T - 4, 128)
    y = x.clone()
    y[:, -1] = 0.0  # only the last frame's window contains the last frame
    e2 = net.frame_embeddings(y)
    torch.testing.assert_close(e2[:, :-1], e[:, :-1])
    assert not torch.allclose(e2[:, -1], e[:, -1])
    # each window's embedding equals that of the window alone
    torch.testing.assert_close(net.frame_embeddings(x[:, 2:7]), e[:, 2:3], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net.embed(x), e.mean(1))


def test_tcc_base_level_reads_an_intermediate_level():
    net = tcc_embedder(
        C, 3, 4, (S, S), backbone=TINY, base_level=0, conv_channels=4, fc_width=8
    ).eval()
    assert net.base_features(_clip(t=4)).shape == (2, 4, 4, S // 2, S // 2)
    with pytest.raises(ConfigError, match="base_level"):
        tcc_embedder(C, 3, 4, (S, S), backbone=TINY, base_level=5)


# -- two-stream -----------------------------------------------------------------------------------


def test_stack_flow_interleaves_dx_dy_and_removes_the_mean():
    f = torch.randn(2, 3, 2, 4, 5)
    s = stack_flow(f, subtract_mean=False)
    torch.testing.assert_close(s[:, 2], f[:, 1, 0])  # d^x of pair 2 is channel 2k-1 = 3 (1-based)
    torch.testing.assert_close(s[:, 3], f[:, 1, 1])
    z = stack_flow(f)
    torch.testing.assert_close(z.mean((-2, -1)), torch.zeros(2, 6), atol=1e-6, rtol=0)


def test_two_stream_late_fusion_of_softmax_scores():
    net = _build("two_stream").eval()
    assert net.uses_flow and net.flow.features[0].in_channels == 2 * (T - 1)
    x, f = _clip(), _flow()
    rgb, mot = net.forward_streams(x, f)
    fused = (F.softmax(rgb, -1) + F.softmax(mot, -1)) / 2
    torch.testing.assert_close(net(x, f).exp(), fused)
    # a camera translation (the same vector added to every field) is removed by Sec. 3.3
    shift = torch.tensor([3.0, -2.0]).view(1, 1, 2, 1, 1)
    torch.testing.assert_close(net(x, f + shift), net(x, f), rtol=1e-4, atol=1e-5)
    only_rgb = two_stream(C, 3, T, (S, S), backbone=TINY, stream_weights=(1.0, 0.0)).eval()
    only_rgb.load_state_dict(net.state_dict())
    torch.testing.assert_close(only_rgb(x, f), rgb)
    with pytest.raises(ConfigError, match="stream_weights"):
        two_stream(C, 3, T, (S, S), backbone=TINY, stream_weights=(1.0, -1.0))
    # forward reads no value back from the device (no sync per step): it runs on meta tensors,
    # where any bool() / float() / item() of a tensor raises
    meta = two_stream(C, 3, T, (S, S), backbone=TINY, stream_weights=(1.0, 3.0)).to("meta")
    assert meta(x.to("meta"), f.to("meta")).shape == (2, 3)
    with pytest.raises(ShapeError, match="flow"):
        net(x)
    with pytest.raises(ShapeError, match="built for 9"):
        net(x, f[:, :4])


# -- VideoClassifier ------------------------------------------------------------------------------


def test_video_classifier_normalises_and_folds_clips_per_video():
    net = _build("two_stream").eval()
    mean, std = [0.2, 0.4], [0.5, 0.25]
    model = VideoClassifier(net, mean, std, flow_scale=4.0).eval()
    assert model.uses_flow
    x, f = _clip(), _flow()
    m, s = torch.tensor(mean).view(1, 1, 2, 1, 1), torch.tensor(std).view(1, 1, 2, 1, 1)
    torch.testing.assert_close(model(x, f), net((x - m) / s, f / 4.0))
    # K = 3 clips per video: (B, K, T, C, H, W) -> (B, K, classes), the same as clip by clip
    xs, fs = torch.stack([x, x.flip(1), 1 - x], 1), torch.stack([f, -f, 2 * f], 1)
    out = model(xs, fs)
    assert out.shape == (2, 3, 3)
    for k in range(3):
        torch.testing.assert_close(out[:, k], model(xs[:, k], fs[:, k]), rtol=1e-5, atol=1e-6)
    assert model.embed(xs, fs).shape == (2, 3, net.num_features)
    with pytest.raises(ShapeError, match="leading"):
        model(xs, f)
    with pytest.raises(ConfigError, match="flow_scale"):
        VideoClassifier(net, mean, std, flow_scale=0.0)


# -- learning motion -------------------------------------------------------------------------------


def _moving_squares(n: int, g: torch.Generator, frames: int = 6, size: int = 12):
    """A 3x3 square moving one pixel per frame to the left (class 0) or right (class 1),
    wrapping, from a uniform start: every single frame has the same distribution in both
    classes, only the motion tells them apart."""
    y = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(0, size, (n, 2), generator=g)
    c = (pos[:, None, 1] + (2 * y[:, None] - 1) * torch.arange(frames)) % size
    ar = torch.arange(size)
    rows = ((ar - pos[:, None, 0, None]) % size < 3).float().expand(-1, frames, -1)
    cols = ((ar - c[..., None]) % size < 3).float()
    return (rows[..., :, None] * cols[..., None, :])[:, :, None], y


@pytest.mark.parametrize(
    "key,at_least,at_most",
    [
        ("single_frame", 0.0, 0.65),
        ("early_fusion", 0.95, 1.0),
        ("slow_fusion", 0.95, 1.0),
        ("i3d", 0.95, 1.0),
    ],
)
def test_only_models_that_fuse_time_learn_the_direction_of_motion(key, at_least, at_most):
    tiny = partial(small_cnn, channels=(8, 8), convs_per_stage=1)
    opts = {"slow_fusion": dict(hidden=(16,), time_kernels=(2, 2), time_strides=(1, 1))}
    torch.manual_seed(0)
    net = NETS[key][0](1, 2, 6, (12, 12), backbone=tiny, **opts.get(key, {}))
    g = torch.Generator().manual_seed(0)
    x, y = _moving_squares(256, g)
    x_test, y_test = _moving_squares(256, g)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(60):
        i = torch.randint(0, 256, (32,), generator=g)
        loss = F.cross_entropy(net(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (net.eval()(x_test).argmax(1) == y_test).float().mean().item()
    assert at_least <= acc <= at_most
