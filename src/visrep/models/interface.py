"""The backbone protocol g_phi, as a base class: timm's model interface (seed 000: ``z = g_phi(x)``).

Every backbone, visrep's own and timm's, answers the same calls, so heads, Grad-CAM, t-SNE,
Siamese towers and dense necks work with any of them:

- constructor ``__init__(in_chans, num_classes, img_size=None, <own typed keyword options>)``:
  the three leading arguments come from the data, the rest is the backbone's config (what
  ``--model.backbone.OPTION`` sets); :data:`BackboneFactory` is the type of such a constructor;
- ``num_features`` (channels of ``forward_features``), ``num_classes`` and ``feature_info``;
- ``forward_features(x) -> z`` (unpooled), ``forward_head(z, pre_logits=False)``, ``forward(x)``,
  ``reset_classifier(n)`` and ``forward_intermediates(x, indices=None, ...)``.

``feature_info`` is timm's list with one dict per feature level: ``num_chs`` (channels),
``reduction`` (the level's stride with respect to the input) and ``module`` (the name of the
submodule whose output is the level). For an ``H x W`` input, level ``i`` is a
``(B, num_chs, ceil(H / reduction), ceil(W / reduction))`` map: the sizes are rounded up, as
ceil-mode pooling and padded stride-2 convolutions round them (exact when the reduction divides
the input size). Backbones without a spatial layout (MLPs, fully connected NAIS-Nets) state the
reduction ``max(H, W)`` of the input size they are built for and return ``(B, C, 1, 1)`` maps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import torch  # noqa: F401  (doctest)
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.heads.classifier import ClassifierHead

__all__ = ["Backbone", "BackboneFactory", "take_indices"]


def take_indices(num_levels: int, indices: int | Sequence[int] | None) -> list[int]:
    """The feature levels ``indices`` selects, as timm reads it, in increasing order.

    ``None`` selects every level, an int ``n`` the last ``n``, a sequence those levels
    (negative ones count from the end).

    >>> take_indices(4, None), take_indices(4, 2), take_indices(4, [0, -1])
    ([0, 1, 2, 3], [2, 3], [0, 3])
    """
    if indices is None:
        return list(range(num_levels))
    if isinstance(indices, int):
        if not 0 < indices <= num_levels:
            raise ConfigError(f"indices: last-n must be in 1..{num_levels}, got {indices}")
        return list(range(num_levels - indices, num_levels))
    out = []
    for i in indices:
        j = i + num_levels if i < 0 else i
        if not 0 <= j < num_levels:
            raise ConfigError(f"indices: level {i} is out of range for {num_levels} levels")
        out.append(j)
    return sorted(set(out))


def _as_map(t: Tensor) -> Tensor:
    # (B, C) features of non-spatial levels become 1x1 maps.
    return t[:, :, None, None] if t.dim() == 2 else t


class Backbone(nn.Module, ABC):
    """Base class of every registered backbone (timm's model interface).

    Subclasses define ``__init__(in_chans, num_classes, img_size=None, <typed options>)``,
    :meth:`forward_features`, ``num_features``, ``num_classes`` and ``feature_info``. The other
    methods have defaults here: a classifier at ``self.head`` (a
    :class:`~visrep.models.heads.ClassifierHead`), and :meth:`forward_intermediates` reading
    the outputs of the ``feature_info`` modules. Backbones built on a timm model keep timm's
    own methods.
    """

    num_features: int
    num_classes: int
    feature_info: list[dict[str, Any]]
    head: ClassifierHead  # used by the default head methods; timm-based backbones have their own

    @abstractmethod
    def forward_features(self, x: Tensor) -> Tensor:
        """Unpooled features ``z = g_phi(x)``, ``(B, num_features, H', W')`` for CNNs."""

    def set_classifier(
        self,
        num_features: int,
        num_classes: int,
        pool: Literal["avg", "max"] = "avg",
        dropout: float = 0.0,
        pretrained_path: str | None = None,
    ) -> None:
        """Finish ``__init__``: the pooled classifier head over ``num_features`` channels, then
        the optional pretrained weights (a file or a visrep run; see
        :func:`visrep.models.pretrained.load_pretrained`), once every module exists."""
        from visrep.models.pretrained import load_pretrained  # imports Lightning: only when used

        self.num_features = num_features
        self.num_classes = num_classes
        self.head = ClassifierHead(num_features, num_classes, pool=pool, dropout=dropout)
        if pretrained_path:
            load_pretrained(self, pretrained_path)

    def forward_head(self, z: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool and classify ``z``; ``pre_logits=True`` returns the pooled ``(B, num_features)``."""
        return self.head(z, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh one with ``num_classes`` outputs (0: none)."""
        self.num_classes = num_classes
        self.head.reset(num_classes)

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        intermediates_only: bool = True,
        output_fmt: str = "NCHW",
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """The feature maps of the ``feature_info`` levels that ``indices`` selects.

        Args:
            x: input ``(B, C, H, W)``.
            indices: ``None`` for every level, an int ``n`` for the last ``n``, or a list of
                level indices (timm's convention).
            intermediates_only: return only the maps; ``False`` returns
                ``(forward_features(x), maps)``. Unlike timm, only the maps by default.
            output_fmt: ``"NCHW"`` (the only layout).

        Returns:
            ``[(B, num_chs_i, ceil(H / reduction_i), ceil(W / reduction_i)), ...]``, in level
            order; non-spatial levels as ``(B, C, 1, 1)``.

        >>> from visrep.models import create_backbone
        >>> m = create_backbone("small_cnn", in_chans=1, channels=(4, 8))
        >>> [tuple(f.shape) for f in m.forward_intermediates(torch.zeros(2, 1, 8, 8))]
        [(2, 4, 4, 4), (2, 8, 2, 2)]
        """
        if output_fmt != "NCHW":
            raise ConfigError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take = take_indices(len(self.feature_info), indices)
        outputs: dict[int, Tensor] = {}

        def record(i: int, module: nn.Module, args: Any, out: Tensor) -> None:
            outputs[i] = out

        hooks = [
            self.get_submodule(self.feature_info[i]["module"]).register_forward_hook(
                partial(record, i)
            )
            for i in take
        ]
        try:
            final = self.forward_features(x)
        finally:
            for h in hooks:
                h.remove()
        maps = [_as_map(outputs[i]) for i in take]
        return maps if intermediates_only else (final, maps)


# The type of a backbone constructor with its options bound: called with (in_chans, num_classes,
# img_size) once the data is known. jsonargparse reads it as "any subclass of Backbone".
BackboneFactory = Callable[[int, int, tuple[int, int] | None], Backbone]
