"""Backpropagation as message passing on any DAG of fully connected units (seed 003).

Seed 003 (lecture "Fully-Convolutional Networks", slides "Backpropagation as Message-Passing")
writes a network's forward pass and its gradient as messages on the graph of its units:

- forward message of a child ``c`` with parents ``p`` (eq. F): ``M_c = sum_p W_cp h(M_p)``,
  with ``M_j = x_j`` at an input ("in the first layer we don't apply h to x");
- backward message from ``c`` to all its parents (eq. B): ``V_c = h'(M_c) sum_c' W_c'c V_c'``
  over the children ``c'`` of ``c``, with ``V_y = f'(M_y)`` at an output ("in the last layer
  we use f instead of h"); the slide writes the weight of the edge ``c -> c'`` as ``W_cc'``,
  here it is ``W_c'c``, indexed child first as in eq. F;
- the gradient of a weight (eq. G): ``dL/dW_cp = h(M_p) V_c``, "which works for general graphs".

A node here is a layer of ``n_c`` units and its message a ``(B, n_c)`` matrix for a batch of
``B`` samples; an edge ``p -> c`` carries ``W_cp`` of shape ``(n_c, n_p)``. Eq. F is one matmul
per edge, eq. B one per edge and an elementwise ``h'``, eq. G one per edge summed over the batch:
``dL/dW_cp = V_c^T h(M_p)``. Nodes are visited in a topological order (reversed for eq. B). Any
DAG works: the seed's chain ``y = v^T h(W^3 h(W^2 h(W^1 x)))``, residual edges ("include inputs
from previous layers"), dense edges ("connect to inputs from many previous layers"), several
inputs and several outputs (the loss is the sum of one loss ``f`` per output). Every hidden node
has its own ``h``; optional biases ``b_c`` are added to ``M_c`` (then ``dL/db_c = sum_i V_c``).
At an input ``h`` is the identity, so ``V_x = sum_c' W_c'x^T V_c'`` is ``dL/dx``.

>>> g = example_graph("chain")
>>> [f"{n.name}({n.size})" for n in g.nodes]
['x(2)', 'z1(3)', 'z2(3)', 'z3(3)', 'y(1)']
>>> w = init_weights(g, generator=torch.Generator().manual_seed(0))
>>> m = backprop_messages(g, w, {"x": torch.ones(1, 2, dtype=torch.float64)},
...                       {"y": torch.zeros(1, 1, dtype=torch.float64)})
>>> tuple(m.weight_grads[("z3", "y")].shape)  # dL/dW_y,z3 = V_y^T h(M_z3): (n_y, n_z3)
(1, 3)
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError

__all__ = [
    "ACTIVATIONS",
    "EXAMPLES",
    "LOSSES",
    "MessageGraph",
    "MessagePassingNet",
    "Messages",
    "Node",
    "autograd_gradients",
    "backprop_messages",
    "backward_messages",
    "check_params",
    "example_graph",
    "forward_messages",
    "init_weights",
    "message_gradients",
    "node_outputs",
]

Edge = tuple[str, str]  # (parent p, child c): the edge p -> c, carrying W_cp
Loss = Literal["squared", "cross_entropy", "sum"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- h and h' --------------------------------------------------------------------------------------
def _gelu_grad(m: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(m / math.sqrt(2))) + m * torch.exp(-0.5 * m * m) / math.sqrt(
        2 * math.pi
    )


#: name -> (h, h'): the unit non-linearities of eq. F and their derivatives for eq. B.
ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "identity": (lambda m: m, torch.ones_like),
    "relu": (torch.relu, lambda m: (m > 0).to(m.dtype)),
    "leaky_relu": (F.leaky_relu, lambda m: torch.where(m > 0, 1.0, torch.full_like(m, 0.01))),
    "tanh": (torch.tanh, lambda m: 1 - torch.tanh(m).square()),
    "sigmoid": (torch.sigmoid, lambda m: torch.sigmoid(m) * torch.sigmoid(-m)),
    "softplus": (F.softplus, torch.sigmoid),
    "elu": (F.elu, lambda m: torch.where(m > 0, torch.ones_like(m), torch.exp(m))),
    "gelu": (F.gelu, _gelu_grad),
}


# -- f and f' --------------------------------------------------------------------------------------
def _squared(m: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    return 0.5 * (m - t).square().sum(), m - t


def _cross_entropy(m: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    logp = torch.log_softmax(m, dim=1)
    return -logp.gather(1, t[:, None]).sum(), logp.exp() - F.one_hot(t, m.shape[1]).to(m.dtype)


def _sum(m: Tensor, t: Tensor | None) -> tuple[Tensor, Tensor]:
    return m.sum(), torch.ones_like(m)


#: name -> (M_y, target) -> (f summed over the batch, f'(M_y)): ``squared`` is
#: ``1/2 ||M_y - t||^2`` (target ``(B, n_y)``), ``cross_entropy`` the softmax cross-entropy
#: (target: ``(B,)`` class ids), ``sum`` is ``f(M_y) = sum M_y`` (no target; ``V_y = 1``).
LOSSES: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "squared": _squared,
    "cross_entropy": _cross_entropy,
    "sum": _sum,
}


# -- the graph -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    """A layer of ``size`` units.

    Attributes:
        name: an identifier (letters, digits, ``_``).
        size: the number of units ``n_c``.
        activation: its ``h`` (a key of :data:`ACTIVATIONS`); None is the identity. Inputs and
            outputs must leave it None: h is not applied to ``x``, and ``f`` replaces it at an
            output (seed 003).
    """

    name: str
    size: int
    activation: str | None = None


@dataclass(frozen=True)
class MessageGraph:
    """A DAG of fully connected layers, checked on construction.

    Inputs are the nodes without parents, outputs those without children. ``order`` is a
    topological order (ties in the order the nodes are given).

    Attributes:
        nodes: the layers.
        edges: ``(parent, child)`` pairs; the edge ``p -> c`` carries ``W_cp`` ``(n_c, n_p)``.

    Raises:
        ConfigError: repeated or badly named nodes, unknown nodes in an edge, repeated edges,
            self-loops, cycles, nodes without edges, bad sizes or activations.
    """

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    order: tuple[str, ...] = field(init=False, repr=False, compare=False)
    parents: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    children: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    inputs: tuple[str, ...] = field(init=False, repr=False, compare=False)
    outputs: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        nodes, edges = tuple(self.nodes), tuple(tuple(e) for e in self.edges)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "edges", edges)
        if not nodes:
            raise ConfigError("MessageGraph: no nodes; expected at least an input and an output")
        names = [n.name for n in nodes]
        for n in nodes:
            if not isinstance(n.name, str) or not _NAME.match(n.name):
                raise ConfigError(f"node name {n.name!r}: expected letters, digits and _")
            if names.count(n.name) > 1:
                raise ConfigError(f"node {n.name!r} is given twice")
            if isinstance(n.size, bool) or not isinstance(n.size, int) or n.size < 1:
                raise ConfigError(f"node {n.name!r}: size must be an integer >= 1, got {n.size!r}")
            if n.activation is not None and n.activation not in ACTIVATIONS:
                raise ConfigError(
                    f"node {n.name!r}: unknown activation {n.activation!r}; expected one of "
                    f"{', '.join(ACTIVATIONS)} or null"
                )
        parents: dict[str, list[str]] = {n: [] for n in names}
        children: dict[str, list[str]] = {n: [] for n in names}
        for e in edges:
            if len(e) != 2:
                raise ConfigError(f"edge {e!r}: expected a (parent, child) pair")
            p, c = e
            for end in (p, c):
                if end not in parents:
                    raise ConfigError(
                        f"edge {p} -> {c}: unknown node {end!r} (nodes: {', '.join(names)})"
                    )
            if p == c:
                raise ConfigError(f"edge {p} -> {c} is a self-loop; the graph must be a DAG")
            if p in parents[c]:
                raise ConfigError(f"edge {p} -> {c} is given twice")
            parents[c].append(p)
            children[p].append(c)
        for n in nodes:
            if not parents[n.name] and not children[n.name]:
                raise ConfigError(f"node {n.name!r} has no edges")
        object.__setattr__(self, "order", _topological_order(names, parents, children))
        object.__setattr__(self, "parents", {k: tuple(v) for k, v in parents.items()})
        object.__setattr__(self, "children", {k: tuple(v) for k, v in children.items()})
        object.__setattr__(self, "inputs", tuple(n for n in names if not parents[n]))
        object.__setattr__(self, "outputs", tuple(n for n in names if not children[n]))
        for n in nodes:
            kind = (
                "an input" if not parents[n.name] else "an output" if not children[n.name] else ""
            )
            if kind and n.activation not in (None, "identity"):
                raise ConfigError(
                    f"node {n.name!r} is {kind}: h is not applied to inputs and f replaces it at "
                    f"outputs (seed 003), so its activation must be null, got {n.activation!r}"
                )

    @property
    def sizes(self) -> dict[str, int]:
        """Node name -> number of units."""
        return {n.name: n.size for n in self.nodes}

    def activation(self, name: str) -> str:
        """The ``h`` of a node (``identity`` for inputs, outputs and linear units)."""
        return next(n.activation for n in self.nodes if n.name == name) or "identity"


def _topological_order(
    names: list[str], parents: dict[str, list[str]], children: dict[str, list[str]]
) -> tuple[str, ...]:
    """Kahn's algorithm, ties broken by the given order; a cycle raises with its nodes."""
    index = {n: i for i, n in enumerate(names)}
    missing = {n: len(parents[n]) for n in names}
    ready = [index[n] for n in names if missing[n] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        n = names[heapq.heappop(ready)]
        order.append(n)
        for c in children[n]:
            missing[c] -= 1
            if missing[c] == 0:
                heapq.heappush(ready, index[c])
    if len(order) < len(names):
        # every node left has a parent left: walking up parents must come back to a node
        left = [n for n in names if missing[n] > 0]
        path, n = [], left[0]
        while n not in path:
            path.append(n)
            n = next(p for p in parents[n] if missing[p] > 0)
        loop = path[path.index(n) :][::-1]  # the path runs child -> parent: reverse it
        cycle = [*loop, loop[0]]
        raise ConfigError(f"the edges form a cycle: {' -> '.join(cycle)}; expected a DAG")
    return tuple(order)


# -- checks ----------------------------------------------------------------------------------------
def check_params(
    graph: MessageGraph, weights: Mapping[Edge, Tensor], biases: Mapping[str, Tensor] | None
) -> None:
    """Raise ConfigError unless there is one ``W_cp`` ``(n_c, n_p)`` per edge and nothing else,
    and every bias is an ``(n_c,)`` vector of a non-input node."""
    sizes = graph.sizes
    for key in weights:
        if tuple(key) not in graph.edges:
            raise ConfigError(f"weights: {key!r} is not an edge (parent, child) of the graph")
    for p, c in graph.edges:
        want = (sizes[c], sizes[p])
        if (p, c) not in weights:
            raise ConfigError(f"weights: no W_cp for the edge {p} -> {c} (expected {want})")
        got = tuple(weights[(p, c)].shape)
        if got != want:
            raise ConfigError(f"weights[{p} -> {c}]: W_cp must be (n_c, n_p) = {want}, got {got}")
    for c, b in (biases or {}).items():
        if c not in sizes or c in graph.inputs:
            raise ConfigError(f"biases: {c!r} is not a non-input node of the graph")
        if tuple(b.shape) != (sizes[c],):
            raise ConfigError(f"biases[{c}]: expected ({sizes[c]},), got {tuple(b.shape)}")


def _check_inputs(graph: MessageGraph, inputs: Mapping[str, Tensor]) -> int:
    batch = None
    for j in graph.inputs:
        if j not in inputs:
            raise ConfigError(f"inputs: no value for the input node {j!r}")
        x, n = inputs[j], graph.sizes[j]
        if x.dim() != 2 or x.shape[1] != n or (batch is not None and x.shape[0] != batch):
            want = f"({batch if batch is not None else 'B'}, {n})"
            raise ShapeError(f"inputs[{j}]: expected {want}, got {tuple(x.shape)}")
        batch = x.shape[0]
    extra = set(inputs) - set(graph.inputs)
    if extra:
        raise ConfigError(f"inputs: {sorted(extra)} are not input nodes ({list(graph.inputs)})")
    return int(batch)  # type: ignore[arg-type]


# -- the messages ----------------------------------------------------------------------------------
def node_outputs(graph: MessageGraph, forward: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``h(M_c)`` of every node: what it sends to its children (inputs send ``x``)."""
    return {c: ACTIVATIONS[graph.activation(c)][0](forward[c]) for c in graph.order}


def forward_messages(
    graph: MessageGraph,
    weights: Mapping[Edge, Tensor],
    inputs: Mapping[str, Tensor],
    biases: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Forward messages ``M_c = sum_p W_cp h(M_p) (+ b_c)`` in topological order (seed 003).

    Differentiable by autograd (so :class:`MessagePassingNet` can also be trained as usual).

    Args:
        graph: the DAG.
        weights: ``(p, c) -> W_cp`` ``(n_c, n_p)`` for every edge.
        inputs: input node -> ``x`` ``(B, n_x)``; ``M_x = x``.
        biases: optional node -> ``b_c`` ``(n_c,)``.

    Returns:
        node -> ``M_c`` ``(B, n_c)``, every node.
    """
    check_params(graph, weights, biases)
    _check_inputs(graph, inputs)
    m: dict[str, Tensor] = {}
    out: dict[str, Tensor] = {}
    for c in graph.order:
        if not graph.parents[c]:
            m[c] = out[c] = inputs[c]
            continue
        total = sum(out[p] @ weights[(p, c)].T for p in graph.parents[c])
        m[c] = total + biases[c] if biases and c in biases else total  # type: ignore[assignment]
        out[c] = ACTIVATIONS[graph.activation(c)][0](m[c])
    return m


def backward_messages(
    graph: MessageGraph,
    weights: Mapping[Edge, Tensor],
    forward: Mapping[str, Tensor],
    output_grads: Mapping[str, Tensor],
) -> dict[str, Tensor]:
    """Backward messages ``V_c = h'(M_c) sum_c' W_c'c V_c'`` in reverse topological order.

    Seed 003: at an output ``V_y = f'(M_y)`` ("in the last layer we use f instead of h"); at an
    input ``h`` is the identity, so ``V_x = dL/dx``. Each ``V_c = dL/dM_c``.

    Args:
        graph: the DAG.
        weights: ``(p, c) -> W_cp``.
        forward: the forward messages ``M_c`` ``(B, n_c)``.
        output_grads: output node -> ``f'(M_y)`` ``(B, n_y)``.

    Returns:
        node -> ``V_c`` ``(B, n_c)``, every node.
    """
    v: dict[str, Tensor] = {}
    for c in reversed(graph.order):
        if not graph.children[c]:
            if c not in output_grads:
                raise ConfigError(f"output_grads: no f'(M_y) for the output node {c!r}")
            g = output_grads[c]
            if tuple(g.shape) != tuple(forward[c].shape):
                raise ShapeError(
                    f"output_grads[{c}]: expected {tuple(forward[c].shape)}, got {tuple(g.shape)}"
                )
            v[c] = g
            continue
        s = sum(v[k] @ weights[(c, k)] for k in graph.children[c])
        v[c] = ACTIVATIONS[graph.activation(c)][1](forward[c]) * s
    return v


def message_gradients(
    graph: MessageGraph, forward: Mapping[str, Tensor], backward: Mapping[str, Tensor]
) -> dict[Edge, Tensor]:
    """Eq. G: ``dL/dW_cp = V_c^T h(M_p)`` ``(n_c, n_p)`` for every edge, summed over the batch."""
    out = node_outputs(graph, forward)
    return {(p, c): backward[c].T @ out[p] for p, c in graph.edges}


@dataclass
class Messages:
    """Everything one pass of message passing computes.

    Attributes:
        forward: ``M_c`` ``(B, n_c)`` of every node.
        outputs: ``h(M_c)`` of every node.
        backward: ``V_c = dL/dM_c`` ``(B, n_c)`` of every node.
        weight_grads: ``(p, c) -> dL/dW_cp`` ``(n_c, n_p)``.
        bias_grads: ``c -> dL/db_c`` ``(n_c,)`` of the nodes that have a bias.
        loss: ``L``, the sum over the outputs of ``f`` (over the batch: sum or mean).
    """

    forward: dict[str, Tensor]
    outputs: dict[str, Tensor]
    backward: dict[str, Tensor]
    weight_grads: dict[Edge, Tensor]
    bias_grads: dict[str, Tensor]
    loss: Tensor


def _losses(
    graph: MessageGraph,
    forward: Mapping[str, Tensor],
    targets: Mapping[str, Tensor] | None,
    loss: Loss,
    reduction: Literal["sum", "mean"],
) -> tuple[Tensor, dict[str, Tensor]]:
    if loss not in LOSSES:
        raise ConfigError(f"loss {loss!r}: expected one of {', '.join(LOSSES)}")
    if reduction not in ("sum", "mean"):
        raise ConfigError(f"reduction {reduction!r}: expected sum or mean")
    total, grads = None, {}
    for y in graph.outputs:
        m, t = forward[y], (targets or {}).get(y)
        if loss != "sum" and t is None:
            raise ConfigError(f"targets: no target for the output node {y!r} (loss {loss})")
        if loss == "squared" and tuple(t.shape) != tuple(m.shape):  # type: ignore[union-attr]
            raise ShapeError(f"targets[{y}]: expected {tuple(m.shape)}, got {tuple(t.shape)}")  # type: ignore[union-attr]
        if loss == "cross_entropy":
            if t.shape != (m.shape[0],) or t.dtype.is_floating_point:  # type: ignore[union-attr]
                raise ShapeError(f"targets[{y}]: expected ({m.shape[0]},) class ids, got {t!r}")
            if t.numel() and (t.min() < 0 or t.max() >= m.shape[1]):  # type: ignore[union-attr]
                raise ConfigError(f"targets[{y}]: class ids must be in [0, {m.shape[1]})")
        value, grad = LOSSES[loss](m, t)
        scale = 1.0 / m.shape[0] if reduction == "mean" else 1.0
        total = value * scale if total is None else total + value * scale
        grads[y] = grad * scale
    return total, grads  # type: ignore[return-value]


def backprop_messages(
    graph: MessageGraph,
    weights: Mapping[Edge, Tensor],
    inputs: Mapping[str, Tensor],
    targets: Mapping[str, Tensor] | None = None,
    loss: Loss = "squared",
    biases: Mapping[str, Tensor] | None = None,
    reduction: Literal["sum", "mean"] = "sum",
) -> Messages:
    """Backpropagation as message passing (seed 003): eqs. F, B and G on a batch.

    Args:
        graph: the DAG.
        weights: ``(p, c) -> W_cp`` ``(n_c, n_p)``.
        inputs: input node -> ``x`` ``(B, n_x)``.
        targets: output node -> target (see :data:`LOSSES`; none for ``loss="sum"``).
        loss: the ``f`` of every output.
        biases: optional node -> ``b_c``.
        reduction: ``f`` summed over the batch, or its mean.

    Returns:
        every ``M_c``, ``h(M_c)``, ``V_c``, ``dL/dW_cp``, ``dL/db_c`` and ``L``.
    """
    with torch.no_grad():
        m = forward_messages(graph, weights, inputs, biases)
        total, grads = _losses(graph, m, targets, loss, reduction)
        v = backward_messages(graph, weights, m, grads)
        return Messages(
            forward=m,
            outputs=node_outputs(graph, m),
            backward=v,
            weight_grads=message_gradients(graph, m, v),
            bias_grads={c: v[c].sum(0) for c in (biases or {})},
            loss=total,
        )


def autograd_gradients(
    graph: MessageGraph,
    weights: Mapping[Edge, Tensor],
    inputs: Mapping[str, Tensor],
    targets: Mapping[str, Tensor] | None = None,
    loss: Loss = "squared",
    biases: Mapping[str, Tensor] | None = None,
    reduction: Literal["sum", "mean"] = "sum",
) -> dict[Edge, Tensor]:
    """``dL/dW_cp`` by torch autograd through :func:`forward_messages`, to compare with eq. G."""
    with torch.enable_grad():
        w = {k: t.detach().requires_grad_(True) for k, t in weights.items()}
        m = forward_messages(graph, w, inputs, biases)
        total, _ = _losses(graph, m, targets, loss, reduction)
        g = torch.autograd.grad(total, [w[e] for e in graph.edges])
    return dict(zip(graph.edges, g, strict=True))


def init_weights(
    graph: MessageGraph,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> dict[Edge, Tensor]:
    """``W_cp ~ N(0, 1 / fan_in(c))``, ``fan_in(c) = sum_p n_p`` (so ``M_c`` has unit scale)."""
    n = graph.sizes
    std = {c: 1 / math.sqrt(sum(n[p] for p in graph.parents[c]) or 1) for c in n}
    return {(p, c): std[c] * torch.randn(n[c], n[p], generator=generator, dtype=dtype)
            for p, c in graph.edges}  # fmt: skip


class MessagePassingNet(nn.Module):
    """A network on a :class:`MessageGraph` whose weights are parameters.

    ``forward`` returns the output messages (differentiable: train it like any module);
    ``messages`` runs :func:`backprop_messages` on the current weights.

    Args:
        graph: the DAG.
        bias: give every non-input node a bias ``b_c`` (initialised to 0).
        generator: for :func:`init_weights`.
        dtype: of the parameters.
    """

    def __init__(
        self,
        graph: MessageGraph,
        bias: bool = False,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.graph = graph
        w = init_weights(graph, generator, dtype)
        self.weight = nn.ParameterDict({f"{p}->{c}": nn.Parameter(w[(p, c)]) for p, c in w})
        sizes = graph.sizes
        nonin = [c for c in graph.order if c not in graph.inputs]
        self.bias = nn.ParameterDict(
            {c: nn.Parameter(torch.zeros(sizes[c], dtype=dtype)) for c in nonin} if bias else {}
        )

    def weights(self) -> dict[Edge, Tensor]:
        """``(p, c) -> W_cp`` (the parameters themselves)."""
        return {(p, c): self.weight[f"{p}->{c}"] for p, c in self.graph.edges}

    def biases(self) -> dict[str, Tensor] | None:
        return dict(self.bias.items()) or None

    def forward(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        m = forward_messages(self.graph, self.weights(), inputs, self.biases())
        return {y: m[y] for y in self.graph.outputs}

    def messages(
        self,
        inputs: Mapping[str, Tensor],
        targets: Mapping[str, Tensor] | None = None,
        loss: Loss = "squared",
        reduction: Literal["sum", "mean"] = "sum",
    ) -> Messages:
        w = {k: t.detach() for k, t in self.weights().items()}
        b = {k: t.detach() for k, t in (self.biases() or {}).items()} or None
        return backprop_messages(self.graph, w, inputs, targets, loss, b, reduction)


# -- examples -----------------------------------------------------------------------------------
def _layers(act: str, out: int) -> list[Node]:
    hidden = [Node(f"z{i}", 3, act) for i in (1, 2, 3)]
    return [Node("x", 2), *hidden, Node("y", out)]


#: name -> (what it is, its edges), on the seed's layers x (d=2) -> z1, z2, z3 (k=3) -> y.
EXAMPLES: dict[str, tuple[str, list[Edge]]] = {
    "chain": (
        "the seed's y = v^T h(W^3 h(W^2 h(W^1 x))): x(2) -> z1(3) -> z2(3) -> z3(3) -> y(1)",
        [("x", "z1"), ("z1", "z2"), ("z2", "z3"), ("z3", "y")],
    ),
    "residual": (
        "the chain plus residual edges z1 -> z3 and x -> z2 (inputs from earlier layers)",
        [("x", "z1"), ("z1", "z2"), ("z2", "z3"), ("z3", "y"), ("z1", "z3"), ("x", "z2")],
    ),
    "dense": (
        "every layer feeds every later one (a dense network): 10 edges",
        [
            (p, c)
            for i, p in enumerate(("x", "z1", "z2", "z3"))
            for c in ("z1", "z2", "z3", "y")[i:]
        ],
    ),
}


def example_graph(name: str, activation: str = "tanh", output_size: int = 1) -> MessageGraph:
    """A built-in teaching DAG (a key of :data:`EXAMPLES`): hidden ``h = activation``, and
    ``output_size`` units in ``y`` (the seed's scalar ``y`` by default)."""
    if name not in EXAMPLES:
        raise ConfigError(f"example {name!r}: expected one of {', '.join(EXAMPLES)}")
    return MessageGraph(tuple(_layers(activation, output_size)), tuple(EXAMPLES[name][1]))
