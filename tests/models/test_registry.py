"""The generic Registry: registration rules, lookups, the resolve allow-list, specs, jsonargparse."""

import functools
import sys

import jsonargparse
import pytest
import torch
import yaml

from visrep.errors import ConfigError
from visrep.models import BACKBONES, Backbone, BackboneFactory, Registry, list_backbones
from visrep.models.backbones.cnn import SmallCNN, small_cnn

OPTS: dict[str, dict] = {"timm": {"model_name": "test_efficientnet"}}


class Op(torch.nn.Module):
    """A base class for a registry of this test's own."""


def _ops() -> Registry:
    ops = Registry("op", Op, leading=("dim",))

    @ops.register
    class Scale(Op):
        def __init__(self, dim: int, factor: float = 2.0, bias: bool = False) -> None:
            super().__init__()
            self.dim, self.factor, self.bias = dim, factor, bias

    @ops.register
    class Shift(Op):
        def __init__(self, dim: int, *, by: float) -> None:
            super().__init__()
            self.by = by

    return ops


# -- registration ---------------------------------------------------------------------------------
def test_register_rules():
    ops = _ops()
    assert ops.names() == ["Scale", "Shift"]
    with pytest.raises(ValueError, match="registered twice"):

        @ops.register
        class Scale(Op):
            def __init__(self, dim: int) -> None:
                super().__init__()

    with pytest.raises(TypeError, match="must subclass Op"):
        ops.register(torch.nn.Linear)
    with pytest.raises(TypeError, match="must start with"):

        @ops.register
        class Wrong(Op):
            def __init__(self, size: int) -> None:
                super().__init__()

    with pytest.raises(TypeError, match="typed options only"):

        @ops.register
        class Tunnel(Op):
            def __init__(self, dim: int, **kwargs: object) -> None:
                super().__init__()


def test_create_checks_options():
    ops = _ops()
    assert ops.create("Scale", 4, factor=3.0).factor == 3.0
    assert list(ops.options("Scale")) == ["factor", "bias"]
    with pytest.raises(ConfigError, match=r"op 'Scale' has no option\(s\) fctor; accepted: factor"):
        ops.create("Scale", 4, fctor=3.0)
    with pytest.raises(ConfigError, match=r"op 'Shift' needs option\(s\) by"):
        ops.create("Shift", 4)
    with pytest.raises(ConfigError, match="unknown op 'Scal'; did you mean Scale"):
        ops.get("Scal")


# -- resolve: the allow-list of checkpoints --------------------------------------------------------
def test_resolve_accepts_registered_names_and_paths():
    cls = BACKBONES.get("small_cnn")
    assert cls is small_cnn
    assert BACKBONES.resolve("small_cnn") is cls
    assert BACKBONES.resolve("visrep.models.backbones.cnn.small_cnn") is cls
    assert BACKBONES.path(cls) == "visrep.models.backbones.cnn.small_cnn"


@pytest.mark.parametrize(
    "path",
    [
        "os.system",
        "subprocess.Popen",
        "builtins.eval",
        "torch.nn.Linear",
        "visrep.models.backbones.cnn.SmallCNN",  # an architecture class, not registered
        "visrep.models.backbones.cnn.small_cnn.__init__",
        "visrep_evil_module.small_cnn",  # a registered name in a module that is not visrep's
        "visrep_evil_module.X",
        "",
    ],
)
def test_resolve_refuses_everything_else_without_importing(path):
    before = set(sys.modules)
    with pytest.raises(ConfigError):
        BACKBONES.resolve(path)
    with pytest.raises(ConfigError):
        BACKBONES.build({"class_path": path, "init_args": {}}, 1, 2, None)
    assert "visrep_evil_module" not in sys.modules
    assert set(sys.modules) == before


