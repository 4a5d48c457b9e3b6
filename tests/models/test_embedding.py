"""EmbeddingNet (visrep.models.embedding): one weight-shared tower, projection, L2 norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visrep.errors import ConfigError
from visrep.models import EmbeddingNet, create_backbone
from visrep.models.embedding import projection_head

TINY = {
    "small_cnn": {"channels": (4, 8), "convs_per_stage": 1},
    "mlp": {"width": 16},
    "resnet18": {"small_stem": True},
}


def _net(name: str = "small_cnn", **kw) -> EmbeddingNet:
    torch.manual_seed(0)
    bb = create_backbone(name, in_chans=1, num_classes=0, img_size=12, **TINY[name])
    return EmbeddingNet(bb, [0.5], [0.25], **kw).eval()


@pytest.mark.parametrize("name", list(TINY))
def test_shapes_unit_norm_and_gradients(name):
    net = _net(name, dim=6).train()
    x = torch.rand(4, 1, 12, 12)
    z = net(x)
    assert z.shape == (4, 6)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4))
    (z[:, 0] * torch.arange(4.0)).sum().backward()  # not a constant of the unit norm
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing


def test_dim_zero_keeps_the_pooled_features_and_normalize_off():
    net = _net(dim=0, normalize=False)
    x = torch.rand(3, 1, 12, 12)
    z = net(x)
    bb = net.backbone
    want = bb.forward_head(bb.forward_features((x - 0.5) / 0.25), pre_logits=True)
    assert z.shape == (3, bb.num_features) and net.dim == bb.num_features
    torch.testing.assert_close(z, want)
    assert isinstance(net.head, nn.Identity)


def test_one_tower_for_every_image():
    # the Siamese pair (x1, x2) through tied weights == one network on the batch
    net = _net(dim=5)
    x1, x2 = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12)
    both = net(torch.cat([x1, x2]))
    torch.testing.assert_close(both, torch.cat([net(x1), net(x2)]))
    torch.testing.assert_close(net.embed(x1), net(x1))


def test_mlp_head_and_classifier():
    net = _net(dim=4, hidden=10, num_classes=3)
    assert isinstance(net.head, nn.Sequential) and net.head[0].out_features == 10
    x = torch.rand(2, 1, 12, 12)
    emb, logits = net.logits(x)
    assert emb.shape == (2, 4) and logits.shape == (2, 3)
    torch.testing.assert_close(emb, net(x))
    torch.testing.assert_close(logits, net.classifier(net.project(x)))
    with pytest.raises(ConfigError, match="num_classes > 0"):
        _net(dim=4).logits(x)


@pytest.mark.parametrize(
    ("dim", "hidden", "match"),
    [(-1, None, "model.dim must be >= 0"), (0, 8, "model.hidden needs a projection"),
     (4, 0, "model.hidden must be >= 1")],
)  # fmt: skip
def test_bad_options(dim, hidden, match):
    with pytest.raises(ConfigError, match=match):
        projection_head(8, dim, hidden)
