"""Convolutional LSTM (Shi et al., "Convolutional LSTM Network: A Machine Learning Approach for
Precipitation Nowcasting", NIPS 2015; seed 004, "ConvLSTM").

An LSTM whose inputs, cell states, hidden states and gates are 3D tensors ``(C, H, W)`` and
whose input-to-state and state-to-state transitions are convolutions (eq. 3)::

    i_t = sigmoid(W_xi * X_t + W_hi * H_{t-1} + W_ci o C_{t-1} + b_i)
    f_t = sigmoid(W_xf * X_t + W_hf * H_{t-1} + W_cf o C_{t-1} + b_f)
    C_t = f_t o C_{t-1} + i_t o tanh(W_xc * X_t + W_hc * H_{t-1} + b_c)
    o_t = sigmoid(W_xo * X_t + W_ho * H_{t-1} + W_co o C_t + b_o)
    H_t = o_t o tanh(C_t)

``*`` is convolution and ``o`` the Hadamard product; the ``W_c.`` terms are the peepholes
(optional here, as in Graves' LSTM that eq. 2 of the paper writes). The states are
zero-padded so they keep the input's size ("same" padding, odd kernels) and start at zero
(Sec. 3.1). The four gate convolutions are one convolution with ``4 * hidden`` output channels,
gates in PyTorch's ``nn.LSTM`` order ``i, f, g (= the tanh candidate), o``; with 1x1 kernels on
a 1x1 grid and no peepholes the cell is exactly ``nn.LSTMCell`` (the FC-LSTM of eq. 2).

:func:`convlstm_cell` is the source of truth, :class:`ConvLSTMCell` holds its parameters, and
:class:`ConvLSTM` stacks cells over layers and time, returning every step's output and the
final states (and accepting initial ones), as the encoding-forecasting network and recurrent
video segmenters need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError

__all__ = ["ConvLSTM", "ConvLSTMCell", "convlstm_cell"]

State = tuple[Tensor, Tensor]


def _same_conv(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    kh, kw = weight.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ShapeError(f"convlstm: kernels must be odd for 'same' padding, got {kh}x{kw}")
    return F.conv2d(x, weight, bias, padding=(kh // 2, kw // 2))


def _update(
    gates: Tensor,
    c: Tensor,
    w_ci: Tensor | None,
    w_cf: Tensor | None,
    w_co: Tensor | None,
) -> State:
    """Eq. 3 from the summed pre-activations ``gates`` (B, 4*Ch, H, W) and ``C_{t-1}``."""
    gi, gf, gg, go = gates.chunk(4, dim=1)
    if w_ci is not None:
        gi = gi + w_ci * c
    if w_cf is not None:
        gf = gf + w_cf * c
    c_new = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
    if w_co is not None:
        go = go + w_co * c_new  # the output gate peeks at the new cell C_t
    return torch.sigmoid(go) * torch.tanh(c_new), c_new


def _check_state(h: Tensor, c: Tensor, weight_out: int) -> None:
    if h.dim() != 4 or h.shape != c.shape:
        raise ShapeError(
            f"convlstm: h and c must be equal (B, C, H, W) tensors, got {tuple(h.shape)} and "
            f"{tuple(c.shape)}"
        )
    if weight_out != 4 * h.shape[1]:
        raise ShapeError(
            f"convlstm: weight has {weight_out} output channels, expected 4 * {h.shape[1]} "
            "(gates i, f, g, o of the hidden channels)"
        )


def convlstm_cell(
    x: Tensor | None,
    h: Tensor,
    c: Tensor,
    weight: Tensor | None,
    bias: Tensor | None = None,
    w_ci: Tensor | None = None,
    w_cf: Tensor | None = None,
    w_co: Tensor | None = None,
    *,
    weight_h: Tensor | None = None,
) -> State:
    """One ConvLSTM step, eq. 3 of Shi et al. (2015).

    Args:
        x: the input ``X_t``, ``(B, Cx, H, W)``; None for a cell without input (the forecasting
            network's first layer, whose only drive is its state).
        h, c: ``H_{t-1}`` and ``C_{t-1}``, ``(B, Ch, H, W)``.
        weight: with ``weight_h=None``, the stacked input-to-state and state-to-state kernels
            ``[W_x., W_h.]`` acting on ``cat([x, h])``, ``(4*Ch, Cx + Ch, k, k)`` (``(4*Ch, Ch,
            k, k)`` when ``x`` is None); with ``weight_h``, the input-to-state kernels ``W_x.``
            alone, ``(4*Ch, Cx, kx, kx)`` (None when ``x`` is None). Gates in the order
            ``i, f, g, o``; kernels odd ("same" zero padding).
        bias: ``(4*Ch,)`` ``[b_i, b_f, b_c, b_o]``.
        w_ci, w_cf, w_co: peephole weights, Hadamard products with the cell state; shape
            ``(Ch, H, W)`` as in the paper or anything broadcastable (``(Ch, 1, 1)``).
        weight_h: the state-to-state kernels ``W_h.``, ``(4*Ch, Ch, kh, kh)``, for a kernel size
            other than the input-to-state one.

    Returns:
        ``(H_t, C_t)``, each ``(B, Ch, H, W)``.

    >>> x, h, c = torch.zeros(2, 3, 8, 8), torch.zeros(2, 4, 8, 8), torch.ones(2, 4, 8, 8)
    >>> h1, c1 = convlstm_cell(x, h, c, torch.zeros(16, 7, 3, 3))
    >>> h1.shape, float(c1[0, 0, 0, 0])  # all gates 0.5, candidate 0: C_t = 0.5 * C_{t-1}
    (torch.Size([2, 4, 8, 8]), 0.5)
    """
    if x is not None and (x.dim() != 4 or x.shape[0] != h.shape[0] or x.shape[-2:] != h.shape[-2:]):
        raise ShapeError(
            f"convlstm: x must be (B, Cx, H, W) with the state's B, H, W, got {tuple(x.shape)} "
            f"for a state of {tuple(h.shape)}"
        )
    if weight_h is None:
        if weight is None:
            raise ShapeError("convlstm: weight is None and no weight_h: no state-to-state kernels")
        _check_state(h, c, weight.shape[0])
        z = h if x is None else torch.cat([x, h], dim=1)
        if weight.shape[1] != z.shape[1]:
            raise ShapeError(
                f"convlstm: weight takes {weight.shape[1]} input channels, got {z.shape[1]} "
                "(input channels + hidden channels)"
            )
        gates = _same_conv(z, weight, bias)
    else:
        _check_state(h, c, weight_h.shape[0])
        gates = _same_conv(h, weight_h, bias)
        if x is not None:
            if weight is None:
                raise ShapeError("convlstm: an input x needs the input-to-state weight")
            gates = gates + _same_conv(x, weight)
    return _update(gates, c, w_ci, w_cf, w_co)


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    k = (v, v) if isinstance(v, int) else tuple(v)
    if len(k) != 2 or any(int(i) < 1 or int(i) % 2 == 0 for i in k):
        raise ConfigError(f"{name} must be an odd positive kernel size (or a pair), got {v!r}")
    return int(k[0]), int(k[1])


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer's cell (eq. 3); :func:`convlstm_cell` with its parameters.

    Args:
        input_dim: input channels ``Cx``; 0 for a cell without input (its state drives it).
        hidden_dim: hidden and cell channels ``Ch``.
        kernel_size: input-to-state kernel (odd), also the state-to-state kernel unless
            ``hidden_kernel_size`` is given.
        hidden_kernel_size: a different state-to-state kernel (the paper finds larger
            state-to-state kernels capture faster motion, Sec. 4.1).
        bias: the gate biases ``b_.``.
        peephole: the peephole terms ``W_c. o C``.
        peephole_size: ``(H, W)``: peephole weights per position, ``(Ch, H, W)`` as in the paper
            (ties the cell to that size); None: one weight per channel, ``(Ch, 1, 1)``.
        forget_bias: initial value added to the forget gate's bias (1.0 as Gers et al. 2000 and
            Jozefowicz et al. 2015 recommend; the paper does not say), so the cell remembers at
            the start of training.

    Parameters are ``weight`` ``(4*Ch, Cx + Ch, k, k)`` (stacked ``[W_x., W_h.]``) or, with
    a different state-to-state kernel, ``weight`` ``(4*Ch, Cx, k, k)`` and ``weight_h``
    ``(4*Ch, Ch, kh, kh)``; ``bias`` ``(4*Ch,)``; ``w_ci``, ``w_cf``, ``w_co``.

    Shape: ``x (B, Cx, H, W)``, state ``((B, Ch, H, W), (B, Ch, H, W))`` -> the new state.

    >>> cell = ConvLSTMCell(3, 8, kernel_size=5, peephole=True)
    >>> h, c = cell(torch.rand(2, 3, 16, 16))
    >>> h.shape, cell(torch.rand(2, 3, 16, 16), (h, c))[1].shape
    (torch.Size([2, 8, 16, 16]), torch.Size([2, 8, 16, 16]))
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        kernel_size: int | Sequence[int] = 3,
        hidden_kernel_size: int | Sequence[int] | None = None,
        bias: bool = True,
        peephole: bool = False,
        peephole_size: Sequence[int] | None = None,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        if input_dim < 0 or hidden_dim < 1:
            raise ConfigError(
                f"ConvLSTMCell: input_dim must be >= 0 and hidden_dim >= 1, got {input_dim}, "
                f"{hidden_dim}"
            )
        k = _pair(kernel_size, "kernel_size")
        kh = k if hidden_kernel_size is None else _pair(hidden_kernel_size, "hidden_kernel_size")
        self.input_dim, self.hidden_dim = input_dim, hidden_dim
        self.kernel_size, self.hidden_kernel_size = k, kh
        g = 4 * hidden_dim
        if kh == k:
            self.weight: nn.Parameter | None = nn.Parameter(
                torch.empty(g, input_dim + hidden_dim, *k)
            )
            self.weight_h: nn.Parameter | None = None
        else:
            self.weight = nn.Parameter(torch.empty(g, input_dim, *k)) if input_dim else None
            self.weight_h = nn.Parameter(torch.empty(g, hidden_dim, *kh))
        self.bias = nn.Parameter(torch.empty(g)) if bias else None
        if peephole:
            if peephole_size is not None and (
                len(peephole_size) != 2 or min(int(s) for s in peephole_size) < 1
            ):
                raise ConfigError(
                    f"ConvLSTMCell: peephole_size must be (H, W) or None, got {peephole_size!r}"
                )
            size = (1, 1) if peephole_size is None else tuple(int(s) for s in peephole_size)
            self.w_ci = nn.Parameter(torch.zeros(hidden_dim, *size))
            self.w_cf = nn.Parameter(torch.zeros(hidden_dim, *size))
            self.w_co = nn.Parameter(torch.zeros(hidden_dim, *size))
        else:
            self.w_ci = self.w_cf = self.w_co = None
        self.peephole = peephole
        self.forget_bias = forget_bias
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Conv2d's default initialisation of the kernels and biases; peepholes at zero; the
        forget gate's bias raised by ``forget_bias``."""
        fan_in = 0
        for w in (self.weight, self.weight_h):
            if w is not None:
                nn.init.kaiming_uniform_(w, a=math.sqrt(5))
                fan_in += w.shape[1] * w.shape[2] * w.shape[3]
        if self.bias is not None:
            bound = 1 / math.sqrt(fan_in)
            with torch.no_grad():
                nn.init.uniform_(self.bias, -bound, bound)
                self.bias[self.hidden_dim : 2 * self.hidden_dim] += self.forget_bias
        for w in (self.w_ci, self.w_cf, self.w_co):
            if w is not None:
                nn.init.zeros_(w)

    def init_state(
        self,
        batch: int,
        size: Sequence[int],
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """The zero state ``(H_0, C_0)`` (Sec. 3.1: "we initialize all the states ... to zero")."""
        dtype = dtype or next(self.parameters()).dtype
        z = torch.zeros(batch, self.hidden_dim, *size, device=device, dtype=dtype)
        return z, z.clone()

    def input_to_state(self, x: Tensor) -> Tensor:
        """``W_x. * X`` (no bias) for any number of leading frames stacked on the batch: a
        stacked layer computes it once for all its time steps (what :class:`ConvLSTM` does)."""
        if self.weight_h is None:
            return _same_conv(x, self.weight[:, : self.input_dim])
        return _same_conv(x, self.weight)

    def step(self, x_gates: Tensor | None, state: State) -> State:
        """Eq. 3 from precomputed ``W_x. * X_t`` (or None without input) and ``(H, C)``."""
        h, c = state
        if self.weight_h is None:
            w = self.weight[:, self.input_dim :]
            _check_state(h, c, w.shape[0])
            gates = _same_conv(h, w, self.bias)
        else:
            _check_state(h, c, self.weight_h.shape[0])
            gates = _same_conv(h, self.weight_h, self.bias)
        if x_gates is not None:
            gates = gates + x_gates
        return _update(gates, c, self.w_ci, self.w_cf, self.w_co)

    def _check_input(self, x: Tensor | None) -> None:
        if x is None:
            if self.input_dim:
                raise ShapeError(f"ConvLSTMCell: expects an input with {self.input_dim} channels")
            return
        if not self.input_dim:
            raise ShapeError("ConvLSTMCell: built without input (input_dim=0), got an input")
        if x.dim() != 4 or x.shape[1] != self.input_dim:
            raise ShapeError(
                f"ConvLSTMCell: input must be (B, {self.input_dim}, H, W), got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor | None, state: State | None = None) -> State:
        self._check_input(x)
        if state is None:
            if x is None:
                raise ShapeError("ConvLSTMCell: a cell without input needs a state")
            state = self.init_state(x.shape[0], x.shape[-2:], x.device, x.dtype)
        return convlstm_cell(
            x,
            state[0],
            state[1],
            self.weight,
            self.bias,
            self.w_ci,
            self.w_cf,
            self.w_co,
            weight_h=self.weight_h,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.input_dim}, {self.hidden_dim}, kernel_size={self.kernel_size}, "
            f"hidden_kernel_size={self.hidden_kernel_size}, peephole={self.peephole}"
        )


def _per_layer(value: object, n: int, name: str) -> list:
    # One value for all layers (an int, or None), or a sequence of one per layer.
    if isinstance(value, int) or value is None:
        return [value] * n
    values = list(value)  # type: ignore[call-overload]
    if len(values) != n:
        raise ConfigError(
            f"ConvLSTM: {name} is one int for all layers or one per layer ({n}), got {value!r}"
        )
    return values


class ConvLSTM(nn.Module):
    """Stacked ConvLSTM layers run over time (Shi et al. 2015, Sec. 3.1-3.2).

    Layer ``l`` reads the hidden states of layer ``l - 1`` (the input for the first layer) at the
    same step. All layers keep the input's spatial size.

    Args:
        input_dim: input channels (0: no input; the first layer runs on its state alone, and
            :meth:`forward` needs ``states`` and ``steps``: the paper's forecasting network).
        hidden_dims: hidden channels per layer (an int: one layer).
        kernel_size: input-to-state kernel, one int for all layers or one per layer (an int or
            an ``(kh, kw)`` pair each).
        hidden_kernel_size: state-to-state kernel (default: ``kernel_size``), same rule.
        bias, peephole, peephole_size, forget_bias: as :class:`ConvLSTMCell`, for every layer.

    Shape: ``x (B, T, Cx, H, W)`` -> outputs ``(B, T, hidden_dims[-1], H, W)`` (the last layer's
    ``H_t`` at every step) and the final ``[(H_T, C_T)]`` of each layer.

    >>> net = ConvLSTM(1, (8, 4), kernel_size=3)
    >>> out, states = net(torch.rand(2, 5, 1, 16, 16))
    >>> out.shape, len(states), states[-1][0].shape
    (torch.Size([2, 5, 4, 16, 16]), 2, torch.Size([2, 4, 16, 16]))
    >>> torch.equal(out[:, -1], states[-1][0])
    True
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: int | Sequence[int],
        kernel_size: int | Sequence[int] | Sequence[Sequence[int]] = 3,
        hidden_kernel_size: int | Sequence[int] | Sequence[Sequence[int]] | None = None,
        bias: bool = True,
        peephole: bool = False,
        peephole_size: Sequence[int] | None = None,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        dims = [hidden_dims] if isinstance(hidden_dims, int) else [int(d) for d in hidden_dims]
        if not dims or min(dims) < 1:
            raise ConfigError(f"ConvLSTM: hidden_dims must be >= 1 per layer, got {hidden_dims!r}")
        n = len(dims)
        ks = _per_layer(kernel_size, n, "kernel_size")
        hks = _per_layer(hidden_kernel_size, n, "hidden_kernel_size")
        ins = [input_dim, *dims[:-1]]
        self.cells = nn.ModuleList(
            ConvLSTMCell(i, d, k, hk, bias, peephole, peephole_size, forget_bias)
            for i, d, k, hk in zip(ins, dims, ks, hks, strict=True)
        )
        self.input_dim, self.hidden_dims = input_dim, tuple(dims)

    @property
    def num_layers(self) -> int:
        return len(self.cells)

    def forward(
        self, x: Tensor | None, states: Sequence[State] | None = None, steps: int | None = None
    ) -> tuple[Tensor, list[State]]:
        """Run all layers over the sequence.

        Args:
            x: ``(B, T, Cx, H, W)``, or None for ``input_dim=0`` (then ``steps`` and ``states``
                are needed).
            states: the initial ``(H_0, C_0)`` of every layer (default zeros).
            steps: the number of steps when ``x`` is None.

        Returns:
            The last layer's hidden states ``(B, T, C_last, H, W)`` and the final states.
        """
        outputs, final = self.forward_layers(x, states, steps)
        return outputs[-1], final

    def forward_layers(
        self, x: Tensor | None, states: Sequence[State] | None = None, steps: int | None = None
    ) -> tuple[list[Tensor], list[State]]:
        """As :meth:`forward`, with every layer's hidden states ``(B, T, C_l, H, W)``, layer by
        layer (the encoding-forecasting network concatenates them for its prediction)."""
        if x is None:
            if self.input_dim:
                raise ShapeError(f"ConvLSTM: expects an input with {self.input_dim} channels")
            if states is None or steps is None or steps < 1:
                raise ShapeError("ConvLSTM: without input, give the initial states and steps >= 1")
        elif x.dim() != 5 or x.shape[2] != self.input_dim or x.shape[1] < 1:
            raise ShapeError(
                f"ConvLSTM: input must be (B, T, {self.input_dim}, H, W), T >= 1, got "
                f"{tuple(x.shape)}"
            )
        if states is not None and len(states) != self.num_layers:
            raise ShapeError(
                f"ConvLSTM: states needs one (h, c) per layer ({self.num_layers}), got "
                f"{len(states)}"
            )
        if states is None:
            b, _, _, hgt, wid = x.shape  # type: ignore[union-attr]
            states = [cell.init_state(b, (hgt, wid), x.device, x.dtype) for cell in self.cells]
        else:
            b, hgt, wid = (x.shape[0], *x.shape[-2:]) if x is not None else (None, None, None)
            for i, ((h, c), cell) in enumerate(zip(states, self.cells, strict=True)):
                want = (b or h.shape[0], cell.hidden_dim, hgt or h.shape[-2], wid or h.shape[-1])
                if tuple(h.shape) != want or tuple(c.shape) != want:
                    raise ShapeError(
                        f"ConvLSTM: layer {i} state must be (h, c) of shape {want}, got "
                        f"{tuple(h.shape)} and {tuple(c.shape)}"
                    )
        t_len = x.shape[1] if x is not None else int(steps)  # type: ignore[arg-type]
        layer_in, outputs, final = x, [], []
        # Layer-major order (equal to step-major): a layer's input-to-state convolution runs once
        # over all T frames, only the state-to-state convolution is sequential.
        for cell, state in zip(self.cells, states, strict=True):
            if layer_in is None:
                xg: list[Tensor | None] = [None] * t_len
            else:
                b, t = layer_in.shape[:2]
                g = cell.input_to_state(layer_in.flatten(0, 1))
                xg = list(g.view(b, t, *g.shape[1:]).unbind(1))
            hs = []
            for t in range(t_len):
                state = cell.step(xg[t], state)
                hs.append(state[0])
            layer_in = torch.stack(hs, dim=1)
            outputs.append(layer_in)
            final.append(state)
        return outputs, final
