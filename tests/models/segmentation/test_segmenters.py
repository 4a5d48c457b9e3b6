"""Every registered segmenter: logits at the input size (even and odd), finite, all parameters
trained; the registry's nested specs and what jsonargparse builds from them."""

import functools
import json

import jsonargparse
import pytest
import torch
import yaml

from visrep.errors import ConfigError
from visrep.models.backbones.resnet_small import resnet_small
from visrep.models.segmentation import SEGMENTERS, Segmenter, SegmenterFactory, fcn8s, unet

# Tiny widths, so the whole file runs in seconds on one core.
TINY: dict[str, dict] = {
    "fcn32s": {"encoder_channels": [4, 4, 8, 8, 8]},
    "fcn16s": {"encoder_channels": [4, 4, 8, 8, 8]},
    "fcn8s": {"encoder": {"class_path": "resnet_small", "init_args": {"channels": [4, 8, 8, 8]}}},
    "segnet": {"channels": [4, 8, 8], "convs_per_stage": [2, 2, 3]},
    "segnet_basic": {"width": 4},
    "unet": {"depth": 3, "width": 4},
    "deeplab": {"encoder_channels": [4, 8, 8, 8], "aspp_channels": 4, "output_stride": 8},
    "fpn": {"encoder_channels": [4, 4, 8, 8, 8], "fpn_channels": 8, "head_channels": 4},
}
NAMES = ["deeplab", "fcn16s", "fcn32s", "fcn8s", "fpn", "segnet", "segnet_basic", "unet"]


def test_registered_names():
    assert SEGMENTERS.names() == NAMES
    assert set(TINY) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(32, 32), (31, 45), (17, 9)])
def test_logits_at_input_size_and_every_parameter_learns(name, size):
    torch.manual_seed(0)
    m = SEGMENTERS.build({"class_path": name, "init_args": TINY[name]}, 3, 5)
    assert isinstance(m, Segmenter) and (m.in_chans, m.num_classes) == (3, 5)
    x = torch.randn(2, 3, *size)
    y = m(x)
    assert y.shape == (2, 5, *size)
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.any()]
    assert not no_grad
    m.eval()
    with torch.no_grad():
        assert m(x[:1]).shape == (1, 5, *size)


@pytest.mark.parametrize("name", NAMES)
def test_spec_round_trip(name):
    s = SEGMENTERS.spec({"class_path": name, "init_args": TINY[name]})
    assert s["class_path"] == SEGMENTERS.path(SEGMENTERS.get(name))
    assert yaml.safe_load(yaml.safe_dump(s)) == s  # plain data, nested specs included
    assert SEGMENTERS.spec(s) == s
    assert SEGMENTERS.spec(functools.partial(SEGMENTERS.get(name), **TINY[name])) == s


def test_nested_factory_becomes_a_plain_spec():
    enc = functools.partial(resnet_small, channels=(4, 8, 8, 8))
    s = SEGMENTERS.spec(functools.partial(fcn8s, encoder=enc))
    assert s == {
        "class_path": "visrep.models.segmentation.fcn.fcn8s",
        "init_args": {
            "encoder": {
                "class_path": "visrep.models.backbones.resnet_small.resnet_small",
                "init_args": {"channels": [4, 8, 8, 8]},
            }
        },
    }
    m = SEGMENTERS.build(s, 1, 2)
    assert type(m.encoder) is resnet_small and m(torch.zeros(2, 1, 9, 9)).shape == (2, 2, 9, 9)


def test_bad_nested_specs_raise():
    with pytest.raises(ConfigError, match="unknown backbone 'resnet_smal'"):
        SEGMENTERS.spec({"class_path": "fcn8s", "init_args": {"encoder": "resnet_smal"}})
    with pytest.raises(ConfigError, match="has no option"):
        SEGMENTERS.spec(
            {"class_path": "fcn8s", "init_args": {"encoder": {"class_path": "resnet_small",
                                                              "init_args": {"width": 3}}}}
        )  # fmt: skip
    with pytest.raises(ConfigError, match="not a registered backbone"):
        SEGMENTERS.build(
            {"class_path": "fcn8s", "init_args": {"encoder": {"class_path": "os.system"}}}, 1, 2
        )
    with pytest.raises(ConfigError, match="unknown segmentation model 'fcn9s'"):
        SEGMENTERS.get("fcn9s")


