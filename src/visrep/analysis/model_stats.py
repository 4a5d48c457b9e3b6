"""Per-layer statistics of a model: output shape, receptive field, parameters, MACs, FLOPs, memory.

One forward pass in eval mode under ``torch.no_grad`` with forward hooks on every module and a
``TorchFunctionMode`` that sees the functional ops between them (seed 002; receptive fields after
Araujo et al. 2019). Counts are for the whole batch given.

Conventions:
    * MACs are multiply-accumulates of matmul-like work: convolutions (``C_out/g`` or ``C_in/g``
      times ``prod(k)`` per output or, transposed, per input value), linear layers, the two
      attention products ``QK^T`` and ``AV`` (``nn.MultiheadAttention``, timm's ``Attention`` and
      any functional ``matmul``/``bmm``/``einsum``/``scaled_dot_product_attention`` inside a
      module), RNN/LSTM/GRU gate matmuls, plus the per-element scale-and-shift of normalisation
      layers (1 MAC/element; eval-mode BatchNorm is only that, its statistics being constants).
    * FLOPs are ``2 * MACs`` (seed 002: one multiplication and one addition; the bias is the last
      accumulation) plus non-MAC work: 3 FLOPs/element for LayerNorm/GroupNorm/InstanceNorm
      statistics (so 5 with the affine, fvcore's estimate), ``prod(kernel)`` per pooled output,
      one per input element for adaptive pooling and one per element for activation layers.
      Softmax and the scale inside attention, RNN gate nonlinearities, residual additions and
      other functional element-wise ops are not counted (lower order than the matmuls).
    * Parameters: each module's own parameters (``nn.MultiheadAttention``: all of them), each
      shared tensor once; parameters of containers (ViT's ``cls_token``, ``pos_embed``) appear on
      the container's row.
    * Activation memory: bytes of the tensors a leaf module returns that do not alias its
      inputs (in-place and view outputs count 0); a container's row counts only the outputs of
      the functional matmuls it runs itself (e.g. the attention matrix). The input is excluded.
    * Receptive field (size, jump, start per spatial dimension, see
      :class:`~visrep.analysis.arithmetic.ReceptiveField`): propagated through conv/pool layers by
      the standard recurrence; element-wise ops that combine tensors (residual additions, ``cat``)
      take the union of their inputs' fields, i.e. the *maximum over branches*, which is exact
      for ResNets where the shortcut's field lies inside the main path's. It becomes ``"global"``
      after global/adaptive-to-1 pooling, reductions over positions, attention, RNNs, or a
      Linear layer on a flattened ``(B, F)`` map; ``None`` where untracked (non-uniform adaptive
      pooling). Reshapes keep the per-element field (ViT tokens keep the patch's field until the
      first attention).
"""

from __future__ import annotations

import csv
import io
import json
import math
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.nn.modules.pooling import (
    _AdaptiveAvgPoolNd,
    _AdaptiveMaxPoolNd,
    _AvgPoolNd,
    _MaxPoolNd,
)
from torch.overrides import TorchFunctionMode

from visrep.analysis.arithmetic import LayerSpec, ReceptiveField, receptive_field_step
from visrep.errors import ShapeError

GLOBAL = "global"
RF = tuple[ReceptiveField, ...] | str | None

_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus,
    nn.Softmax, nn.LogSoftmax,
)  # fmt: skip
_NORMS = (nn.LayerNorm, nn.GroupNorm, _InstanceNorm, nn.RMSNorm)
_POOLS = (_MaxPoolNd, _AvgPoolNd)
_ADAPTIVE = (_AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd)
# Modules counted by a rule below; functional ops inside them are not counted again.
_RULED = (nn.Linear, nn.Bilinear, _ConvNd, _BatchNorm, nn.MultiheadAttention, nn.RNNBase)
_RULED += _NORMS + _POOLS + _ADAPTIVE + _ACTIVATIONS
_MATMULS = {"matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "einsum", "baddbmm", "addmm"}
_COUNTED = _MATMULS | {"linear", "scaled_dot_product_attention"}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "norm", "logsumexp"}


