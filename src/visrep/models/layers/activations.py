"""Activation functions by name (seed 002: ReLU, leaky ReLU, tanh, sigmoid ...)."""

from __future__ import annotations

from torch import nn

from visrep.errors import ConfigError

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


def get_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (one of relu, leaky_relu, tanh, sigmoid, gelu, elu, silu)."""
    if name not in _ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; expected one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()
