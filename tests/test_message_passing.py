"""Backpropagation as message passing (visrep.models.message_passing, seed 003) and
``visrep inspect messages``: every forward message, backward message and gradient against an
independent torch autograd reference on random DAGs, the seed's closed forms, and the errors."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping

import pytest
import torch
import torch.nn.functional as F

from visrep.errors import ConfigError, ShapeError
from visrep.models.message_passing import (
    ACTIVATIONS,
    EXAMPLES,
    MessageGraph,
    MessagePassingNet,
    Node,
    autograd_gradients,
    backprop_messages,
    backward_messages,
    example_graph,
    forward_messages,
    init_weights,
    message_gradients,
)

D = torch.float64
TOL = 1e-10
# the reference's own non-linearities: torch.nn.functional, not the module's table
TORCH_H = {
    "identity": lambda m: m, "relu": F.relu, "leaky_relu": F.leaky_relu, "tanh": torch.tanh,
    "sigmoid": torch.sigmoid, "softplus": F.softplus, "elu": F.elu, "gelu": F.gelu,
}  # fmt: skip


def random_dag(seed: int) -> MessageGraph:
    """A random DAG: 1-2 inputs, 2-6 hidden layers, 1-2 outputs, chain + residual + dense edges,
    random sizes and activations, declared in a shuffled order (so the sort has work to do)."""
    r = random.Random(seed)
    n_in, n_hid, n_out = r.randint(1, 2), r.randint(2, 6), r.randint(1, 2)
    names = [f"x{i}" for i in range(n_in)] + [f"h{i}" for i in range(n_hid)]
    names += [f"y{i}" for i in range(n_out)]
    rank = {n: i for i, n in enumerate(names)}
    edges = set()
    for i, c in enumerate(names[n_in:], start=n_in):
        # every non-input has a parent before it; outputs only take hidden parents or inputs
        edges.add((names[r.randrange(0, min(i, n_in + n_hid))], c))
        for p in names[: min(i, n_in + n_hid)]:
            if r.random() < 0.35:
                edges.add((p, c))
    for p in names[: n_in + n_hid]:  # every input / hidden layer has a child
        if not any(e[0] == p for e in edges):
            edges.add((p, names[r.randrange(max(rank[p] + 1, n_in), len(names))]))
    acts = list(ACTIVATIONS)
    nodes = [Node(n, r.randint(1, 4), r.choice(acts) if n.startswith("h") else None) for n in names]
    r.shuffle(nodes)
    return MessageGraph(tuple(nodes), tuple(sorted(edges)))


def reference(graph, weights, inputs, targets, loss, biases=None, reduction="sum"):
    """Autograd on a plain recursive torch forward (F.linear, torch's activations): the loss,
    dL/dW, dL/db, dL/dx and every dL/dM_c. Knows nothing of orders or messages."""
    w = {k: v.clone().requires_grad_(True) for k, v in weights.items()}
    b = {k: v.clone().requires_grad_(True) for k, v in (biases or {}).items()}
    x = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    acts = {n.name: n.activation or "identity" for n in graph.nodes}
    pre: dict[str, torch.Tensor] = {}

    def m_of(c: str) -> torch.Tensor:
        if c not in pre:
            ps = [p for p, k in graph.edges if k == c]
            if not ps:
                pre[c] = x[c]
            else:
                pre[c] = sum(F.linear(TORCH_H[acts[p]](m_of(p)), w[(p, c)]) for p in ps)
                if c in b:
                    pre[c] = pre[c] + b[c]
                pre[c].retain_grad()
        return pre[c]

    total = 0.0
    for y in graph.outputs:
        m = m_of(y)
        if loss == "squared":
            total = total + 0.5 * F.mse_loss(m, targets[y], reduction="sum")
        elif loss == "cross_entropy":
            total = total + F.cross_entropy(m, targets[y], reduction="sum")
        else:
            total = total + m.sum()
    if reduction == "mean":
        total = total / next(iter(inputs.values())).shape[0]
    total.backward()
    return {
        "loss": total.detach(), "M": {c: t.detach() for c, t in pre.items()},
        "V": {c: t.grad for c, t in pre.items()}, "W": {k: t.grad for k, t in w.items()},
        "b": {k: t.grad for k, t in b.items()}, "x": {k: t.grad for k, t in x.items()},
    }  # fmt: skip


def draw(graph, seed, batch=5, loss="squared", bias=False):
    g = torch.Generator().manual_seed(seed)
    n = graph.sizes
    w = init_weights(graph, g)
    x = {j: torch.randn(batch, n[j], generator=g, dtype=D) for j in graph.inputs}
    if loss == "squared":
        t = {y: torch.randn(batch, n[y], generator=g, dtype=D) for y in graph.outputs}
    elif loss == "cross_entropy":
        t = {y: torch.randint(n[y], (batch,), generator=g) for y in graph.outputs}
    else:
        t = None
    nonin = [c for c in graph.order if c not in graph.inputs]
    b = {c: torch.randn(n[c], generator=g, dtype=D) for c in nonin} if bias else None
    return w, x, t, b


def assert_close(a: Mapping, b: Mapping, what: str) -> None:
    assert set(a) == set(b), what
    for k in a:
        err = float((a[k] - b[k]).abs().max()) if a[k].numel() else 0.0
        assert err <= TOL, f"{what}[{k}]: max abs error {err:.3g}"


# -- against autograd ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(24))
def test_random_dags_match_autograd(seed):
    graph = random_dag(seed)
    loss = ("squared", "cross_entropy", "sum")[seed % 3]
    bias, reduction = seed % 2 == 0, ("sum", "mean")[seed % 4 // 2]
    if loss == "cross_entropy":  # softmax over >= 2 classes
        graph = MessageGraph(
            tuple(Node(n.name, max(n.size, 2), n.activation) if n.name in graph.outputs else n
                  for n in graph.nodes),
            graph.edges,
        )  # fmt: skip
    w, x, t, b = draw(graph, seed, loss=loss, bias=bias)
    msgs = backprop_messages(graph, w, x, t, loss, b, reduction)
    ref = reference(graph, w, x, t, loss, b, reduction)
    assert abs(float(msgs.loss - ref["loss"])) <= TOL
    assert_close(msgs.forward, ref["M"], "M")  # inputs: M_x = x
    assert_close(msgs.backward, ref["V"], "V = dL/dM")  # inputs: V_x = dL/dx
    assert_close(msgs.weight_grads, ref["W"], "dL/dW")
    assert_close(msgs.bias_grads, ref["b"] if bias else {}, "dL/db")


@pytest.mark.parametrize("name", list(EXAMPLES))
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_examples_with_every_activation_match_autograd(name, act):
    graph = example_graph(name, act, output_size=2)
    w, x, t, b = draw(graph, 7, batch=4, bias=True)
    msgs = backprop_messages(graph, w, x, t, "squared", b)
    ref = reference(graph, w, x, t, "squared", b)
    assert_close(msgs.weight_grads, ref["W"], "dL/dW")
    assert_close(msgs.bias_grads, ref["b"], "dL/db")
    assert_close(msgs.weight_grads, autograd_gradients(graph, w, x, t, "squared", b), "autograd")


def test_every_h_prime_is_the_derivative_of_h():
    m = torch.linspace(-4, 4, 801, dtype=D)
    m = m[m.abs() > 1e-9]  # relu-like kinks: no derivative at 0
    for name, (h, dh) in ACTIVATIONS.items():
        z = m.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(h(z).sum(), z)
        assert torch.allclose(dh(m), auto, atol=1e-13, rtol=0), name
        assert torch.allclose(h(m), TORCH_H[name](m), atol=1e-15, rtol=0), name


# -- the seed's closed forms -----------------------------------------------------------------------
def test_single_edge_is_the_least_squares_gradient():
    """x -> y, f = 1/2 ||W x - t||^2: V_y = W x - t, dL/dW = (W x - t) x^T, dL/dx = W^T V_y."""
    g = MessageGraph((Node("x", 2), Node("y", 1)), (("x", "y"),))
    w = {("x", "y"): torch.tensor([[2.0, -1.0]], dtype=D)}
    x, t = torch.tensor([[3.0, 1.0]], dtype=D), torch.tensor([[4.0]], dtype=D)
    m = backprop_messages(g, w, {"x": x}, {"y": t})
    assert m.forward["y"].item() == 5.0 and m.backward["y"].item() == 1.0
    assert m.loss.item() == 0.5
    assert m.weight_grads[("x", "y")].tolist() == [[3.0, 1.0]]
    assert m.backward["x"].tolist() == [[2.0, -1.0]]


def test_chain_gradients_are_the_seeds_nested_sums():
    """Seed 003: dF/dv_c = h(M_c) f'(M_y), dF/dW3_c'c = h(M_c') h'(M_c) v_c f'(M_y) and
    dF/dW2_c''c' = h(M_c'') h'(M_c') sum_c W3_c'c h'(M_c) v_c f'(M_y), written out (einsum)."""
    g = example_graph("chain", "tanh")
    w, x, t, _ = draw(g, 3, batch=1)
    m = backprop_messages(g, w, x, t)
    hm = {c: torch.tanh(m.forward[c][0]) for c in ("z1", "z2", "z3")}
    dh = {c: 1 - hm[c] ** 2 for c in hm}
    v, w3, fp = w[("z3", "y")][0], w[("z2", "z3")], (m.forward["y"] - t["y"]).item()
    assert torch.allclose(m.weight_grads[("z3", "y")][0], hm["z3"] * fp, atol=TOL)
    d3 = torch.outer(dh["z3"] * v * fp, hm["z2"])  # rows: units of z3 (the child)
    assert torch.allclose(m.weight_grads[("z2", "z3")], d3, atol=TOL)
    d2 = torch.outer(dh["z2"] * torch.einsum("cq,c->q", w3, dh["z3"] * v * fp), hm["z1"])
    assert torch.allclose(m.weight_grads[("z1", "z2")], d2, atol=TOL)


def test_batch_gradient_is_the_sum_of_per_sample_gradients_and_mean_divides():
    g = example_graph("dense", "relu", output_size=3)
    w, x, t, b = draw(g, 11, batch=6, bias=True)
    whole = backprop_messages(g, w, x, t, "squared", b)
    singles = [
        backprop_messages(g, w, {"x": x["x"][i : i + 1]}, {"y": t["y"][i : i + 1]}, "squared", b)
        for i in range(6)
    ]
    for e in g.edges:
        assert torch.allclose(whole.weight_grads[e], sum(s.weight_grads[e] for s in singles))
    mean = backprop_messages(g, w, x, t, "squared", b, reduction="mean")
    for e in g.edges:
        assert torch.allclose(mean.weight_grads[e], whole.weight_grads[e] / 6, atol=TOL)
    assert torch.allclose(mean.loss, whole.loss / 6)


def test_pieces_compose_and_follow_the_dtype():
    g = example_graph("residual")
    w, x, t, _ = draw(g, 5)
    w32 = {k: v.float() for k, v in w.items()}
    m = forward_messages(g, w32, {"x": x["x"].float()})
    v = backward_messages(g, w32, m, {"y": m["y"] - t["y"].float()})
    grads = message_gradients(g, m, v)
    assert all(t.dtype == torch.float32 for t in grads.values())
    full = backprop_messages(g, w, x, t)
    for e in g.edges:
        assert torch.allclose(grads[e].double(), full.weight_grads[e], atol=1e-5)


def test_several_inputs_and_outputs():
    nodes = (Node("a", 2), Node("b", 3), Node("h", 4, "sigmoid"), Node("y1", 2), Node("y2", 1))
    edges = (("a", "h"), ("b", "h"), ("h", "y1"), ("h", "y2"), ("b", "y2"))
    g = MessageGraph(nodes, edges)
    assert g.inputs == ("a", "b") and g.outputs == ("y1", "y2")
    w, x, t, b = draw(g, 2, bias=True)
    m, ref = backprop_messages(g, w, x, t, "squared", b), reference(g, w, x, t, "squared", b)
    assert_close(m.weight_grads, ref["W"], "dL/dW")
    assert_close({c: m.backward[c] for c in x}, ref["x"], "dL/dx")


# -- graph -----------------------------------------------------------------------------------------
def test_topological_order_respects_edges_and_the_given_order():
    g = MessageGraph(
        (Node("y", 1), Node("b", 2, "relu"), Node("a", 2, "relu"), Node("x", 2)),
        (("x", "a"), ("x", "b"), ("a", "y"), ("b", "y")),
    )
    assert g.order == ("x", "b", "a", "y")  # b before a: b is given first
    for seed in range(10):
        d = random_dag(seed)
        pos = {n: i for i, n in enumerate(d.order)}
        assert all(pos[p] < pos[c] for p, c in d.edges) and sorted(d.order) == sorted(d.sizes)


def _nodes(*spec):
    return tuple(Node(*s) if isinstance(s, tuple) else Node(s, 2) for s in spec)


@pytest.mark.parametrize(
    ("nodes", "edges", "message"),
    [
        (_nodes("x", "a", "b", "y"), [("x", "a"), ("a", "b"), ("b", "a"), ("b", "y")],
         "the edges form a cycle: "),
        (_nodes("x", "y"), [("x", "y"), ("y", "y")], "edge y -> y is a self-loop"),
        (_nodes("x", "y"), [("x", "z")], "edge x -> z: unknown node 'z'"),
        (_nodes("x", "x", "y"), [("x", "y")], "node 'x' is given twice"),
        (_nodes("x", "y"), [("x", "y"), ("x", "y")], "edge x -> y is given twice"),
        (_nodes("x", "y", "z"), [("x", "y")], "node 'z' has no edges"),
        (_nodes(("x", 0), "y"), [("x", "y")], "node 'x': size must be an integer >= 1, got 0"),
        (_nodes("x", ("h", 2, "swish"), "y"), [("x", "h"), ("h", "y")],
         "node 'h': unknown activation 'swish'"),
        (_nodes(("x", 2, "tanh"), "y"), [("x", "y")], "node 'x' is an input"),
        (_nodes("x", ("y", 2, "relu")), [("x", "y")], "node 'y' is an output"),
        (_nodes("x.1", "y"), [("x.1", "y")], "node name 'x.1'"),
        ((), [], "no nodes"),
    ],
)  # fmt: skip
def test_bad_graphs_raise_one_line_config_errors(nodes, edges, message):
    with pytest.raises(ConfigError) as e:
        MessageGraph(nodes, tuple(edges))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_cycle_is_named():
    nodes = _nodes("x", "a", "b", "c", "y")
    edges = (("x", "a"), ("a", "b"), ("b", "c"), ("c", "a"), ("c", "y"))
    with pytest.raises(
        ConfigError, match=r"cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"
    ):
        MessageGraph(nodes, edges)


def test_bad_weights_inputs_and_targets():
    g = example_graph("chain")
    w, x, t, _ = draw(g, 0)
    cases = [
        (ConfigError, "weights[x -> z1]: W_cp must be (n_c, n_p) = (3, 2), got (2, 3)",
         dict(weights={**w, ("x", "z1"): w[("x", "z1")].T})),
        (ConfigError, "no W_cp for the edge z3 -> y",
         dict(weights={k: v for k, v in w.items() if k != ("z3", "y")})),
        (ConfigError, "is not an edge", dict(weights={**w, ("x", "y"): torch.zeros(1, 2)})),
        (ConfigError, "biases[z1]: expected (3,), got (2,)", dict(biases={"z1": torch.zeros(2)})),
        (ConfigError, "biases: 'x' is not a non-input node", dict(biases={"x": torch.zeros(2)})),
        (ShapeError, "inputs[x]: expected (B, 2), got (5, 3)", dict(inputs={"x": torch.zeros(5, 3)})),
        (ConfigError, "inputs: no value for the input node 'x'", dict(inputs={})),
        (ShapeError, "targets[y]: expected (5, 1), got (5,)", dict(targets={"y": torch.zeros(5)})),
        (ConfigError, "targets: no target for the output node 'y'", dict(targets={})),
        (ConfigError, "class ids must be in [0, 1)",
         dict(targets={"y": torch.ones(5, dtype=torch.long)}, loss="cross_entropy")),
        (ConfigError, "loss 'hinge'", dict(loss="hinge")),
    ]  # fmt: skip
    for err, message, kw in cases:
        args = dict(weights=w, inputs=x, targets=t) | kw
        with pytest.raises(err) as e:
            backprop_messages(g, args.pop("weights"), args.pop("inputs"), args.pop("targets"),
                              **args)  # fmt: skip
        assert message in str(e.value) and "\n" not in str(e.value), (message, str(e.value))


# -- module == function ----------------------------------------------------------------------------
def test_module_forward_is_the_function_and_autograd_agrees_with_its_messages():
    g = random_dag(3)
    net = MessagePassingNet(g, bias=True, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in net.bias.values():
            p.normal_(generator=torch.Generator().manual_seed(1))
    _, x, t, _ = draw(g, 4)
    out = net(x)
    ref = forward_messages(g, net.weights(), x, net.biases())
    assert set(out) == set(g.outputs) and all(torch.equal(out[y], ref[y]) for y in out)
    sum(0.5 * (out[y] - t[y]).square().sum() for y in out).backward()
    m = net.messages(x, t)
    for (p, c), grad in m.weight_grads.items():
        assert torch.allclose(net.weight[f"{p}->{c}"].grad, grad, atol=TOL, rtol=0)
    for c, grad in m.bias_grads.items():
        assert torch.allclose(net.bias[c].grad, grad, atol=TOL, rtol=0)


# -- visrep inspect messages -----------------------------------------------------------------------
def test_inspect_messages_prints_every_message_and_the_autograd_check(cli, tmp_path):
    code, out, err = cli("inspect", "messages", "--example", "dense", "--batch_size", "2",
                         "--json", tmp_path / "m.json")  # fmt: skip
    assert code == 0, err
    assert "M_z3 = W_z3,x M_x + W_z3,z1 h(M_z1) + W_z3,z2 h(M_z2)" in out
    assert "V_z1 = tanh'(M_z1) * (W_z2,z1^T V_z2 + W_z3,z1^T V_z3 + W_y,z1^T V_y)" in out
    assert "dL/dW_y,x = V_y^T M_x" in out and out.count("\n  dL/dW_") == 10
    check = next(ln for ln in out.splitlines() if ln.startswith("autograd check"))
    assert float(check.split("= ")[1].split()[0]) <= TOL
    data = json.loads((tmp_path / "m.json").read_text())
    assert len(data["forward"]["M_x"]) == 2 and len(data["weight_grads"]) == 10


def test_inspect_messages_reads_a_network_file(cli, tmp_path):
    """The file's own weights, inputs and targets: x -> y with W = [[2, -1]], x = (3, 1),
    t = 4, so M_y = 5, V_y = 1, dL/dW = (3, 1) and V_x = (2, -1)."""
    f = tmp_path / "net.yaml"
    f.write_text(
        "nodes: [{name: x, size: 2}, {name: y, size: 1}]\nedges: ['x -> y']\n"
        "weights: {'x -> y': [[2, -1]]}\ninputs: {x: [[3, 1]]}\ntargets: {y: [[4]]}\n"
    )
    code, out, err = cli("inspect", "messages", f, "--precision", "2")
    assert code == 0, err
    lines = out.splitlines()
    value = lambda label: lines[lines.index(f"  {label}") + 1].split()  # noqa: E731
    assert value("M_y = W_y,x M_x") == ["5.00"]
    assert value("V_y = f'(M_y)") == ["1.00"]
    assert value("dL/dW_y,x = V_y^T M_x") == ["3.00", "1.00"]
    assert value("V_x = W_y,x^T V_y   (= dL/dx)") == ["2.00", "-1.00"]
    assert "L = sum over outputs y of f(M_y) = 0.5" in out


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        ("nodes: [{name: x, size: 2}, {name: y, size: 1}]\nedges: ['x -> y', 'y -> x']\n", [],
         "the edges form a cycle"),
        ("nodes: [{name: x, size: 2}, {name: y, size: 1}]\nedges: ['x -> q']\n", [],
         "unknown node 'q'"),
        ("nodes: [{name: x, size: 2}, {name: y, size: 1}]\nedges: ['x -> y']\n"
         "weights: {'x -> y': [[1, 2, 3]]}\n", [], "W_cp must be (n_c, n_p) = (1, 2), got (1, 3)"),
        ("nodes: [{name: x, size: 2}]\nedges: []\nlayers: 3\n", [], "unknown keys ['layers']"),
        ("nodes: [{name: x, size: 2}, {name: y, size: 1}]\nedges: ['x -> y']\n",
         ["--example", "chain"], "a network file or --example, not both"),
        ("nodes: [{name: x, size: 2}, {name: y, size: 1}]\nedges: ['x -> y']\n",
         ["--loss", "cross_entropy"], "needs outputs of >= 2 units; 'y' has 1"),
    ],
)  # fmt: skip
def test_inspect_messages_bad_input_gives_one_error_line(cli, tmp_path, text, args, message):
    f = tmp_path / "net.yaml"
    f.write_text(text)
    code, _, err = cli("inspect", "messages", f, *args)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err


def test_inspect_messages_missing_file(cli, tmp_path):
    code, _, err = cli("inspect", "messages", tmp_path / "nope.yaml")
    assert code == 2 and "no such file" in err and err.count("\n") == 1


def test_inspect_messages_offers_every_activation():
    import typing

    from visrep.commands.inspect import Activation

    assert typing.get_args(Activation) == tuple(ACTIVATIONS)