def test_resolve_never_imports_the_named_module(tmp_path, monkeypatch):
    # A real, importable module with a side effect: resolving a path into it must not run it.
    (tmp_path / "visrep_evil_module.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(tmp_path / 'ran')!r}).touch()\n"
        "from visrep.models.backbones.cnn import small_cnn\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for path in ("visrep_evil_module.small_cnn", "visrep_evil_module.X"):
        with pytest.raises(ConfigError, match="not a registered backbone"):
            BACKBONES.resolve(path)
        with pytest.raises(ConfigError):
            BACKBONES.spec({"class_path": path})
    assert "visrep_evil_module" not in sys.modules
    assert not (tmp_path / "ran").exists()


# -- specs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list_backbones())
def test_spec_round_trip(name):
    opts = OPTS.get(name, {})
    cls = BACKBONES.get(name)
    s = BACKBONES.spec({"class_path": name, "init_args": opts})
    assert s == {"class_path": BACKBONES.path(cls), "init_args": opts}
    assert BACKBONES.spec(s) == s  # normalised
    assert yaml.safe_load(yaml.safe_dump(s)) == s  # plain values only
    assert BACKBONES.spec(functools.partial(cls, **opts)) == s
    if not opts:
        assert BACKBONES.spec(name) == BACKBONES.spec(cls) == s
    m = BACKBONES.build(s, 1, 3, (8, 8))
    assert type(m) is cls and m.num_classes == 3


def test_spec_normalises_values_and_names():
    s = BACKBONES.spec(functools.partial(small_cnn, channels=(4, 8)))
    assert s["init_args"] == {"channels": [4, 8]}
    assert BACKBONES.spec("timm/convnext_atto") == {
        "class_path": "visrep.models.backbones.timm_model.timm",
        "init_args": {"model_name": "convnext_atto"},
    }
    m = BACKBONES.build(s, 1, 2, None)
    assert [d["num_chs"] for d in m.feature_info] == [4, 8]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"class_path": "mlp", "init_args": {"widht": 3}}, r"no option\(s\) widht"),
        ({"class_path": "mlp", "options": {}}, "class_path and init_args"),
        ({"init_args": {}}, "class_path and init_args"),
        ({"class_path": "mlp", "init_args": [1]}, "init_args must be a mapping"),
        (SmallCNN, "not a registered backbone"),
        (functools.partial(small_cnn, 3), "keyword only"),
        (functools.partial(SmallCNN), "not a registered backbone"),
        (functools.partial(print, "x"), "not a partial of a registered backbone"),
        (42, "must be a name"),
    ],
)
def test_bad_specs_raise(obj, message):
    with pytest.raises(ConfigError, match=message):
        BACKBONES.spec(obj)


# -- jsonargparse: what the task layer's `backbone: BackboneFactory` parses --------------------------
def _task(backbone: BackboneFactory = small_cnn) -> BackboneFactory:
    return backbone


def _parser() -> jsonargparse.ArgumentParser:
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_function_arguments(_task, "model")
    return parser


@pytest.mark.parametrize("name", list_backbones())
def test_jsonargparse_builds_every_backbone_by_name(name):
    parser = _parser()
    argv = ["--model.backbone", name]
    for k, v in OPTS.get(name, {}).items():
        argv += [f"--model.backbone.{k}", v]
    cfg = parser.parse_args(argv)
    assert cfg.model.backbone.class_path == BACKBONES.path(BACKBONES.get(name))
    factory = parser.instantiate(cfg).model.backbone
    s = BACKBONES.spec(factory)
    assert s["class_path"] == cfg.model.backbone.class_path
    m = BACKBONES.build(s, 1, 3, (8, 8))
    assert isinstance(m, Backbone) and type(m).__name__ == name


def test_jsonargparse_typed_options(capsys):
    parser = _parser()
    argv = ["--model.backbone", "naisnet", "--model.backbone.channels", "[8,16]"]
    cfg = parser.parse_args([*argv, "--model.backbone.tol", "null"])
    s = BACKBONES.spec(parser.instantiate(cfg).model.backbone)
    assert s["init_args"]["channels"] == [8, 16] and s["init_args"]["tol"] is None
    with pytest.raises(jsonargparse.ArgumentError):
        parser.parse_args(["--model.backbone", "naisnet", "--model.backbone.steps", "many"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--model.backbone.help", "naisnet"])
    out = capsys.readouterr().out
    assert "--model.backbone.channels" in out and "type: tuple[int, ...]" in out
