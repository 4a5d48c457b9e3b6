"""Inflation of 2D networks into 3D (Carreira & Zisserman 2017, Sec. 2.4): a static clip through
the inflated network gives the 2D network's output; pretrained 2D weights from files and runs;
early fusion's stacked first layer (Karpathy et al. 2014) from a 2D checkpoint."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from visrep.errors import CheckpointError, ConfigError
from visrep.models.registry import BACKBONES, create_backbone
from visrep.models.video import early_fusion, i3d, inflate_weight, stack_frames_weight

C, T, S = 3, 6, 16
LIGHT = {  # a small instance of every convolutional family (widths cut for speed)
    "small_cnn": {"channels": [4, 8, 8]},
    "lenet": {},
    "resnet_small": {"channels": [4, 8]},
    "resnet9": {"width": 4},
    "timm/resnet18": {},
}
HEAVY = {"resnet18", "resnet34", "resnet50", "resnext50_32x4d"}  # timm ResNets: slow only
NOT_INFLATABLE = {"mlp", "naisnet", "naisnet_fc", "stn", "vit_small"}


def _same(a: torch.Tensor, b: torch.Tensor, tol: float = 2e-6) -> None:
    """Equal up to float32 rounding: relative error of the whole tensor (deep nets sum many
    terms, so single elements near zero carry larger relative errors)."""
    assert a.shape == b.shape
    a, b = a.detach(), b.detach()
    err = float((a - b).norm() / b.norm().clamp_min(1e-12))
    assert err < tol, f"relative error {err:.2e}"


def _randomise_bn(net: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)


def _net2d(name: str, options: dict, seed: int = 0, in_chans: int = C):
    torch.manual_seed(seed)
    net = create_backbone(name, in_chans=in_chans, num_classes=5, img_size=(S, S), **options)
    _randomise_bn(net, seed)
    return net


def _static(b: int = 2, t: int = T, seed: int = 0):
    img = torch.rand(b, C, S, S, generator=torch.Generator().manual_seed(seed))
    return img, img[:, None].expand(-1, t, -1, -1, -1)


def test_inflate_weight_preserves_the_2d_response():
    w = torch.randn(4, 3, 3, 3)
    for init in ("mean", "center"):
        w3 = inflate_weight(w, 5, init)
        assert w3.shape == (4, 3, 5, 3, 3)
        torch.testing.assert_close(w3.sum(2), w)  # a constant-in-time input sees w
    assert (inflate_weight(w, 5, "center")[:, :, [0, 1, 3, 4]] == 0).all()
    torch.testing.assert_close(inflate_weight(w, 4)[:, :, 2], w / 4)
    s = stack_frames_weight(w, 4)
    assert s.shape == (4, 12, 3, 3)
    torch.testing.assert_close(s.view(4, 4, 3, 3, 3).sum(1), w)
    with pytest.raises(ConfigError, match="init"):
        inflate_weight(w, 3, "edge")


@pytest.mark.parametrize(
    "name",
    [n for n in sorted(LIGHT)] + [pytest.param(n, marks=pytest.mark.slow) for n in sorted(HEAVY)],
)
def test_static_clip_gives_the_2d_output(name, tmp_path):
    """Sec. 2.4: repeating the 2D kernels over time and dividing by their size makes the 3D
    network's response to a "boring video" the 2D network's, in eval and in train mode."""
    net2d = _net2d(name, LIGHT.get(name, {}))
    path = tmp_path / "w.pt"
    torch.save(net2d.state_dict(), path)
    torch.manual_seed(123)  # other initial weights: only the file can make them equal
    net3d = i3d(C, 5, T, (S, S), backbone=partial(_factory, name), pretrained_path=str(path))
    img, clip = _static()
    net2d.eval(), net3d.eval()
    _same(net3d(clip), net2d(img))
    _same(net3d.embed(clip), net2d.forward_head(net2d.forward_features(img), pre_logits=True))
    if name in ("small_cnn", "resnet_small"):  # batch statistics over (B, T, H, W) too
        net2d.train(), net3d.train()
        _same(net3d(clip), net2d(img))


def _factory(name: str, in_chans: int, num_classes: int, img_size):
    return create_backbone(
        name, in_chans=in_chans, num_classes=num_classes, img_size=img_size, **LIGHT.get(name, {})
    )


@pytest.mark.parametrize(
    "options",
    [
        {"init": "center"},
        {"time_kernel": 5, "stem_time_stride": 2, "temporal_pool_after": 0},
        {"time_kernel": 1},
    ],
)
def test_static_clip_exact_for_every_inflation_option(options, tmp_path):
    net2d = _net2d("small_cnn", LIGHT["small_cnn"])
    torch.save(net2d.state_dict(), tmp_path / "w.pt")
    net3d = i3d(
        C,
        5,
        T,
        (S, S),
        backbone=partial(_factory, "small_cnn"),
        pretrained_path=str(tmp_path / "w.pt"),
        **options,
    )
    img, clip = _static()
    _same(net3d.eval()(clip), net2d.eval()(img))


def test_time_axis_follows_the_i3d_rules():
    """Conv kernels N x N -> N x N x N, stem stride in time, the first pools spatial only."""
    net = i3d(C, 5, 8, (S, S), backbone=partial(_factory, "small_cnn"), stem_time_stride=2)
    convs = [m for m in net.backbone.modules() if isinstance(m, torch.nn.Conv3d)]
    pools = [m for m in net.backbone.modules() if isinstance(m, torch.nn.MaxPool3d)]
    assert [c.kernel_size for c in convs] == [(3, 3, 3)] * 6
    assert [c.stride[0] for c in convs] == [2, 1, 1, 1, 1, 1]
    assert [p.kernel_size[0] for p in pools] == [1, 1, 2]
    assert net.forward_features(torch.rand(1, 8, C, S, S)).shape == (1, 8, 2, 2, 2)


def _small1(in_chans, num_classes, img_size):
    return create_backbone(
        "small_cnn",
        in_chans=in_chans,
        num_classes=num_classes,
        channels=[4, 8],
        convs_per_stage=1,
    )


def test_zero_time_padding_is_exact_away_from_the_clip_ends(tmp_path):
    """The paper's zero ("SAME") padding: the 2D response holds where the temporal receptive
    field lies inside the clip; at the ends the padded zeros weigh in."""
    torch.manual_seed(0)
    net2d = _small1(C, 5, (S, S))
    _randomise_bn(net2d, 0)
    torch.save(net2d.state_dict(), tmp_path / "w.pt")
    net3d = i3d(
        C,
        5,
        8,
        (S, S),
        backbone=_small1,
        time_padding="zeros",
        temporal_pool_after=9,
        pretrained_path=str(tmp_path / "w.pt"),
    )
    img, clip = _static(t=8)
    f2 = net2d.eval().forward_features(img)
    f3 = net3d.eval().forward_features(clip)  # (B, F, T, h, w): two 3x3x3 convs see +-2 frames
    for t in range(2, 6):
        _same(f3[:, :, t], f2)
    assert not torch.allclose(f3[:, :, 0], f2, atol=1e-4)


def test_pretrained_path_reads_runs_and_prefixed_state_dicts(tmp_path):
    net2d = _net2d("small_cnn", LIGHT["small_cnn"], seed=3)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    prefixed = {f"net.backbone.{k}": v for k, v in net2d.state_dict().items()}
    torch.save({"state_dict": prefixed}, run / "checkpoints" / "best.ckpt")
    torch.save(prefixed, tmp_path / "prefixed.pt")
    img, clip = _static()
    for path in (run, tmp_path / "prefixed.pt"):
        net3d = i3d(
            C, 5, T, (S, S), backbone=partial(_factory, "small_cnn"), pretrained_path=str(path)
        )
        _same(net3d.eval()(clip), net2d.eval()(img))
    with pytest.raises(CheckpointError):
        i3d(
            C,
            5,
            T,
            (S, S),
            backbone=partial(_factory, "small_cnn"),
            pretrained_path=str(tmp_path / "no.pt"),
        )


@pytest.mark.parametrize("name", sorted(NOT_INFLATABLE))
def test_non_convolutional_backbones_are_refused_with_a_reason(name):
    with pytest.raises(ConfigError, match=r"inflate: backbone"):
        i3d(C, 5, T, (S, S), backbone=partial(_plain, name))


def _plain(name, in_chans, num_classes, img_size):
    opts = {"vit_small": {"patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}}.get(
        name, {}
    )
    return create_backbone(
        name, in_chans=in_chans, num_classes=num_classes, img_size=img_size, **opts
    )


def test_every_registered_backbone_is_covered():
    assert set(BACKBONES.names()) <= set(LIGHT) | HEAVY | NOT_INFLATABLE | {"timm"}


def test_early_fusion_inflate_from_a_2d_checkpoint(tmp_path):
    """Karpathy et al. 2014's early fusion with the first layer's 2D kernel spread over the T
    stacked frames (divided by T): a static clip gives the 2D output."""
    net2d = _net2d("small_cnn", LIGHT["small_cnn"], seed=5)
    torch.save(net2d.state_dict(), tmp_path / "w.pt")
    net = early_fusion(
        C,
        5,
        T,
        (S, S),
        backbone=partial(_factory, "small_cnn"),
        inflate_from=str(tmp_path / "w.pt"),
    )
    img, clip = _static()
    _same(net.eval()(clip), net2d.eval()(img))
    other = _net2d("small_cnn", LIGHT["small_cnn"], in_chans=1)
    torch.save(other.state_dict(), tmp_path / "grey.pt")
    with pytest.raises(CheckpointError, match="3 input channels"):
        early_fusion(
            C,
            5,
            T,
            (S, S),
            backbone=partial(_factory, "small_cnn"),
            inflate_from=str(tmp_path / "grey.pt"),
        )


def test_time_length_rule_matches_pytorch():
    """The time length inflate_backbone expects (to catch residual sums that broadcast) is
    PyTorch's, for every kernel, stride, padding, ceil mode and padding kind."""
    import itertools

    from visrep.models.video.inflate import InflatedMaxPool3d, _time_out

    for t, k, s, p, ceil, mode in itertools.product(
        range(1, 10), range(1, 5), range(1, 4), range(3), (False, True), ("replicate", "zeros")
    ):
        if p > k // 2 or (t + 2 * p < k):
            continue
        if mode == "replicate":
            pool = InflatedMaxPool3d((k, 1, 1), (s, 1, 1), 0, ceil_mode=ceil)
            pool.time_pad = p
        else:
            pool = torch.nn.MaxPool3d((k, 1, 1), (s, 1, 1), (p, 0, 0), ceil_mode=ceil)
        out = pool(torch.zeros(1, 1, t, 1, 1)).shape[2]
        assert out == _time_out(t, k, s, p, ceil, mode), (t, k, s, p, ceil, mode)
