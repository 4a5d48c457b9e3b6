"""VOS networks (visrep.models.vos): object boxes, the visual modulator's crops and identity
start, the spatial modulator's shifts, recurrence, teacher forcing, bad options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from visrep.errors import ConfigError, ShapeError
from visrep.models.layers.film import mask_gaussian
from visrep.models.registry import BACKBONES
from visrep.models.vos import (
    ModulatedSegmenter,
    SpatialModulator,
    VisualModulator,
    VosNet,
    object_boxes,
)

_SMALL = {"class_path": "small_cnn", "init_args": {"channels": [4, 8], "convs_per_stage": 1}}


def _visual(channels: tuple[int, ...], crop: int = 16) -> VisualModulator:
    enc = BACKBONES.build(BACKBONES.spec(_SMALL), 3, 0, (crop, crop))
    return VisualModulator(enc, channels, crop)


def _net(method: str = "reconvnet") -> VosNet:
    rec = (2,) if method == "reconvnet" else ()
    seg = ModulatedSegmenter((4, 8, 8), rec, side_channels=4)
    if method == "osvos":
        return VosNet(method, seg, None, None, (0.5,) * 3, (0.25,) * 3)
    ch = seg.modulated_channels
    return VosNet(method, seg, _visual(ch), SpatialModulator(ch), (0.5,) * 3, (0.25,) * 3)


def test_object_boxes() -> None:
    m = torch.zeros(3, 10, 20)
    m[0, 2:4, 5:9] = 1
    m[1, 0, 0] = 1
    boxes = object_boxes(m, margin=0.0)
    assert boxes.tolist() == [[5, 2, 9, 4], [0, 0, 1, 1], [0, 0, 20, 10]]
    grown = object_boxes(m, margin=0.5)
    assert grown[0].tolist() == [3, 1, 11, 5] and grown[1].tolist() == [0, 0, 1.5, 1.5]


def test_visual_modulator_crops_and_identity_start() -> None:
    vm = _visual((8, 8), crop=8)
    img = torch.rand(2, 3, 16, 16)
    mask = torch.zeros(2, 16, 16)
    mask[0, 4:12, 4:12] = 1
    mask[1] = 1
    crops = vm.crops(img, mask)
    assert crops.shape == (2, 3, 8, 8)
    # the box 4:12 (margin 0.15 -> 2.8:13.2) resized to 8 pixels; the background is zeroed
    box = object_boxes(mask[:1], vm.margin)[0]
    assert box.tolist() == pytest.approx([2.8, 2.8, 13.2, 13.2])
    whole = F.interpolate(img[1:], size=(8, 8), mode="area")
    torch.testing.assert_close(crops[1:], whole, atol=0.15, rtol=0)  # roi_align ~ area resize
    centre = crops[0, :, 3:5, 3:5]
    assert centre.abs().sum() > 0 and crops[0, :, 0, 0].abs().sum() < 0.35 * img[0].abs().max()
    gammas = vm(img, mask)
    assert [g.shape for g in gammas] == [(2, 8), (2, 8)]
    assert all(torch.equal(g, torch.ones_like(g)) for g in gammas)


def test_spatial_modulator_shifts() -> None:
    sm = SpatialModulator((3, 2), jitter=0.0)
    mask = torch.zeros(1, 16, 16)
    mask[0, 4:10, 6:12] = 1
    betas = sm(mask, [(8, 8), (4, 4)])
    assert [b.shape for b in betas] == [(1, 3, 8, 8), (1, 2, 4, 4)] and not any(
        b.any() for b in betas
    )
    with torch.no_grad():
        sm.a[0].copy_(torch.tensor([1.0, 2.0, -1.0]))
        sm.b[0].copy_(torch.tensor([0.0, 0.5, 0.0]))
    sm.eval()
    beta = sm(mask, [(8, 8), (4, 4)])[0]
    g = F.interpolate(mask_gaussian(mask)[:, None], size=(8, 8), mode="area")[:, 0]
    torch.testing.assert_close(beta[0, 1], 2 * g[0] + 0.5)
    torch.testing.assert_close(beta[0, 2], -g[0])
    sm.jitter = 0.5
    assert torch.equal(sm.eval().prior(mask), sm.prior(mask))  # no jitter at eval
    sm.train()
    torch.manual_seed(0)
    assert not torch.equal(sm.prior(mask), sm.eval().prior(mask))


def test_recurrence_carries_state_and_plain_stages_do_not() -> None:
    torch.manual_seed(0)
    frames = torch.rand(2, 3, 16, 16)
    for rec, depends in (((2,), True), ((), False)):
        seg = ModulatedSegmenter((4, 8, 8), rec, side_channels=4).eval()
        with torch.no_grad():
            _, s1 = seg.step(frames[:1])
            a, _ = seg.step(frames[1:], states=s1)
            b, _ = seg.step(frames[1:])
        assert (not torch.equal(a, b)) == depends
        assert sorted(s1) == list(rec)


def test_vosnet_shapes_teacher_forcing_and_gradients() -> None:
    torch.manual_seed(0)
    net = _net("reconvnet")
    v = torch.rand(2, 3, 3, 16, 16)
    masks = (torch.rand(2, 3, 16, 16) > 0.6).float()
    masks[:, :, 4:8, 4:8] = 1
    out = net(v, masks[:, 0], masks)
    assert out.shape == (2, 3, 16, 16)
    out.mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing
    net.eval()
    with torch.no_grad():
        net.spatial.a[0].fill_(5.0)
        forced = net(v, masks[:, 0], masks)
        other = masks.clone()
        other[:, 1] = 0
        other[:, 1, 10:14, 10:14] = 1
        changed = net(v, masks[:, 0], other)
    # frame 2's prior is masks[:, 1]: only frame 2 changes
    assert torch.equal(forced[:, :2], changed[:, :2]) and not torch.equal(
        forced[:, 2], changed[:, 2]
    )
    osvos = _net("osvos")
    assert osvos(v, masks[:, 0]).shape == (2, 3, 16, 16)


def test_bad_options() -> None:
    seg = ModulatedSegmenter((4, 8, 8), (2,))
    with pytest.raises(ConfigError, match="osvos has no modulators"):
        VosNet("osvos", seg, _visual((8, 8)), None, (0.5,) * 3, (0.25,) * 3)
    with pytest.raises(ConfigError, match="recurrent_stages"):
        _ = VosNet("osmn", seg, _visual((8, 8)), SpatialModulator((8, 8)), (0.5,) * 3, (0.25,) * 3)
    with pytest.raises(ConfigError, match="method"):
        VosNet("maskrnn", seg, None, None, (0.5,) * 3, (0.25,) * 3)
    with pytest.raises(ConfigError, match="recurrent_stages"):
        ModulatedSegmenter((4, 8), (0,))
    with pytest.raises(ShapeError, match="divisible"):
        ModulatedSegmenter((4, 8, 8)).step(torch.rand(1, 3, 15, 16))
    with pytest.raises(ShapeError, match="first_mask"):
        _net()(torch.rand(1, 2, 3, 16, 16), torch.zeros(1, 8, 8))


def test_an_empty_prediction_keeps_the_last_prior() -> None:
    """At inference the prior follows the net's own masks, but an empty one is not used."""
    torch.manual_seed(0)
    net = _net("osmn").eval()
    seen: list[torch.Tensor] = []
    spatial = net.spatial.forward

    def spy(mask: torch.Tensor, sizes):
        seen.append(mask.clone())
        return spatial(mask, sizes)

    net.spatial.forward = spy
    calls = iter([5.0, -5.0, -5.0])  # frame 0 all object, then nothing

    def step(x, gammas=None, betas=None, states=None):
        return torch.full((x.shape[0], 1, *x.shape[-2:]), next(calls)), {}

    net.segmenter.step = step
    first = torch.zeros(1, 16, 16)
    first[0, 2:6, 2:6] = 1
    with torch.no_grad():
        net(torch.rand(1, 3, 3, 16, 16), first)
    assert torch.equal(seen[1], first[0][None]) and torch.equal(seen[2], first[0][None])
