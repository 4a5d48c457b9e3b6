"""Fold inference-mode batch normalisation into the preceding convolution or linear layer.

At test time BN is the fixed affine map ``s = gamma (a - mu) / sqrt(v + eps) + beta`` (seed 002,
"Batch normalization at test time"; Ioffe & Szegedy 2015), so a Conv/Linear ``a = W x + b``
followed by BN equals one layer with

    ``W' = W gamma / sqrt(v + eps)``  (per output channel),
    ``b' = (b - mu) gamma / sqrt(v + eps) + beta``.

Which BN follows which layer is read from the data flow, not from attribute names:

1. ``torch.fx`` symbolic tracing of the model gives the graph; a BN node whose input is a
   Conv/Linear node used by nothing else is a pair (exact, also for non-``Sequential`` code).
2. Code that fx cannot trace (data-dependent control flow, e.g. ``if z.dim() == 4``) is handled
   module by module: tracing is retried on each child, recursively; where a module still fails,
   its direct children are paired heuristically: neighbours in an ``nn.Sequential`` and the
   sibling attribute pairs ``conv``/``bn``, ``convN``/``bnN`` (timm's and torchvision's ResNet
   blocks), which assumes that module's forward applies ``bnN(convN(x))`` directly.

Only plain ``nn.Conv1d/2d/3d``, ``nn.Linear`` and ``nn.BatchNorm1d/2d/3d``/``SyncBatchNorm`` with
running statistics are folded (subclasses that override ``forward``, e.g. weight-standardised
convolutions or BN+activation layers, are left alone, as are transposed convolutions).
"""

from __future__ import annotations

import copy
import itertools
import re

import torch
import torch.fx as fx
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _is_layer(m: nn.Module) -> bool:
    return isinstance(m, _LAYERS) and any(type(m).forward is c.forward for c in _LAYERS)


def _is_bn(m: nn.Module) -> bool:
    return (
        isinstance(m, _BNS)
        and any(type(m).forward is c.forward for c in _BNS)
        and m.running_mean is not None
        and m.running_var is not None
    )


def _compatible(layer: nn.Module, bn: nn.Module) -> bool:
    out = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    return _is_layer(layer) and _is_bn(bn) and bn.num_features == out


class _Tracer(fx.Tracer):
    """Keeps the foldable layers as ``call_module`` nodes, traces through everything else."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _is_layer(m) or _is_bn(m) or super().is_leaf_module(m, qualname)


def _graph_pairs(graph: fx.Graph, root: nn.Module) -> list[tuple[str, str]]:
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not _is_bn(root.get_submodule(node.target)):
            continue
        src = node.args[0] if node.args else None
        if (
            isinstance(src, fx.Node)
            and src.op == "call_module"
            and len(src.users) == 1
            and len(node.args) == 1
            and not node.kwargs
            and calls[src.target] == 1
            and calls[node.target] == 1
            and _compatible(root.get_submodule(src.target), root.get_submodule(node.target))
        ):
            pairs.append((src.target, node.target))
    return pairs


def _attribute_pairs(module: nn.Module) -> list[tuple[str, str]]:
    children = dict(module.named_children())
    pairs = []
    if isinstance(module, nn.Sequential):
        names = list(children)
        pairs += list(itertools.pairwise(names))
    else:
        for name in children:
            match = re.fullmatch(r"(.*)conv(\d*)", name)
            if match:
                pairs += [(name, f"{match[1]}{bn}{match[2]}") for bn in ("bn", "norm")]
    return [(a, b) for a, b in pairs if b in children and _compatible(children[a], children[b])]


def find_conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Qualified names ``(layer, bn)`` of every foldable Conv/Linear -> BatchNorm pair.

    Tracing first, module-wise fallback after (see the module docstring).

    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    >>> find_conv_bn_pairs(net)
    [('0', '1')]
    """
    return _find(model, "")


def _find(module: nn.Module, prefix: str) -> list[tuple[str, str]]:
    try:
        graph = _Tracer().trace(module)
    except Exception:  # fx raises many types (TraceError, TypeError, AttributeError ...)
        graph = None
    if graph is not None:
        return [(prefix + a, prefix + b) for a, b in _graph_pairs(graph, module)]
    pairs = [(prefix + a, prefix + b) for a, b in _attribute_pairs(module)]
    for name, child in module.named_children():
        if any(True for _ in child.children()):
            pairs += _find(child, f"{prefix}{name}.")
    return pairs


@torch.no_grad()
def fuse_conv_bn_weights(layer: nn.Module, bn: _BatchNorm) -> None:
    """Fold ``bn`` into ``layer`` in place (seed 002's test-time BN; computed in float64).

    Shape: the scale ``gamma / sqrt(v + eps)`` multiplies output channel ``k`` of the weight,
    i.e. dim 0 of ``(C_out, C_in/g, *k)`` conv weights and ``(out, in)`` linear weights.
    """
    w = layer.weight
    std = torch.sqrt(bn.running_var.double() + bn.eps)
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(std)
    w.copy_((w.double() * scale.reshape(-1, *([1] * (w.dim() - 1)))).to(w.dtype))
    new_bias = ((bias - bn.running_mean.double()) * scale + beta).to(w.dtype)
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias, requires_grad=w.requires_grad)
    else:
        layer.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy of ``model`` with every Conv/Linear -> BN pair fused.

    Each folded BN is replaced by ``nn.Identity`` so the model keeps its class, attributes and
    interface (``forward_features`` ...); ``model`` itself is not modified. BNs without a
    preceding foldable layer stay (in eval mode).

    Args:
        model: any ``nn.Module``.

    Returns:
        The folded copy, in eval mode; equal outputs up to float rounding.

    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()
    >>> _ = net[1].running_mean.normal_(), net[1].running_var.uniform_(0.5, 2)
    >>> folded = fold_batchnorm(net)
    >>> folded
    Sequential(
      (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1))
      (1): Identity()
      (2): ReLU()
    )
    >>> x = torch.randn(2, 3, 8, 8)
    >>> torch.allclose(folded(x), net(x), atol=1e-5)
    True
    """
    folded = copy.deepcopy(model).eval()
    for layer_name, bn_name in find_conv_bn_pairs(folded):
        fuse_conv_bn_weights(folded.get_submodule(layer_name), folded.get_submodule(bn_name))
        parent, _, attr = bn_name.rpartition(".")
        setattr(folded.get_submodule(parent), attr, nn.Identity())
    return folded