@dataclass
class LayerStats:
    """One row: a module call (leaf, ruled module, or container with its own parameters/ops)."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    rf_size: tuple[float, ...] | str | None
    rf_jump: tuple[float, ...] | None
    rf_start: tuple[float, ...] | None
    params: int
    macs: int
    flops: int
    activation_bytes: int
    leaf: bool = field(default=True, repr=False)


@dataclass
class ModelStats:
    """Rows of :class:`LayerStats` in call order and the totals; renderers to text formats."""

    rows: list[LayerStats]
    input_shape: tuple[int, ...]
    total_params: int
    trainable_params: int
    total_macs: int
    total_flops: int
    total_activation_bytes: int

    def totals(self) -> dict[str, Any]:
        """Everything but the rows, as a dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "rows"}

    def to_dicts(self) -> list[dict[str, Any]]:
        """Rows as dicts of plain values (tuples become lists), without the ``leaf`` flag."""
        out = []
        for row in self.rows:
            d = asdict(row)
            d.pop("leaf")
            out.append({k: list(v) if isinstance(v, tuple) else v for k, v in d.items()})
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps({"totals": self.totals(), "rows": self.to_dicts()}, indent=indent)

    def to_csv(self) -> str:
        """One line per row; shapes and receptive fields as ``AxB`` strings."""
        buf = io.StringIO()
        cols = [f for f in LayerStats.__dataclass_fields__ if f != "leaf"]
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        for d in self.to_dicts():
            writer.writerow({k: _dims(d[k]) if isinstance(d[k], list) else d[k] for k in cols})
        return buf.getvalue()

    def _table(self) -> tuple[list[str], list[list[str]], list[str]]:
        head = ["layer", "type", "output", "RF", "jump", "start", "params", "MACs", "FLOPs", "act"]
        body = [
            [r.name, r.type, _dims(r.output_shape), _dims(r.rf_size), _dims(r.rf_jump),
             _dims(r.rf_start), f"{r.params:,}", _human(r.macs), _human(r.flops),
             _human(r.activation_bytes, "B")]
            for r in self.rows
        ]  # fmt: skip
        foot = ["total", "", _dims(self.input_shape) + " in", "", "", "",
                f"{self.total_params:,}", _human(self.total_macs), _human(self.total_flops),
                _human(self.total_activation_bytes, "B")]  # fmt: skip
        return head, body, foot

    def to_markdown(self) -> str:
        head, body, foot = self._table()
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
        lines.append("| " + " | ".join(f"**{c}**" if c else "" for c in foot) + " |")
        return "\n".join(lines) + "\n"

    def to_rich_table(self) -> Any:
        """A ``rich.table.Table`` (print it with ``rich.print`` or :meth:`print`)."""
        from rich.table import Table

        head, body, foot = self._table()
        table = Table(title=f"model stats, input {_dims(self.input_shape)}", show_footer=True)
        for i, (h, f) in enumerate(zip(head, foot, strict=True)):
            table.add_column(h, footer=f, justify="left" if i < 2 else "right")
        for r in body:
            table.add_row(*r)
        return table

    def print(self, console: Any = None) -> None:
        """Print the rich table to ``console`` (default: a new ``rich.console.Console``)."""
        from rich.console import Console

        (console or Console()).print(self.to_rich_table())


def _dims(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return "x".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)


def _human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{int(n)}{unit}" if unit else f"{int(n)}"


