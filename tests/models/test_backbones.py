"""The same checks for every registered backbone, at tiny sizes (timm's pattern)."""

import inspect
import math
import typing

import pytest
import timm
import torch

from visrep.errors import ConfigError
from visrep.models import (
    BACKBONES,
    Backbone,
    ImageClassifier,
    backbone_options,
    create_backbone,
    list_backbones,
)
from visrep.models.backbones.resnet import TimmResNet
from visrep.models.layers import Normalize, normalize

# 8x8 inputs with 2 channels: small enough for every model to run fast on a CPU.
SIZES: dict[str, int] = {}
# Options a backbone needs (the generic timm backbone: a tiny timm test model).
OPTS: dict[str, dict] = {"timm": {"model_name": "test_efficientnet"}}

REGISTERED = {
    "small_cnn",
    "stn",
    "lenet",
    "mlp",
    "naisnet",
    "naisnet_fc",
    "resnet9",
    "resnet_small",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext50_32x4d",
    "vit_small",
    "timm",
}


def test_registered_names_are_the_user_facing_names():
    assert set(list_backbones()) == REGISTERED
    assert all(BACKBONES.get(n).__name__ == n for n in list_backbones())


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_contract(name):
    torch.manual_seed(0)
    size = SIZES.get(name, 8)
    m = create_backbone(name, in_chans=2, num_classes=7, img_size=size, **OPTS.get(name, {}))
    assert isinstance(m, Backbone)
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
    assert m.num_classes == 4


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_eval_is_deterministic(name):
    size = SIZES.get(name, 8)
    m = create_backbone(name, in_chans=1, num_classes=3, img_size=size, **OPTS.get(name, {}))
    m = m.eval()
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        assert torch.equal(m(x), m(x))


@pytest.mark.parametrize("name", list_backbones())
def test_feature_info_matches_forward_intermediates(name):
    """Level i of a 32x32 input is (B, num_chs, ceil(32 / reduction), ceil(32 / reduction))."""
    torch.manual_seed(0)
    m = create_backbone(name, in_chans=2, num_classes=3, img_size=32, **OPTS.get(name, {})).eval()
    info = m.feature_info
    assert info and all({"num_chs", "reduction", "module"} <= set(d) for d in info)
    assert all(isinstance(m.get_submodule(d["module"]), torch.nn.Module) for d in info)
    assert info[-1]["num_chs"] == m.num_features or name == "timm"  # timm: a head conv follows
    x = torch.randn(2, 2, 32, 32)
    with torch.no_grad():
        z = m.forward_features(x)
        maps = m.forward_intermediates(x)
        final, again = m.forward_intermediates(x, intermediates_only=False)
        last2 = m.forward_intermediates(x, indices=min(2, len(info)))
        first_last = m.forward_intermediates(x, indices=[0, -1])
    assert len(maps) == len(info)
    for f, d in zip(maps, info, strict=True):
        side = math.ceil(32 / d["reduction"])
        assert f.shape == (2, d["num_chs"], side, side), (d, tuple(f.shape))
    if z.dim() == 4 and name != "timm":
        assert torch.equal(maps[-1], z)
    elif z.dim() == 2:  # MLPs: the hidden features as a 1x1 map
        assert torch.equal(maps[-1].flatten(1), z)
    assert torch.equal(final, z)
    assert all(torch.equal(a, b) for a, b in zip(again, maps, strict=True))
    assert [f.shape for f in last2] == [f.shape for f in maps[-len(last2) :]]
    assert [f.shape for f in first_last] == [maps[i].shape for i in sorted({0, len(maps) - 1})]
    with pytest.raises(ConfigError, match="indices"):
        m.forward_intermediates(x, indices=len(info) + 1)


@pytest.mark.parametrize("name", list_backbones())
def test_options_are_typed(name):
    cls = BACKBONES.get(name)
    params = list(inspect.signature(cls).parameters)
    assert params[:3] == ["in_chans", "num_classes", "img_size"]
    options = backbone_options(name)
    assert "pretrained_path" in options
    assert all(p.default is not p.empty for p in options.values())  # buildable from a bare name
    hints = typing.get_type_hints(cls.__init__)  # resolvable, as jsonargparse needs
    untyped = [n for n in options if n not in hints]
    assert not untyped, f"options without a type: {untyped}"


def test_list_options_take_lists():
    m = create_backbone("small_cnn", in_chans=1, channels=[4, 8], convs_per_stage=1)
    assert [d["num_chs"] for d in m.feature_info] == [4, 8]
    assert typing.get_type_hints(BACKBONES.get("naisnet").__init__)["channels"] == tuple[int, ...]


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet19'; did you mean .*resnet18"):
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
    assert [d["reduction"] for d in big.feature_info] == [2, 4, 8, 16, 32]
    assert [d["reduction"] for d in small.feature_info] == [1, 1, 2, 4, 8]


@pytest.mark.parametrize("cls", TimmResNet.__subclasses__(), ids=lambda c: c.__name__)
def test_timm_resnets_are_the_timm_architecture(cls):
    ours = cls(3, 10, small_stem=False).state_dict()
    ref = timm.create_model(cls.timm_name, pretrained=False, num_classes=10).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in ref.items()}


def test_any_timm_model_by_name():
    m = create_backbone("timm/convnext_atto", in_chans=1, num_classes=4, img_size=32)
    assert m.model_name == "convnext_atto" and m.model.num_classes == 4
    x = torch.randn(2, 1, 32, 32)
    assert m(x).shape == (2, 4)
    assert [f.shape[1] for f in m.forward_intermediates(x)] == [40, 80, 160, 320]
    assert m.feature_info[0]["module"] == "model.stages.0"
    vit = create_backbone("timm/test_vit", in_chans=3, num_classes=2, img_size=32)  # takes img_size
    assert vit(torch.randn(1, 3, 32, 32)).shape == (1, 2)
    with pytest.raises(ConfigError, match="unknown timm model 'convnext_ato'; did you mean"):
        create_backbone("timm/convnext_ato")
    with pytest.raises(ConfigError, match="timm's model of that name is 'timm/convnext_atto'"):
        create_backbone("convnext_atto")
    with pytest.raises(ConfigError, match="unknown timm model"):
        create_backbone("timm", model_name="hf-hub:timm/resnet18")  # never fetched
    assert create_backbone("timm").model_name == "resnet18"  # every option has a default
    with pytest.raises(ConfigError, match=r"timm model 'resnet10t'.*bogus"):
        create_backbone("timm/resnet10t", model_args={"bogus": 1})


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


def test_vit_default_patch_divides_mnist_sized_images():
    """28x28 (MNIST) is not a multiple of 28 // 8 = 3: the default patch is 2, not an error."""
    m = create_backbone("vit_small", in_chans=1, num_classes=10, img_size=28, depth=1).eval()
    assert m.patch_embed.patch_size == (2, 2)
    assert m(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
