"""Any timm model as a visrep backbone: ``create_backbone("timm/convnext_atto", ...)``.

timm models already speak visrep's backbone interface (timm defined it): ``forward_features``,
``forward_head``, ``reset_classifier``, ``num_features`` and, for most, ``feature_info`` and
``forward_intermediates``. Weights are never downloaded (``pretrained=False``); start from local
weights with ``pretrained_path``. Only timm's own registry names are accepted (no ``hf-hub:``
or ``local-dir:`` sources, which would fetch or read model files).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from timm import create_model, is_model, list_models
from torch import Tensor

from visrep.errors import ConfigError
from visrep.models.interface import Backbone, take_indices
from visrep.models.pretrained import load_matching, read_backbone_state
from visrep.models.registry import BACKBONES

__all__ = ["TimmIntermediates", "timm"]


class TimmIntermediates:
    """``forward_intermediates`` of a timm model class with visrep's defaults.

    A mixin placed before the timm class: only the maps by default (timm returns
    ``(features, maps)``), and a ``ConfigError`` for a bad level selection.
    """

    feature_info: list[dict[str, Any]]

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        intermediates_only: bool = True,
        **kwargs: Any,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        take_indices(len(self.feature_info), indices)  # validates
        return super().forward_intermediates(  # type: ignore[misc]
            x, indices=indices, intermediates_only=intermediates_only, **kwargs
        )


def _timm_model(model_name: str, img_size: tuple[int, int] | None, **kwargs: Any) -> Any:
    if ":" in model_name or not is_model(model_name):
        close = difflib.get_close_matches(model_name, list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else " (see timm.list_models())"
        raise ConfigError(f"unknown timm model {model_name!r}{hint}")
    try:
        if img_size is not None and "img_size" not in kwargs:
            try:  # size-dependent models (ViT, Swin, ...) take the input size
                return create_model(model_name, pretrained=False, img_size=img_size, **kwargs)
            except TypeError as e:
                if "img_size" not in str(e):
                    raise
        return create_model(model_name, pretrained=False, **kwargs)
    except TypeError as e:  # an option the model does not take (model_args, drop_path_rate)
        raise ConfigError(f"timm model {model_name!r}: {e}") from e


@BACKBONES.register
class timm(Backbone):
    """Any model of timm's registry, by name (``--model.backbone timm
    --model.backbone.model_name convnext_atto``), wrapped as ``self.model``.

    Args:
        in_chans: input channels.
        num_classes: classifier outputs (0: none).
        img_size: passed to timm for models that take it (ViT-style models need it).
        model_name: a name of ``timm.list_models()`` (default ``resnet18``, with timm's
            ImageNet stem; the registered ``resnet18`` adapts its stem to small images).
        model_args: further keyword arguments of the timm model's constructor.
        drop_rate: classifier dropout (None: timm's default).
        drop_path_rate: stochastic depth rate (None: timm's default).
        pretrained_path: local weights: a state dict of the timm model or of this wrapper, a
            visrep ``.ckpt`` or run directory (see :mod:`visrep.models.pretrained`).
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        img_size: int | tuple[int, int] | None = None,
        model_name: str = "resnet18",
        model_args: dict[str, Any] | None = None,
        drop_rate: float | None = None,
        drop_path_rate: float | None = None,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        hw = (img_size, img_size) if isinstance(img_size, int) else img_size
        self.model_name = model_name
        self.model = _timm_model(
            model_name,
            tuple(hw) if hw is not None else None,
            in_chans=in_chans,
            num_classes=num_classes,
            drop_rate=drop_rate,  # None: timm drops the argument
            drop_path_rate=drop_path_rate,
            **(model_args or {}),
        )
        self.num_features = self.model.num_features
        self.num_classes = num_classes
        info = getattr(self.model, "feature_info", None)
        self.feature_info = (
            [{**d, "module": f"model.{d['module']}"} for d in info]
            if isinstance(info, list)
            else []
        )
        if pretrained_path:
            state = read_backbone_state(pretrained_path)
            wrapped = any(k.startswith("model.") for k in state)
            load_matching(self if wrapped else self.model, state, pretrained_path)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.model.forward_features(x)

    def forward_head(self, z: Tensor, pre_logits: bool = False) -> Tensor:
        return self.model.forward_head(z, pre_logits=pre_logits)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.model.reset_classifier(num_classes)

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        intermediates_only: bool = True,
        **kwargs: Any,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's ``forward_intermediates`` of the model, or its ``feature_info`` modules' outputs."""
        if not self.feature_info:
            raise ConfigError(
                f"timm model {self.model_name!r} has no feature_info: no intermediate features"
            )
        take_indices(len(self.feature_info), indices)  # validates
        if hasattr(self.model, "forward_intermediates"):
            return self.model.forward_intermediates(
                x, indices=indices, intermediates_only=intermediates_only, **kwargs
            )
        return super().forward_intermediates(x, indices, intermediates_only, **kwargs)