def _tensors(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _union(rfs: list[RF]) -> RF:
    """Receptive field of a value computed from several inputs: the union of theirs."""
    known = [r for r in rfs if r is not None]
    if not known:
        return None
    if GLOBAL in known:
        return GLOBAL
    if len({len(r) for r in known}) > 1:
        return None
    out = []
    for per_dim in zip(*known, strict=True):
        lo = min(r.start - (r.size - 1) / 2 for r in per_dim)
        hi = max(r.start + (r.size - 1) / 2 for r in per_dim)
        size = hi - lo + 1
        out.append(ReceptiveField(_num(size), max(r.jump for r in per_dim), (lo + hi) / 2))
    return tuple(out)


def _num(x: float) -> float:
    return int(x) if float(x).is_integer() else x


def _ntuple(v: Any, n: int) -> tuple[Any, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _layer_rf(m: nn.Module, rf: RF, x: Tensor, out: Tensor) -> RF:
    """Receptive field of a conv/pool/adaptive-pool output from its input's."""
    if rf is None or rf == GLOBAL:
        return rf
    d = out.dim() - 2
    if len(rf) != d:
        return None
    if isinstance(m, _ADAPTIVE):
        ins, outs = x.shape[-d:], out.shape[-d:]
        if all(o == 1 for o in outs):
            return GLOBAL
        if any(i % o for i, o in zip(ins, outs, strict=True)):
            return None
        specs = [LayerSpec(i // o, i // o) for i, o in zip(ins, outs, strict=True)]
    else:
        k, s = _ntuple(m.kernel_size, d), _ntuple(m.stride or m.kernel_size, d)
        dil = _ntuple(getattr(m, "dilation", 1), d)
        pad = m.padding
        if isinstance(pad, str):  # "valid" or "same" convolutions
            pad = [
                0 if pad == "valid" else di * (ki - 1) / 2 for ki, di in zip(k, dil, strict=True)
            ]
        pad = _ntuple(pad, d)
        t = isinstance(m, _ConvTransposeNd)
        specs = [LayerSpec(*a, transposed=t) for a in zip(k, s, pad, dil, strict=True)]
    return tuple(receptive_field_step(r, sp) for r, sp in zip(rf, specs, strict=True))


def _rnn_macs(m: nn.RNNBase, x: Any) -> int:
    steps = x.data.shape[0] if isinstance(x, nn.utils.rnn.PackedSequence) else None
    if steps is None:  # (T, N, F), (N, T, F) batch_first, or unbatched (T, F)
        steps = math.prod(x.shape[:-1])
    gates = {"LSTM": 4, "GRU": 3}.get(m.mode, 1)
    h, p = m.hidden_size, getattr(m, "proj_size", 0) or m.hidden_size
    d = 2 if m.bidirectional else 1
    per_step = 0
    for layer in range(m.num_layers):
        in_size = m.input_size if layer == 0 else d * p
        per_step += d * (gates * h * (in_size + p) + (h * p if p != h else 0))
    return steps * per_step


def _mha_macs(m: nn.MultiheadAttention, q: Tensor, k: Tensor) -> int:
    e = m.embed_dim
    lq, lk = (
        (q.shape[-2], k.shape[-2]) if m.batch_first or q.dim() == 2 else (q.shape[0], k.shape[0])
    )
    n = q.numel() // (lq * e)
    proj = n * (lq * e * e + lk * m.kdim * e + lk * m.vdim * e + lq * e * e)
    return proj + 2 * n * lq * lk * e


def _module_cost(m: nn.Module, args: tuple[Any, ...], out: Tensor) -> tuple[int, int]:
    """(MACs, FLOPs) of one call of a ruled module."""
    x = args[0] if args else None
    n = out.numel()
    if isinstance(m, _ConvTransposeNd):
        macs = x.numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size)
    elif isinstance(m, _ConvNd):
        macs = n * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    elif isinstance(m, nn.Linear):
        macs = n * m.in_features
    elif isinstance(m, nn.Bilinear):
        macs = n * m.in1_features * m.in2_features + n * m.in2_features
    elif isinstance(m, nn.MultiheadAttention):
        macs = _mha_macs(m, x, args[1] if len(args) > 1 else x)
    elif isinstance(m, nn.RNNBase):
        macs = _rnn_macs(m, x)
    elif isinstance(m, _BatchNorm):
        return n, 2 * n
    elif isinstance(m, _NORMS):
        affine = getattr(m, "elementwise_affine", getattr(m, "affine", False))
        return (n, 5 * n) if affine else (0, 3 * n)
    elif isinstance(m, _POOLS):
        return 0, n * math.prod(_ntuple(m.kernel_size, out.dim() - 2))
    elif isinstance(m, _ADAPTIVE):
        return 0, x.numel()
    elif isinstance(m, _ACTIVATIONS):
        return 0, n
    else:
        return 0, 0
    return macs, 2 * macs


def _functional_macs(name: str, args: tuple[Any, ...], out: Tensor) -> int:
    """MACs of a functional matmul-like op (see :data:`_COUNTED`)."""
    ts = _tensors(args)
    if name == "linear":
        return out.numel() * ts[1].shape[-1]
    if name == "scaled_dot_product_attention":
        q, k, v = ts[:3]
        return math.prod(q.shape[:-2]) * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
    if name == "einsum":
        eq = args[0].replace(" ", "")
        if "..." in eq or "->" not in eq:
            return 0
        sizes = {c: s for term, t in zip(eq.split("->")[0].split(","), ts, strict=False)
                 for c, s in zip(term, t.shape, strict=False)}  # fmt: skip
        return math.prod(sizes.values()) if len(ts) == 2 else 0
    a = ts[1] if name in {"baddbmm", "addmm"} else ts[0]
    return out.numel() * a.shape[-1]


class _Tracker(TorchFunctionMode):
    """Propagates receptive fields through functional ops and counts functional matmuls."""

    def __init__(self) -> None:
        super().__init__()
        self.rfs: dict[int, tuple[weakref.ref, RF]] = {}
        self.stack: list[nn.Module] = []
        self.extra: dict[int, list[int]] = {}  # id(module) -> [macs, flops, bytes] of its ops

    def get(self, t: Tensor) -> RF:
        entry = self.rfs.get(id(t))
        return entry[1] if entry is not None and entry[0]() is t else None

    def set(self, t: Tensor, rf: RF) -> None:
        if rf is not None:
            self.rfs[id(t)] = (weakref.ref(t), rf)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = _tensors(out)
        if not outs:
            return out
        name = getattr(func, "__name__", "")
        ins = _tensors(args) + _tensors(kwargs)
        rfs = [self.get(t) for t in ins]
        known = [r for r in rfs if r is not None]
        rf = _union(known)
        if name in _COUNTED - {"linear"} and len(known) >= 2:
            rf = GLOBAL  # a product of two activations mixes positions (attention)
        elif name in _REDUCTIONS and known and outs[0].numel() < ins[0].numel():
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            dims = [d % ins[0].dim() for d in _ntuple(dims, 1)] if dims is not None else None
            if dims is None or any(d >= 1 for d in dims if not (ins[0].dim() >= 4 and d == 1)):
                rf = GLOBAL
        for t in outs:
            self.set(t, rf)
        if name in _COUNTED and self.stack and not isinstance(self.stack[-1], _RULED):
            macs = _functional_macs(name, tuple(ins) if name != "einsum" else args, outs[0])
            acc = self.extra.setdefault(id(self.stack[-1]), [0, 0, 0])
            acc[0] += macs
            acc[1] += 2 * macs
            acc[2] += sum(t.numel() * t.element_size() for t in outs)
        return out


def model_stats(model: nn.Module, inputs: Tensor | Sequence[Tensor] | Sequence[int]) -> ModelStats:
    """Per-layer table of a model (see the module docstring for every convention).

    Args:
        model: any ``nn.Module``; run once in eval mode (its modes are restored afterwards).
        inputs: an example input tensor, a tuple of them (positional arguments), or the full
            input shape including the batch, e.g. ``(1, 3, 32, 32)`` (seeded random values).

    Returns:
        A :class:`ModelStats` with one row per module call, in call order.

    >>> net = nn.Sequential(nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
    >>> s = model_stats(net, (1, 8, 32, 32))
    >>> r = s.rows[0]  # seed 002's example layer
    >>> r.params, r.output_shape, r.macs, r.flops, r.activation_bytes, r.rf_size
    (3216, (1, 16, 32, 32), 3276800, 6553600, 65536, (5, 5))
    >>> s.rows[2].rf_size, s.rows[2].rf_jump, s.total_flops
    ((6, 6), (2, 2), 6586368)
    """
    if isinstance(inputs, Tensor):
        args: tuple[Any, ...] = (inputs,)
    elif isinstance(inputs, Sequence) and inputs and all(isinstance(i, int) for i in inputs):
        p = next(model.parameters(), None)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(tuple(inputs), generator=g)
        args = (x.to(p.device, p.dtype) if p is not None and p.is_floating_point() else x,)
    elif isinstance(inputs, Sequence) and inputs and all(isinstance(i, Tensor) for i in inputs):
        args = tuple(inputs)
    else:
        raise ShapeError(
            f"inputs must be a tensor, a sequence of tensors or a shape such as (1, 3, 32, 32); "
            f"got {type(inputs).__name__} {inputs!r:.80}"
        )
    tracker = _Tracker()
    names: dict[int, str] = {}
    for n, m in model.named_modules(remove_duplicate=False):
        names.setdefault(id(m), n)
    pending: list[tuple[nn.Module, LayerStats]] = []
    seen_params: set[int] = set()
    handles = []

    def pre_hook(m: nn.Module, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
        tracker.stack.append(m)
        calls = sum(1 for mm, _ in pending if mm is m)
        name = names[id(m)] or "(root)"
        row = LayerStats(name + (f" (call {calls + 1})" if calls else ""), type(m).__name__,
                         None, None, None, None, 0, 0, 0, 0)  # fmt: skip
        row.leaf = isinstance(m, _RULED) or not any(True for _ in m.children())
        pending.append((m, row))
        tracker.extra.pop(id(m), None)

    def hook(m: nn.Module, a: tuple[Any, ...], kw: dict[str, Any], out: Any) -> None:
        tracker.stack.pop()
        row = next(r for mm, r in reversed(pending) if mm is m and r.output_shape is None)
        a = a + tuple(kw.values())
        outs, ins = _tensors(out), _tensors(a)
        row.output_shape = tuple(outs[0].shape) if outs else ()
        own = [p for p in m.parameters(recurse=isinstance(m, _RULED)) if id(p) not in seen_params]
        seen_params.update(id(p) for p in own)
        row.params = sum(p.numel() for p in own)
        if outs and isinstance(m, _RULED):
            row.macs, row.flops = _module_cost(m, a, outs[0])
        extra = tracker.extra.pop(id(m), [0, 0, 0])
        row.macs, row.flops = row.macs + extra[0], row.flops + extra[1]
        row.activation_bytes = extra[2]  # a container's outputs are its children's
        if row.leaf:
            ptrs = {t.untyped_storage().data_ptr() for t in ins}
            fresh = [t for t in outs if t.untyped_storage().data_ptr() not in ptrs]
            row.activation_bytes += sum(t.numel() * t.element_size() for t in fresh)
        if not outs:
            return
        in_rf = tracker.get(ins[0]) if ins else None
        if isinstance(m, (_ConvNd, *_POOLS, *_ADAPTIVE)):
            rf = _layer_rf(m, in_rf, ins[0], outs[0])
        elif isinstance(m, (nn.MultiheadAttention, nn.RNNBase)):
            rf = GLOBAL if in_rf is not None else None
        elif isinstance(m, nn.Linear) and ins[0].dim() == 2 and in_rf is not None:
            rf = GLOBAL
        else:
            rf = tracker.get(outs[0])
        for t in outs:
            tracker.set(t, rf)
        if rf == GLOBAL:
            row.rf_size = GLOBAL
        elif rf is not None:
            row.rf_size = tuple(_num(r.size) for r in rf)
            row.rf_jump = tuple(_num(r.jump) for r in rf)
            row.rf_start = tuple(_num(r.start) for r in rf)

    skip: list[str] = []
    for name, m in model.named_modules():
        if any(name.startswith(s + ".") if s else name for s in skip):
            continue
        if isinstance(m, _RULED):
            skip.append(name)
        handles.append(m.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(m.register_forward_hook(hook, with_kwargs=True))
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        for x in args:
            if x.dim() >= 3:
                tracker.set(x, (ReceptiveField(),) * (x.dim() - 2))
        with torch.no_grad(), tracker:
            model(*args)
    except RuntimeError as err:
        shapes = ", ".join(str(tuple(x.shape)) for x in args)
        raise ShapeError(f"model forward failed on inputs of shape {shapes}: {err}") from err
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    rows = [r for m, r in pending if r.leaf or r.params or r.macs or r.flops]
    for name, m in model.named_modules():  # parameters of modules that never ran
        own = [p for p in m.parameters(recurse=False) if id(p) not in seen_params]
        seen_params.update(id(p) for p in own)
        if own:
            n = sum(p.numel() for p in own)
            rows.append(LayerStats(name or "(root)", f"{type(m).__name__} (not called)", None,
                                   None, None, None, n, 0, 0, 0))  # fmt: skip
    params = {id(p): p for p in model.parameters()}.values()
    return ModelStats(
        rows=rows,
        input_shape=tuple(args[0].shape),
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        total_macs=sum(r.macs for r in rows),
        total_flops=sum(r.flops for r in rows),
        total_activation_bytes=sum(r.activation_bytes for r in rows),
    )
