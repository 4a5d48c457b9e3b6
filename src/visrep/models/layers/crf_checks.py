"""Checks of the dense CRF's options and inputs (:mod:`visrep.models.layers.crf`), shared by the
functions, the module and the task options that configure them."""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor

from visrep.errors import ConfigError, ShapeError

__all__ = ["Normalize", "check_crf_options", "check_inputs"]

Normalize = Literal["none", "after", "symmetric"]
_NORMALIZE = ("none", "after", "symmetric")


def check_crf_options(
    fname: str,
    iterations: int,
    theta_alpha: float,
    theta_beta: float,
    theta_gamma: float,
    window: int | None,
    normalize: object,
) -> None:
    """Refuse CRF options a user could mistype (``ConfigError`` naming ``fname`` and the option)."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ConfigError(f"{fname}: iterations must be an int >= 0, got {iterations!r}")
    for name, value in (
        ("theta_alpha", theta_alpha),
        ("theta_beta", theta_beta),
        ("theta_gamma", theta_gamma),
    ):
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{fname}: {name} must be a finite number > 0, got {value!r}")
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, int) or window < 1
    ):
        raise ConfigError(f"{fname}: window must be an int >= 1 or None, got {window!r}")
    if not isinstance(normalize, str) or normalize not in _NORMALIZE:
        raise ConfigError(
            f"{fname}: normalize must be one of {', '.join(_NORMALIZE)}, got {normalize!r}"
        )


def check_inputs(
    unary: Tensor,
    image: Tensor,
    w_appearance: float | Tensor,
    w_smoothness: float | Tensor,
    compatibility: Tensor | None,
    fname: str,
) -> None:
    """Refuse mistyped CRF inputs (``ShapeError``/``ConfigError`` naming ``fname``)."""
    if not isinstance(unary, Tensor) or unary.dim() != 4 or not unary.is_floating_point():
        got = tuple(unary.shape) if isinstance(unary, Tensor) else type(unary).__name__
        raise ShapeError(f"{fname}: unary must be a float tensor (B, L, H, W), got {got}")
    if not isinstance(image, Tensor) or image.dim() != 4 or not image.is_floating_point():
        got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ShapeError(f"{fname}: image must be a float tensor (B, C, H, W), got {got}")
    b, n_labels, h, w = unary.shape
    if image.shape[0] != b or image.shape[2:] != unary.shape[2:]:
        raise ShapeError(
            f"{fname}: image has shape {tuple(image.shape)}, expected ({b}, C, {h}, {w}) "
            f"to match unary {tuple(unary.shape)}"
        )
    if n_labels < 1 or h < 1 or w < 1 or b < 1:
        raise ShapeError(f"{fname}: unary has an empty dimension: {tuple(unary.shape)}")
    for name, value in (("w_appearance", w_appearance), ("w_smoothness", w_smoothness)):
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise ShapeError(f"{fname}: {name} must be a scalar, got {tuple(value.shape)}")
        elif not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"{fname}: {name} must be a finite number, got {value!r}")
    if compatibility is not None and (
        not isinstance(compatibility, Tensor) or compatibility.shape != (n_labels, n_labels)
    ):
        got = tuple(compatibility.shape) if isinstance(compatibility, Tensor) else compatibility
        raise ShapeError(
            f"{fname}: compatibility must be ({n_labels}, {n_labels}) for {n_labels} labels, "
            f"got {got}"
        )
