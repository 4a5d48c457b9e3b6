"""The context-normalisation network of Yi et al. 2018: permutation equivariance, padding with
a mask, Context Normalization against its definition, options and bad input."""

from __future__ import annotations

import pytest
import torch

from visrep.errors import ConfigError, ShapeError
from visrep.models.correspondence.network import (
    ContextNorm,
    CorrespondenceNet,
    MaskedBatchNorm1d,
    context_norm,
    inlier_weights,
)


def test_context_norm_is_per_sample_per_channel_over_the_matches():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 40, generator=g) * 4 + 2
    y = context_norm(x, eps=0.0)
    assert torch.allclose(y.mean(-1), torch.zeros(3, 5), atol=1e-5)
    assert torch.allclose(y.std(-1, unbiased=False), torch.ones(3, 5), atol=1e-4)
    # against the definition with the authors' variance epsilon
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    assert torch.allclose(context_norm(x), (x - mu) / (var + 1e-3).sqrt(), atol=1e-6)
    assert torch.equal(ContextNorm()(x), context_norm(x))
    # a mask: statistics of the valid matches only
    mask = torch.arange(40)[None].expand(3, 40) < torch.tensor([[40], [25], [9]])
    ym = context_norm(x, mask)
    assert torch.allclose(ym[1, :, :25], context_norm(x[1:2, :, :25])[0], atol=1e-6)
    assert torch.all(ym[2, :, 9:] == 0)


def test_the_network_is_permutation_equivariant():
    torch.manual_seed(0)
    net = CorrespondenceNet(depth=3, width=16)
    x = torch.randn(4, 100, 4)
    perm = torch.randperm(100)
    for mode in (net.train, net.eval):
        mode()
        torch.manual_seed(1)
        out, out_perm = net(x), net(x[:, perm])
        assert torch.allclose(out[:, perm], out_perm, atol=1e-5)


def test_padding_with_a_mask_gives_each_pair_alone():
    torch.manual_seed(0)
    net = CorrespondenceNet(depth=2, width=8)
    sizes = (30, 17)
    pairs = [torch.randn(n, 4) for n in sizes]
    batch = torch.zeros(2, 30, 4)
    batch[1, 17:] = 99.0  # padded values must not matter
    mask = torch.zeros(2, 30, dtype=torch.bool)
    for i, p in enumerate(pairs):
        batch[i, : len(p)] = p
        mask[i, : len(p)] = True
    net.eval()
    out = net(batch, mask)
    for i, p in enumerate(pairs):
        assert torch.allclose(out[i, : len(p)], net(p[None])[0], atol=1e-5)
    assert torch.all(out[1, 17:] == 0)
    # training mode: batch statistics over the valid matches, as over the packed matches
    net.train()
    bn = MaskedBatchNorm1d(4)
    h = batch.transpose(1, 2)
    packed = torch.cat([h[0, :, :30], h[1, :, :17]], 1)[None]
    got = bn(h, mask)
    want = torch.nn.functional.batch_norm(packed, None, None, bn.weight, bn.bias, training=True)
    assert torch.allclose(torch.cat([got[0, :, :30], got[1, :, :17]], 1), want[0], atol=1e-5)


def test_shapes_options_and_weights():
    net = CorrespondenceNet(depth=1, width=4).eval()
    x = torch.randn(2, 12, 4)
    assert net(x).shape == (2, 12)
    assert torch.allclose(net(x.transpose(1, 2)[..., None]), net(x))  # the paper's (B, 4, N, 1)
    assert len(CorrespondenceNet().blocks) == 12 and CorrespondenceNet().stem.out_channels == 128
    w = inlier_weights(torch.tensor([-3.0, 0.0, 0.5, 20.0]))
    assert torch.allclose(w, torch.tensor([0.0, 0.0, float(torch.tanh(torch.tensor(0.5))), 1.0]))
    assert torch.equal(net.weights(x), inlier_weights(net(x)))


def test_bad_input_is_one_shape_error():
    net = CorrespondenceNet(depth=1, width=4)
    with pytest.raises(ShapeError, match=r"matches must be \(B, N, 4\) .* got \(2, 12, 3\)"):
        net(torch.randn(2, 12, 3))
    with pytest.raises(ShapeError, match=r"mask must be \(B, N\) = \(2, 12\), got \(2, 11\)"):
        net(torch.randn(2, 12, 4), torch.ones(2, 11, dtype=torch.bool))
    with pytest.raises(ConfigError, match="width >= 1"):
        CorrespondenceNet(width=0)
    with pytest.raises(ConfigError, match="depth=-1"):
        CorrespondenceNet(depth=-1)


def test_an_all_true_mask_gives_the_unmasked_numbers():
    # the network drops an all-true mask once per forward; the masked path agrees with it
    torch.manual_seed(0)
    net = CorrespondenceNet(depth=2, width=8).train()
    x = torch.randn(3, 20, 4)
    full = torch.ones(3, 20, dtype=torch.bool)
    assert torch.allclose(net(x, full), net(x), atol=1e-6)
    bn = MaskedBatchNorm1d(8).train()
    h = torch.randn(3, 8, 20)
    assert torch.allclose(bn(h, full), torch.nn.BatchNorm1d(8).train()(h), atol=1e-5)