# -- jsonargparse: what a task's `model: SegmenterFactory` parses ----------------------------------
def _task(model: SegmenterFactory = unet) -> SegmenterFactory:
    return model


def _parser() -> jsonargparse.ArgumentParser:
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_function_arguments(_task, "model")
    return parser


def test_jsonargparse_nested_encoder_spec():
    spec = {
        "class_path": "fcn8s",
        "init_args": {
            "encoder": {"class_path": "resnet_small", "init_args": {"channels": [4, 8, 8, 8]}}
        },
    }
    parser = _parser()
    cfg = parser.parse_args(["--model.model", json.dumps(spec)])
    factory = parser.instantiate(cfg).model.model
    s = SEGMENTERS.spec(factory)
    assert s["class_path"] == "visrep.models.segmentation.fcn.fcn8s"
    enc = s["init_args"]["encoder"]
    assert enc["class_path"] == "visrep.models.backbones.resnet_small.resnet_small"
    assert enc["init_args"]["channels"] == [4, 8, 8, 8]
    assert yaml.safe_load(yaml.safe_dump(s)) == s
    for m in (factory(3, 4), SEGMENTERS.build(s, 3, 4)):
        assert type(m) is fcn8s and type(m.encoder) is resnet_small
        assert m(torch.zeros(2, 3, 15, 20)).shape == (2, 4, 15, 20)


@pytest.mark.parametrize("name", NAMES)
def test_jsonargparse_builds_every_segmenter_by_name(name):
    parser = _parser()
    argv = ["--model.model", name]
    for k, v in TINY[name].items():
        argv += [f"--model.model.{k}", json.dumps(v)]
    factory = parser.instantiate(parser.parse_args(argv)).model.model
    m = factory(1, 3)
    assert type(m) is SEGMENTERS.get(name)
    assert m(torch.zeros(2, 1, 16, 16)).shape == (2, 3, 16, 16)


def test_jsonargparse_cli_options_of_the_nested_encoder():
    parser = _parser()
    argv = ["--model.model", "fcn16s", "--model.model.encoder", "small_cnn"]
    cfg = parser.parse_args([*argv, "--model.model.encoder.channels", "[4,8]"])
    s = SEGMENTERS.spec(parser.instantiate(cfg).model.model)
    assert s["init_args"]["encoder"]["init_args"]["channels"] == [4, 8]


def test_jsonargparse_switching_models_keeps_a_valid_encoder():
    # jsonargparse carries the options two classes share (encoder, encoder_channels) over when
    # the class changes; both FCN and DeepLab default to encoder=None, their own DilatedCNN.
    parser = jsonargparse.ArgumentParser(exit_on_error=False)

    def task(model: SegmenterFactory = fcn8s) -> SegmenterFactory:
        return model

    parser.add_function_arguments(task, "model")
    argv = ["--model.model", "deeplab", "--model.model.encoder_channels", "[4,4,8,8]"]
    factory = parser.instantiate(parser.parse_args([*argv, "--model.model.aspp_channels", "4"]))
    m = factory.model.model(3, 2)
    assert type(m).__name__ == "deeplab" and type(m.encoder).__name__ == "DilatedCNN"


def test_segnet_runs_under_deterministic_algorithms():
    """Lightning's deterministic=True turns on torch.use_deterministic_algorithms, which refuses
    F.max_unpool2d; SegNet's unpooling is a scatter and still runs (and backpropagates)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        m = SEGMENTERS.build(
            {"class_path": "segnet_basic", "init_args": TINY["segnet_basic"]}, 3, 4
        )
        m(torch.randn(2, 3, 17, 9)).sum().backward()
    finally:
        torch.use_deterministic_algorithms(before)
