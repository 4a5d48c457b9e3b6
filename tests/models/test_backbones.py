"""The same checks for every registered backbone, at tiny sizes (timm's pattern)."""

import pytest
import torch

from visrep.errors import ConfigError
from visrep.models import ImageClassifier, backbone_options, create_backbone, list_backbones
from visrep.models.layers import Normalize, normalize

# 8x8 inputs with 2 channels: small enough for every model to run fast on a CPU.
SIZES: dict[str, int] = {}


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_contract(name):
    torch.manual_seed(0)
    size = SIZES.get(name, 8)
    m = create_backbone(name, in_chans=2, num_classes=7, img_size=size)
    x = torch.randn(3, 2, size, size)
    z = m.forward_features(x)
    pooled = m.forward_head(z, pre_logits=True)
    logits = m.forward_head(z)
    assert pooled.shape == (3, m.num_features)
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    assert torch.allclose(m(x), logits, atol=1e-6) or m.training  # dropout may differ in train mode
    logits.sum().backward()
    missing = [
        n
        for n, p in m.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())
    ]
    assert not missing, f"parameters without a finite gradient: {missing[:5]}"
    m.reset_classifier(4)
    assert m.forward_head(m.forward_features(x)).shape == (3, 4)


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_eval_is_deterministic(name):
    size = SIZES.get(name, 8)
    m = create_backbone(name, in_chans=1, num_classes=3, img_size=size).eval()
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        assert torch.equal(m(x), m(x))


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(ConfigError, match="unknown backbone 'resnet19'; did you mean .*resnet18"):
        create_backbone("resnet19")


def test_unknown_option_lists_accepted():
    with pytest.raises(ConfigError, match=r"has no option.* widht; accepted: depth, width"):
        create_backbone("mlp", img_size=8, widht=3)
    assert "small_stem" in backbone_options("resnet18")


def test_small_stem_keeps_resolution():
    big = create_backbone("resnet18", in_chans=3, num_classes=2, img_size=224).eval()
    small = create_backbone("resnet18", in_chans=3, num_classes=2, img_size=32).eval()
    x = torch.randn(1, 3, 32, 32)
    assert big.forward_features(x).shape[-1] == 1
    assert small.forward_features(x).shape[-1] == 4


def test_mlp_structure():
    m = create_backbone(
        "mlp",
        in_chans=1,
        num_classes=10,
        img_size=8,
        depth=3,
        width=16,
        activation="tanh",
        batch_norm=True,
    )
    assert sum(isinstance(mod, torch.nn.Linear) for mod in m.modules()) == 4
    assert sum(isinstance(mod, torch.nn.Tanh) for mod in m.modules()) == 3


def test_pretrained_path_loads_matching_tensors(tmp_path):
    src = create_backbone("small_cnn", in_chans=1, num_classes=5)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = create_backbone("small_cnn", in_chans=1, num_classes=3)
    from visrep.models.backbones._pretrained import load_pretrained

    load_pretrained(dst, tmp_path / "w.pt")
    assert torch.equal(dst.features[0].weight, src.features[0].weight)
    assert dst.head.fc.out_features == 3  # mismatched classifier skipped


def test_normalize_module_equals_function():
    x = torch.rand(2, 3, 4, 4)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(Normalize(mean, std)(x), expected)
    assert torch.allclose(normalize(x, torch.tensor(mean), torch.tensor(std)), expected)


def test_image_classifier_embeds_and_classifies():
    bb = create_backbone("small_cnn", in_chans=1, num_classes=4)
    clf = ImageClassifier(bb, [0.5], [0.25]).eval()
    x = torch.rand(2, 1, 8, 8)
    assert clf.embed(x).shape == (2, bb.num_features)
    assert torch.allclose(clf(x), bb((x - 0.5) / 0.25))
