"""``visrep inspect model|stability|compare|messages``: look inside models and runs.

``model`` prints the per-layer table of :func:`visrep.analysis.model_stats.model_stats` (output
shapes, receptive fields, parameters, MACs/FLOPs, activation memory; seed 002) for a run, a
checkpoint, an experiment config or a bare backbone. ``stability`` measures a NAIS-Net run
(Ciccone et al., NeurIPS 2018; seed 000) and ``compare`` puts runs side by side. ``messages``
prints backpropagation as message passing (seed 003) on a tiny network, for teaching.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Sequence
from json import dumps as json_dumps
from pathlib import Path
from typing import Any, Literal

import torch

from visrep.analysis.compare import compare_runs, comparison_markdown, comparison_tables
from visrep.analysis.model_stats import ModelStats, model_stats
from visrep.analysis.runs import load_run
from visrep.analysis.samples import class_names
from visrep.analysis.sources import model_from_backbone, model_from_config, model_from_run
from visrep.analysis.stability_summary import stability_metrics, stability_of_run
from visrep.commands._common import Command, Which, check_positive, run_subcommands
from visrep.errors import ConfigError
from visrep.models.message_passing import (
    Edge,
    MessageGraph,
    Messages,
    Node,
    autograd_gradients,
    backprop_messages,
    check_params,
    example_graph,
    init_weights,
)
from visrep.plots.stability import plot_depth, plot_noise, plot_spectral, plot_trajectories
from visrep.report import build_report
from visrep.runs import RunDir


def _console() -> Any:
    from rich.console import Console

    # A pipe or a test gets a wide table rather than rich's 80-column default.
    wide = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", 0)) or 200
    return Console(width=wide)


def _check_output(option: str, path: str | None) -> None:
    """An output file option must not name a folder (checked before any work)."""
    if path is not None and Path(path).is_dir():
        raise ConfigError(f"--{option} {path!r} is a folder; expected a file name")


def _write(path: str, text: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    RunDir(p.parent).write_text(p, text)


# -- model -----------------------------------------------------------------------------------------
def model(
    source: str | None = None,
    *,
    config: str | None = None,
    backbone: str | None = None,
    backbone_args: dict[str, Any] | None = None,
    in_chans: int | None = None,
    num_classes: int = 10,
    input_size: tuple[int, int, int] | None = None,
    batch_size: int = 1,
    which: Which = "best",
    csv: str | None = None,
    json: str | None = None,
    markdown: str | None = None,
) -> int:
    """Per-layer table of a model: shapes, receptive fields, params, MACs/FLOPs, memory.

    Args:
        source: a run directory or a checkpoint (.ckpt).
        config: an experiment config (a shipped name or a YAML path) whose model is measured.
        backbone: a backbone name (resnet18 ...).
        backbone_args: the backbone's own options, e.g. '{"width": 64}'.
        in_chans: input channels of --backbone (default: C of --input_size, else 3).
        num_classes: classes of --backbone (or of a config whose data cannot be loaded).
        input_size: input size C H W (default: from the run or config data; 32x32 for
            --backbone).
        batch_size: batch of the measured forward pass.
        which: the checkpoint of a run.
        csv: also write the table as CSV here.
        json: ... as JSON (rows and totals).
        markdown: ... as a Markdown table.
    """
    given = {"source": source, "config": config, "backbone": backbone}
    sources = [n for n, v in given.items() if v is not None]
    if len(sources) != 1:
        raise ConfigError(
            "visrep inspect model needs exactly one of: a run directory or checkpoint, --config "
            f"NAME_OR_PATH, --backbone NAME (got {', '.join(sources) or 'none'})"
        )
    check_positive(batch_size=batch_size, in_chans=in_chans)
    if num_classes < 0:
        raise ConfigError(f"--num_classes must be >= 0 (0: no classifier), got {num_classes}")
    for option, path in (("csv", csv), ("json", json), ("markdown", markdown)):
        _check_output(option, path)
    if input_size is not None and min(input_size) < 1:
        raise ConfigError(f"--input_size must be positive, got {' '.join(map(str, input_size))}")
    run = None
    if source is not None:
        net, size, loaded = model_from_run(source, which, input_size)
        if Path(source).is_dir() or loaded.checkpoint.parent == loaded.run.checkpoints:
            run = loaded.run
            run.lock().check()
    elif config is not None:
        net, size = model_from_config(config, input_size, num_classes)
    else:
        net, size = model_from_backbone(backbone, backbone_args, in_chans, num_classes, input_size)
    stats = model_stats(net, (batch_size, *size))
    _print_model(stats)
    outputs = {"csv": (csv, stats.to_csv), "json": (json, stats.to_json),
               "markdown": (markdown, stats.to_markdown)}  # fmt: skip
    for path, render in outputs.values():
        if path:
            _write(path, render())
            print(f"wrote {path}")
    if run is not None:
        with run.lock():
            run.write_text(run.root / "model_stats.csv", stats.to_csv())
        print(f"wrote {run.root / 'model_stats.csv'}")
    return 0


def _print_model(stats: ModelStats) -> None:
    stats.print(_console())
    print(
        f"params {stats.total_params:,} (trainable {stats.trainable_params:,}), "
        f"MACs {stats.total_macs:,}, FLOPs {stats.total_flops:,}, "
        f"input {'x'.join(map(str, stats.input_shape))}"
    )


# -- stability -------------------------------------------------------------------------------------
def stability(
    run_dir: str,
    *,
    num_samples: int = 256,
    noise_levels: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0),
    tol: float | None = None,
    max_steps: int | None = None,
    tol_sweep: Sequence[float] = (),
    n_iter: int = 50,
    batch_size: int = 256,
    which: Which = "best",
    seed: int = 0,
) -> int:
    """NAIS-Net stability of a run: constraint margins, Jacobian spectra, trajectories, depth.

    Measures a trained NAIS-Net run: constraint margins, Jacobian spectral radius, trajectories,
    noise response, pattern-dependent depth and the compute it saves. Writes stability.json,
    plots/stability_*.png, the stability/... keys of metrics.json and rebuilds report.html.

    Args:
        run_dir: a run directory (or checkpoint) of a NAIS-Net model.
        num_samples: test samples for the curves.
        noise_levels: noise norms as fractions of the mean input norm.
        tol: stopping threshold (default: the model's own, else 1e-3).
        max_steps: K_max (default: the model's).
        tol_sweep: more thresholds to report accuracy and compute for.
        n_iter: power iterations per Jacobian.
        batch_size: evaluation batch size.
        which: the checkpoint of the run.
        seed: samples, noise and power-iteration start vectors.
    """
    check_positive(num_samples=num_samples, n_iter=n_iter, batch_size=batch_size,
                   max_steps=max_steps)  # fmt: skip
    loaded = load_run(run_dir, which)
    loaded.run.lock().check()  # before the measurements, not after
    s, c = stability_of_run(
        loaded, num_samples=num_samples, noise_levels=list(noise_levels), tol=tol,
        max_steps=max_steps, tol_sweep=list(tol_sweep), n_iter=n_iter, batch_size=batch_size,
        seed=seed,
    )  # fmt: skip
    rd = loaded.run
    names = class_names(loaded.task) or [str(i) for i in range(max(s["classes"]) + 1)]
    with rd.lock():
        plot_trajectories(c["traj"], c["tol"], rd.plots / "stability_trajectories.png")
        plot_noise(c["noise_blocks"], c["noise_model"], rd.plots / "stability_noise.png")
        plot_depth(c["hist"].counts, c["hist"].classes, names, rd.plots / "stability_depth.png")
        plot_spectral(c["rho"], c["at"], rd.plots / "stability_spectral_radius.png")
        rd.write_text(rd.root / "stability.json", json.dumps(s, indent=2) + "\n")
        rd.update_metrics(stability_metrics(s))
        report = build_report(rd.root)
    _print_stability(s, str(rd.root))
    print(f"wrote {rd.root / 'stability.json'}, {rd.plots}/stability_*.png, {report}")
    return 0


def _print_stability(s: dict[str, Any], run_dir: str) -> None:
    from rich.table import Table

    short = lambda n: n.removeprefix("backbone.")  # noqa: E731
    t = Table(title=f"NAIS-Net stability: {run_dir}")
    for h in ("block", "kind", "K_max", "tol", "margin min", "margin mean", "rho max", "rho mean",
              "rho active max", "mean depth", "stopped early"):  # fmt: skip
        t.add_column(h, justify="left" if h in ("block", "kind") else "right")
    for n, b in s["blocks"].items():
        t.add_row(short(n), b["kind"], str(b["max_steps"]), f"{b['tol']:g}",
                  f"{b['margin_min']:.3g}", f"{b['margin_mean']:.3g}", f"{b['rho_max']:.4f}",
                  f"{b['rho_mean']:.4f}", f"{b['rho_active_max']:.4f}", f"{b['mean_depth']:.2f}",
                  f"{100 * b['stopped_early']:.1f}%")  # fmt: skip
    c = Table(title=f"fixed K_max vs adaptive depth (test set, {s['num_test']} samples)")
    for h in ("", "test acc", "block-steps", "FLOPs/sample"):
        c.add_column(h, justify="left" if not h else "right")
    c.add_row("fixed K_max", f"{s['acc_fixed']:.4f}", str(s["block_steps_fixed"]),
              f"{s['flops_fixed']:,.0f}")  # fmt: skip
    c.add_row("adaptive", f"{s['acc_adaptive']:.4f}", f"{s['block_steps_adaptive']:.2f}",
              f"{s['flops_adaptive']:,.0f}")  # fmt: skip
    for r in s["tol_sweep"]:
        c.add_row(f"adaptive tol={r['tol']:g}", f"{r['acc']:.4f}", f"{r['block_steps']:.2f}",
                  f"{r['flops']:,.0f}")  # fmt: skip
    con = _console()
    con.print(t)
    con.print(c)
    con.print(
        f"FLOPs saved by adaptive depth: {100 * s['flops_saved']:.1f}%  "
        f"(prediction agreement with K_max: {100 * s['agreement']:.1f}%)"
    )


# -- compare ---------------------------------------------------------------------------------------
def compare(
    runs: list[str],
    *,
    sigmas: Sequence[float] = (0.0, 0.1, 0.2, 0.3),
    out: str | None = None,
    batch_size: int = 256,
    which: Which = "best",
    seed: int = 0,
) -> int:
    """Runs side by side: accuracy, generalisation gap, params, FLOPs, depth, noise robustness.

    Train / test accuracy of each run's checkpoint in eval mode, the generalisation gap,
    parameters, FLOPs, NAIS-Net depth and robustness to Gaussian pixel noise.

    Args:
        runs: run directories (or checkpoints).
        sigmas: std of the Gaussian pixel noise (images in [0, 1]).
        out: write comparison.md and comparison.json into this directory.
        batch_size: evaluation batch size.
        which: the checkpoint of each run.
        seed: the noise.
    """
    check_positive(batch_size=batch_size)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out!r} is a file; expected a folder")
    rows = compare_runs(runs, list(sigmas), batch_size, seed, which)
    from rich.table import Table

    con = _console()
    (head, body), (nhead, nbody) = comparison_tables(rows)
    for title, h, b in (("runs", head, body), ("robustness to Gaussian input noise", nhead, nbody)):
        t = Table(title=title)
        for i, col in enumerate(h):
            t.add_column(col, justify="left" if i < 2 else "right")
        for r in b:
            t.add_row(*r)
        con.print(t)
    if out:
        target = RunDir(out)
        target.root.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"sigmas": list(sigmas), "runs": rows}, indent=2) + "\n"
        # --out may be a run directory: then one writer at a time
        with target.lock() if target.is_run() else contextlib.nullcontext():
            target.write_text(target.root / "comparison.md", comparison_markdown(rows))
            target.write_text(target.root / "comparison.json", data)
        print(f"wrote {target.root / 'comparison.md'} and {target.root / 'comparison.json'}")
    return 0


# -- messages --------------------------------------------------------------------------------------
Activation = Literal["identity", "relu", "leaky_relu", "tanh", "sigmoid", "softplus", "elu", "gelu"]
_NETWORK_KEYS = ("weights", "biases", "inputs", "targets")


def messages(
    graph: str | None = None,
    *,
    example: Literal["chain", "residual", "dense"] | None = None,
    activation: Activation = "tanh",
    output_size: int = 1,
    loss: Literal["squared", "cross_entropy", "sum"] = "squared",
    batch_size: int = 1,
    seed: int = 0,
    precision: int = 4,
    json: str | None = None,
) -> int:
    """Backpropagation as message passing (seed 003), every message of a tiny network printed.

    Prints the forward messages M_c = sum_p W_cp h(M_p), the loss, the backward messages
    V_c = h'(M_c) sum_c' W_c'c^T V_c' (V_y = f'(M_y) at an output) and the gradients
    dL/dW_cp = V_c^T h(M_p) of a built-in DAG or of a network file (float64), and checks the
    gradients against torch autograd.

    Args:
        graph: a YAML or JSON network file: nodes ([{name, size, activation}]), edges
            (["p -> c", ...]) and optionally weights ({"p -> c": W_cp as rows, one per unit of
            c}), biases ({c: b_c}), inputs ({x: rows, one per sample}) and targets ({y: rows,
            or class ids for cross_entropy}); what is not given is drawn from --seed.
        example: a built-in DAG on x(2) -> z1, z2, z3 (3 units each) -> y (default chain):
            chain (the seed's y = v^T h(W^3 h(W^2 h(W^1 x)))), residual (plus z1 -> z3 and
            x -> z2), dense (every layer to every later one).
        activation: h of the example's hidden layers.
        output_size: units of the example's output y.
        loss: f at every output: squared (1/2 ||M_y - t||^2), cross_entropy (softmax; targets
            are class ids), sum (f = sum of M_y, so V_y = 1).
        batch_size: samples drawn when the file gives no inputs.
        seed: the weights, inputs and targets that are not given.
        precision: decimals printed.
        json: also write every message and gradient to this JSON file.
    """
    if graph is not None and example is not None:
        raise ConfigError("visrep inspect messages takes a network file or --example, not both")
    check_positive(output_size=output_size, batch_size=batch_size)
    if not 0 <= precision <= 12:
        raise ConfigError(f"--precision must be in [0, 12], got {precision}")
    _check_output("json", json)
    given: dict[str, dict[Any, Any] | None] = dict.fromkeys(_NETWORK_KEYS)
    if graph is None:
        net = example_graph(example or "chain", activation, output_size)
    else:
        net, given = _read_network(graph)
    gen = torch.Generator().manual_seed(seed)
    w = given["weights"] or init_weights(net, gen)
    sizes = net.sizes
    if loss == "cross_entropy":
        small = [y for y in net.outputs if sizes[y] < 2]
        if small:
            raise ConfigError(
                f"--loss cross_entropy needs outputs of >= 2 units; {small[0]!r} has "
                f"{sizes[small[0]]} (set --output_size)"
            )
    x = given["inputs"] or {
        j: torch.randn(batch_size, sizes[j], generator=gen, dtype=torch.float64) for j in net.inputs
    }
    b = len(next(iter(x.values()))) if x else batch_size
    draw = {
        "squared": lambda n: torch.randn(b, n, generator=gen, dtype=torch.float64),
        "cross_entropy": lambda n: torch.randint(n, (b,), generator=gen),
        "sum": lambda n: None,
    }[loss]
    t = given["targets"] or {y: draw(sizes[y]) for y in net.outputs}
    t = {k: v for k, v in t.items() if v is not None} or None
    where = f"network {graph!r}" if graph else f"example {example or 'chain'!r}"
    try:
        msgs = backprop_messages(net, w, x, t, loss, given["biases"])
        auto = autograd_gradients(net, w, x, t, loss, given["biases"])
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    print(_messages_text(net, w, msgs, precision))
    err = max(float((msgs.weight_grads[e] - auto[e]).abs().max()) for e in net.edges)
    print(f"\nautograd check: max |dL/dW (messages) - dL/dW (autograd)| = {err:.3g} "
          f"over {len(net.edges)} weight matrices (float64)")  # fmt: skip
    if json:
        _write(json, json_dumps(_messages_dict(msgs), indent=1) + "\n")
        print(f"wrote {json}")
    return 0


def _read_network(path: str) -> tuple[MessageGraph, dict[str, dict[Any, Any] | None]]:
    """A network file (YAML or JSON): the checked graph and its given tensors (or None)."""
    from visrep.configs import read_config

    if not Path(path).is_file():
        raise ConfigError(f"network {path!r}: no such file; expected a YAML or JSON network file")
    data, where = read_config(path), f"network {path!r}"
    unknown = set(data) - {"nodes", "edges", *_NETWORK_KEYS}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected nodes, edges, "
                          f"{', '.join(_NETWORK_KEYS)}")  # fmt: skip
    for key in ("nodes", "edges"):
        if not isinstance(data.get(key), list):
            raise ConfigError(f"{where}: {key!r} must be a list")
    nodes = []
    for n in data["nodes"]:
        if not isinstance(n, dict) or "name" not in n or set(n) - {"name", "size", "activation"}:
            raise ConfigError(f"{where}: node {n!r}: expected {{name, size, activation}}")
        nodes.append(Node(n["name"], n.get("size", 0), n.get("activation")))
    try:
        net = MessageGraph(tuple(nodes), tuple(_edge(e, where) for e in data["edges"]))
    except ConfigError as e:
        raise ConfigError(str(e) if str(e).startswith(where) else f"{where}: {e}") from None
    given: dict[str, dict[Any, Any] | None] = dict.fromkeys(_NETWORK_KEYS)
    for key in _NETWORK_KEYS:
        if data.get(key) is None:
            continue
        if not isinstance(data[key], dict):
            raise ConfigError(f"{where}: {key!r} must be a mapping")
        given[key] = {}
        for k, v in data[key].items():
            ids = key == "targets" and isinstance(v, list) and all(type(i) is int for i in v)
            name = _edge(k, where) if key == "weights" else str(k)
            given[key][name] = _tensor(v, f"{where}: {key}[{k}]", torch.long if ids else None)
    try:
        if given["weights"] is not None:
            check_params(net, given["weights"], given["biases"])
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return net, given


def _edge(e: Any, where: str) -> Edge:
    if isinstance(e, str) and "->" in e:
        p, c = (s.strip() for s in e.split("->", 1))
        return p, c
    if isinstance(e, list) and len(e) == 2:
        return str(e[0]), str(e[1])
    raise ConfigError(f"{where}: edge {e!r}: expected 'parent -> child' or [parent, child]")


def _tensor(v: Any, where: str, dtype: torch.dtype | None) -> torch.Tensor:
    try:
        return torch.tensor(v, dtype=dtype or torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"{where}: expected a (nested) list of numbers, got {v!r}") from None


def _messages_text(
    net: MessageGraph, w: dict[Edge, torch.Tensor], m: Messages, precision: int
) -> str:
    """One equation of seed 003 per message, in the order the messages are sent."""

    def eq(label: str, t: torch.Tensor) -> list[str]:
        rows = t.reshape(t.shape[0] if t.dim() else 1, -1).tolist()
        return [f"  {label}"] + [
            "      " + " ".join(f"{v:{precision + 4}.{precision}f}" for v in r) for r in rows
        ]

    act = {c: net.activation(c) for c in net.order}
    h = {c: f"M_{c}" if act[c] == "identity" else f"h(M_{c})" for c in net.order}
    unit = lambda c: f"{c}({net.sizes[c]}{'' if act[c] == 'identity' else ', ' + act[c]})"  # noqa: E731
    out = [
        f"nodes: {', '.join(unit(n.name) for n in net.nodes)}",
        "edges: " + ", ".join(f"{p} -> {c} (W_{c},{p} {tuple(w[(p, c)].shape)})"
                              for p, c in net.edges),
        f"topological order: {', '.join(net.order)};  batch of {len(m.forward[net.order[0]])}",
        "",
        "forward messages  M_c = sum_p W_cp h(M_p)   (inputs: M_x = x; h is not applied to x)",
    ]  # fmt: skip
    for c in net.order:
        ps = net.parents[c]
        rhs = " + ".join(f"W_{c},{p} {h[p]}" for p in ps) if ps else "x"
        out += eq(f"M_{c} = {rhs}" + (f" + b_{c}" if c in m.bias_grads else ""), m.forward[c])
        if ps and net.children[c] and act[c] != "identity":
            out += eq(f"h(M_{c}) = {act[c]}(M_{c})", m.outputs[c])
    out += ["", f"loss  L = sum over outputs y of f(M_y) = {float(m.loss):.{precision + 2}g}", "",
            "backward messages  V_c = h'(M_c) sum_c' W_c'c^T V_c'   (outputs: V_y = f'(M_y))"]  # fmt: skip
    for c in reversed(net.order):
        ks = net.children[c]
        s = " + ".join(f"W_{k},{c}^T V_{k}" for k in ks)
        rhs = f"f'(M_{c})" if not ks else s if act[c] == "identity" else f"{act[c]}'(M_{c}) * ({s})"
        out += eq(f"V_{c} = {rhs}" + ("   (= dL/dx)" if not net.parents[c] else ""), m.backward[c])
    out += ["", "gradients  dL/dW_cp = V_c^T h(M_p)   (summed over the batch)"]
    for p, c in net.edges:
        out += eq(f"dL/dW_{c},{p} = V_{c}^T {h[p]}", m.weight_grads[(p, c)])
    for c, g in m.bias_grads.items():
        out += eq(f"dL/db_{c} = sum_i V_{c}", g[None])
    return "\n".join(out)


def _messages_dict(m: Messages) -> dict[str, Any]:
    return {
        "loss": float(m.loss),
        "forward": {f"M_{c}": t.tolist() for c, t in m.forward.items()},
        "outputs": {f"h(M_{c})": t.tolist() for c, t in m.outputs.items()},
        "backward": {f"V_{c}": t.tolist() for c, t in m.backward.items()},
        "weight_grads": {f"dL/dW_{c},{p}": t.tolist() for (p, c), t in m.weight_grads.items()},
        "bias_grads": {f"dL/db_{c}": t.tolist() for c, t in m.bias_grads.items()},
    }


COMMANDS = {
    "model": Command(model, config=False),  # its --config is the experiment config to measure
    "stability": Command(stability),
    "compare": Command(compare),
    "messages": Command(messages),
}


def main(argv: Sequence[str]) -> int:
    """Run ``visrep inspect ...``; returns the exit code."""
    doc = "look inside models and runs: per-layer tables, NAIS-Net stability, comparisons"
    return run_subcommands(COMMANDS, "visrep inspect", doc, argv)
