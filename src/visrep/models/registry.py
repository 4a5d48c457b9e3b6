"""The backbone registry: ``create_backbone(name, in_chans=..., num_classes=...)``.

:data:`BACKBONES` is a :class:`NestedRegistry` of :class:`~visrep.models.interface.Backbone`
subclasses, whose constructors start with ``in_chans, num_classes, img_size``; a backbone that
wraps another (``stn``) takes it as a nested backbone spec.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

import torch  # noqa: F401  (doctest)

from visrep.errors import ConfigError
from visrep.models.interface import Backbone, BackboneFactory
from visrep.utils.registry import Registry

T = TypeVar("T")

__all__ = [
    "BACKBONES",
    "NestedRegistry",
    "Registry",
    "backbone_options",
    "build_encoder",
    "create_backbone",
    "encoder_class",
    "list_backbones",
]


def _load_backbones() -> None:
    # Importing the package registers visrep's own backbones; done lazily to avoid import cycles.
    import visrep.models.backbones  # noqa: F401


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`, sorted."""
    return BACKBONES.names()


def backbone_options(name: str) -> dict[str, inspect.Parameter]:
    """The backbone-specific keyword options of ``name`` (beyond in_chans/num_classes/img_size)."""
    return BACKBONES.options(name)


def create_backbone(
    name: str,
    *,
    in_chans: int = 3,
    num_classes: int = 10,
    img_size: int | tuple[int, int] | None = None,
    **options: Any,
) -> Backbone:
    """Build the backbone registered as ``name``, or any timm model as ``"timm/<timm name>"``.

    The result is a :class:`~visrep.models.interface.Backbone`: ``forward_features(x)``,
    ``forward_head(z, pre_logits=False)``, ``num_features``, ``reset_classifier(n)``,
    ``feature_info`` and ``forward_intermediates(x)`` (timm's interface).

    Args:
        name: registered name (see :func:`list_backbones`) or ``"timm/<timm model name>"``.
        in_chans: input channels.
        num_classes: classifier outputs (0 for no classifier: ``forward`` returns features).
        img_size: input size, needed by size-dependent models (MLP, ViT).
        **options: backbone-specific options, checked against the class's signature.

    >>> m = create_backbone("mlp", in_chans=1, num_classes=10, img_size=8, width=32)
    >>> m(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    if isinstance(name, str) and not {".", "/"} & set(name) and name not in BACKBONES.names():
        from timm import is_model  # only for the hint

        if is_model(name):
            raise ConfigError(
                f"unknown backbone {name!r}; timm's model of that name is 'timm/{name}'"
            )
    return BACKBONES.create(name, in_chans, num_classes, img_size, **options)


class NestedRegistry(Registry[T]):
    """A :class:`~visrep.utils.registry.Registry` whose specs may nest backbone specs.

    The generic registry keeps option values as they are (plain data); a model's ``encoder``
    or ``backbone`` option is a backbone factory, so :meth:`spec` replaces the values of options
    typed :data:`~visrep.models.interface.BackboneFactory` (a backbone name, spec, class or
    partial) by ``BACKBONES.spec(value)`` (validated, plain) and :meth:`build` replaces a nested
    ``{"class_path", "init_args"}`` backbone spec by a partial of the registered backbone, the
    same factory jsonargparse would have built.
    """

    def spec(self, obj: Any) -> dict[str, Any]:
        if isinstance(obj, functools.partial):
            cls = self._from_partial(obj)
            nested = self._nested(cls, obj.keywords)
            obj = functools.partial(obj.func, *obj.args, **nested)
        elif (
            isinstance(obj, Mapping)
            and "class_path" in obj
            and isinstance(obj.get("init_args"), Mapping)
        ):
            cls, _ = self._lookup(obj.get("class_path"))
            obj = {**obj, "init_args": self._nested(cls, obj["init_args"])}
        return super().spec(obj)

    def _nested(self, cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
        # Options typed BackboneFactory (annotations are strings here: postponed evaluation).
        factories = {
            n for n, p in self._options(cls).items() if "BackboneFactory" in str(p.annotation)
        }
        return {
            k: BACKBONES.spec(v) if k in factories and v is not None else v
            for k, v in options.items()
        }

    def build(self, spec: Any, *leading: Any) -> T:
        s = self.spec(spec)
        args: dict[str, Any] = {}
        for k, v in s["init_args"].items():
            if isinstance(v, Mapping) and "class_path" in v:
                v = functools.partial(BACKBONES.resolve(v["class_path"]), **v["init_args"])
            args[k] = v
        return self.resolve(s["class_path"])(*leading, **args)


BACKBONES: NestedRegistry[Backbone] = NestedRegistry(
    "backbone",
    Backbone,
    leading=("in_chans", "num_classes", "img_size"),
    loader=_load_backbones,
    name_options={"timm": "model_name"},
)


def encoder_class(factory: Any) -> tuple[type, dict[str, Any]]:
    """The backbone class and keyword options of an encoder factory (a class or a partial)."""
    if isinstance(factory, type):
        return factory, {}
    if isinstance(factory, functools.partial):
        classes = [a for a in (factory.func, *factory.args) if isinstance(a, type)]
        if len(classes) == 1:
            return classes[0], dict(factory.keywords)
    raise ConfigError(
        f"encoder must be a backbone class or a partial of one, got {type(factory).__name__}"
    )


def build_encoder(
    factory: BackboneFactory, in_chans: int, pretrained_path: str | None = None
) -> Backbone:
    """The encoder ``factory(in_chans, 0, None)`` (no classifier), with pretrained weights.

    ``pretrained_path``: a state dict of the backbone or a visrep run / ``.ckpt`` whose
    ``net.backbone.`` tensors are loaded (see :func:`visrep.models.pretrained.load_pretrained`).
    """
    enc = factory(in_chans, 0, None)
    if not isinstance(enc, Backbone):
        raise ConfigError(f"encoder must build a Backbone, got {type(enc).__name__}")
    if not getattr(enc, "feature_info", None):
        raise ConfigError(f"encoder {type(enc).__name__} has no feature_info: no feature levels")
    if pretrained_path:
        from visrep.models.pretrained import load_pretrained  # Lightning only when used

        load_pretrained(enc, pretrained_path)
    return enc
