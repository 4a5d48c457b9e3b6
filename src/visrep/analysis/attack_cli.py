"""``visrep attack RUN_DIR``: FGSM, PGD and DeepFool robustness of a trained classification run.

Writes into the run directory: ``robustness.csv`` (accuracy per attack and budget),
``plots/robustness.png`` (accuracy-vs-epsilon curves and DeepFool's perturbation norms),
``plots/adversarial_examples.png`` (clean, amplified perturbation and adversarial images with
their predictions), the keys ``attack/...`` of ``metrics.json``, then rebuilds ``report.html``.
DeepFool's accuracy at a budget counts the samples whose minimal-L2 perturbation, measured in
``--norm``, exceeds it: an upper bound on the robust accuracy, not an attack at that budget.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from jsonargparse import ArgumentParser
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from visrep.analysis.robustness import attack_accuracy, deepfool_accuracy, rho_adv
from visrep.analysis.runs import load_run, spread_indices
from visrep.attacks import DeepFoolResult, deepfool, fgsm, perturbation_norms, pgd
from visrep.errors import ConfigError
from visrep.plots.robustness import (
    plot_adversarial_examples,
    plot_robustness,
    plot_robustness_comparison,
)
from visrep.report import build_report
from visrep.runs import RunDir

ATTACKS = ("fgsm", "pgd", "deepfool")
DEFAULT_EPS = {
    "linf": (0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2),
    "l2": (0.0, 0.1, 0.25, 0.5, 1.0, 2.0),
}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="visrep attack", description=__doc__.splitlines()[0], exit_on_error=False
    )
    p.add_argument("run_dir", type=str, help="a run directory written by `visrep fit`, or a .ckpt")
    p.add_argument(
        "--attacks",
        type=str,
        default="fgsm,pgd,deepfool",
        help="comma-separated: fgsm,pgd,deepfool",
    )
    p.add_argument(
        "--eps",
        type=str | None,
        default=None,
        help="comma-separated budgets in [0, 1] pixel units "
        f"(default linf: {','.join(f'{e:g}' for e in DEFAULT_EPS['linf'])}; "
        f"l2: {','.join(f'{e:g}' for e in DEFAULT_EPS['l2'])})",
    )
    p.add_argument("--norm", type=Literal["linf", "l2"], default="linf", help="the budget's norm")
    p.add_argument(
        "--split", type=Literal["train", "val", "test"], default="test", help="the samples"
    )
    p.add_argument(
        "--max_samples", type=int, default=512, help="attack N samples spread evenly over the split"
    )
    p.add_argument("--steps", type=int, default=20, help="PGD iterations")
    p.add_argument("--step_size", type=float | None, default=None, help="PGD step (2.5 eps/steps)")
    p.add_argument("--overshoot", type=float, default=0.02, help="DeepFool overshoot")
    p.add_argument("--max_iter", type=int, default=50, help="DeepFool iterations")
    p.add_argument("--batch_size", type=int, default=256, help="samples per attack batch")
    p.add_argument(
        "--checkpoint", type=Literal["best", "last"], default="best", help="which checkpoint"
    )
    p.add_argument("--device", type=str, default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of PGD's random start")
    p.add_argument(
        "--compare",
        type=str | None,
        default=None,
        help="comma-separated run dirs already attacked (their robustness.csv): overlay their "
        "curves on this run's in plots/robustness_compare.png",
    )
    return p


# ------------------------------------------------------------------------------------ options
def _parse_attacks(text: str) -> list[str]:
    names = [a.strip().lower() for a in text.split(",") if a.strip()]
    bad = [a for a in names if a not in ATTACKS]
    if not names or bad:
        raise ConfigError(
            f"--attacks must be a comma-separated subset of {','.join(ATTACKS)}, got {text!r}"
        )
    return list(dict.fromkeys(names))


def _parse_eps(text: str | None, norm: str) -> list[float]:
    if text is None:
        return list(DEFAULT_EPS[norm])
    try:
        eps = [float(e) for e in text.split(",") if e.strip()]
    except ValueError:
        eps = []
    if not eps or any(not e >= 0 or e == float("inf") for e in eps):
        raise ConfigError(f"--eps must be comma-separated finite numbers >= 0, got {text!r}")
    return sorted(set(eps))


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available")
    return dev


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if v < 1:
            raise ConfigError(f"--{name} must be >= 1, got {v}")


# --------------------------------------------------------------------------------------- data
def _samples(
    run_dir: str, split: str, max_samples: int, which: str
) -> tuple[nn.Module, Tensor, Tensor, list[str], RunDir]:
    loaded = load_run(run_dir, which=which)
    net = getattr(loaded.task, "net", None)
    if not isinstance(net, nn.Module):
        raise ConfigError(f"{run_dir}: visrep attack needs a classification run (task.net)")
    if loaded.datamodule is None:
        raise ConfigError(
            f"{loaded.run.root}: no config.yaml with a data section to draw samples from"
        )
    dm = loaded.datamodule
    dm.setup()
    ds = getattr(dm, f"{split}_set", None)
    if ds is None or len(ds) == 0:
        raise ConfigError(f"--split {split}: the run's data module has no {split} split")
    xs, ys = [], []
    subset = Subset(ds, spread_indices(len(ds), max_samples))
    for x, y in DataLoader(subset, batch_size=256, shuffle=False):
        xs.append(x)
        ys.append(y)
    names = list(loaded.task.hparams.get("class_names") or [])
    return net.eval(), torch.cat(xs), torch.cat(ys), names, loaded.run


def _deepfool_batched(
    net: nn.Module, x: Tensor, batch_size: int, overshoot: float, max_iter: int
) -> DeepFoolResult:
    parts = [deepfool(net, xb, overshoot, max_iter) for xb in x.split(batch_size)]
    return DeepFoolResult(
        *(torch.cat([getattr(p, f) for p in parts]) for f in DeepFoolResult.__dataclass_fields__)
    )


def read_robustness(run_dir: str | Path) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """``(attack, norm) -> [(eps, accuracy)]`` from the robustness.csv of an attacked run."""
    path = Path(run_dir) / "robustness.csv"
    if not path.is_file():
        raise ConfigError(f"--compare: {path} not found; run `visrep attack {run_dir}` first")
    curves: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        with path.open() as f:
            for row in csv.DictReader(f):
                key = (row["attack"], row["norm"])
                curves.setdefault(key, []).append((float(row["eps"]), float(row["accuracy"])))
    except (KeyError, ValueError, TypeError) as e:
        raise ConfigError(f"{path}: expected columns attack,norm,eps,accuracy ({e})") from None
    return {k: sorted(v) for k, v in curves.items()}


# --------------------------------------------------------------------------------------- main
def _write_outputs(run: RunDir, metrics: dict[str, float | int | str], rows: list[dict]) -> None:
    kept = {k: v for k, v in run.read_metrics().items() if not k.startswith("attack/")}
    run.write_text(run.metrics_json, json.dumps(kept, indent=2, sort_keys=True) + "\n")
    run.update_metrics(metrics)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["attack", "norm", "eps", "accuracy"])
    w.writeheader()
    w.writerows(rows)
    run.write_text(run.root / "robustness.csv", buf.getvalue())


def main(argv: list[str]) -> int:
    cfg = build_parser().parse_args(argv)
    attacks = _parse_attacks(cfg.attacks)
    eps_list = _parse_eps(cfg.eps, cfg.norm)
    _check_positive(
        max_samples=cfg.max_samples,
        steps=cfg.steps,
        max_iter=cfg.max_iter,
        batch_size=cfg.batch_size,
    )
    if cfg.step_size is not None and not cfg.step_size > 0:
        raise ConfigError(f"--step_size must be > 0, got {cfg.step_size}")
    if not cfg.overshoot >= 0:
        raise ConfigError(f"--overshoot must be >= 0, got {cfg.overshoot}")
    others = [r.strip() for r in (cfg.compare or "").split(",") if r.strip()]
    other_curves = {Path(r).name: read_robustness(r) for r in others}  # fail before attacking
    device = _device(cfg.device)
    net, x, y, class_names, run = _samples(cfg.run_dir, cfg.split, cfg.max_samples, cfg.checkpoint)
    net, x, y = net.to(device), x.to(device), y.to(device)
    torch.manual_seed(cfg.seed)

    def make(name: str, eps: float) -> Callable[[Tensor, Tensor], Tensor]:
        if name == "fgsm":
            return lambda xb, yb: fgsm(net, xb, yb, eps, cfg.norm)
        return lambda xb, yb: pgd(net, xb, yb, eps, cfg.step_size, cfg.steps, cfg.norm)

    clean_acc = attack_accuracy(net, x, y, lambda xb, yb: xb, cfg.batch_size)
    metrics: dict[str, float | int | str] = {
        "attack/clean_acc": clean_acc,
        "attack/norm": cfg.norm,
        "attack/split": cfg.split,
        "attack/num_samples": len(x),
    }
    curves: dict[str, list[tuple[float, float]]] = {}
    for name in (a for a in attacks if a != "deepfool"):
        curves[name] = [
            (e, attack_accuracy(net, x, y, make(name, e), cfg.batch_size)) for e in eps_list
        ]
    result = None
    if "deepfool" in attacks:
        result = _deepfool_batched(net, x, cfg.batch_size, cfg.overshoot, cfg.max_iter)
        ok = result.success
        l2 = perturbation_norms(result.r[ok])
        metrics |= {
            "attack/deepfool/rho": rho_adv(x, result.r, ok),
            "attack/deepfool/median_l2": float(l2.median()) if len(l2) else float("nan"),
            "attack/deepfool/success_rate": float(ok.float().mean()),
            "attack/deepfool/mean_iterations": float(result.iterations.float().mean()),
        }
        curves["deepfool"] = [(e, deepfool_accuracy(result, y, e, cfg.norm)) for e in eps_list]
    rows = []
    for name, pts in curves.items():
        for e, acc in pts:
            metrics[f"attack/{name}/acc@{e:g}"] = acc
            rows.append(
                {"attack": name, "norm": cfg.norm, "eps": f"{e:g}", "accuracy": f"{acc:.6f}"}
            )
    _write_outputs(run, metrics, rows)

    plot_robustness(
        curves, clean_acc, cfg.norm, None if result is None else l2, run.plots / "robustness.png"
    )
    compare_png = run.plots / "robustness_compare.png"
    compare_png.unlink(missing_ok=True)
    if other_curves:
        plot_robustness_comparison(
            {run.root.name: read_robustness(run.root), **other_curves}, cfg.norm, compare_png
        )
    # the grid shows the first correctly classified samples, FGSM/PGD at the largest budget
    with torch.no_grad():
        right = (net(x[: cfg.batch_size]).argmax(1) == y[: cfg.batch_size]).nonzero().squeeze(1)[:6]
    grid = run.plots / "adversarial_examples.png"
    grid.unlink(missing_ok=True)
    if len(right):
        shown = {n: make(n, eps_list[-1])(x[right], y[right]) for n in attacks if n != "deepfool"}
        if result is not None:
            shown["deepfool"] = result.x_adv[right]
        suffix = (
            f" (fgsm/pgd at {cfg.norm} eps {eps_list[-1]:g})"
            if len(shown) > ("deepfool" in shown)
            else ""
        )
        with torch.no_grad():
            probs = {k: net(v).softmax(-1) for k, v in {"clean": x[right], **shown}.items()}
        plot_adversarial_examples(x[right], y[right], shown, probs, class_names, grid, suffix)
    report = build_report(run.root)

    print(f"{len(x)} {cfg.split} samples, clean accuracy {clean_acc:.4f}, budgets in {cfg.norm}")
    for name, pts in curves.items():
        print(f"  {name:<9}" + "  ".join(f"acc@{e:g}={a:.4f}" for e, a in pts))
    if result is not None:
        print(
            f"  deepfool rho={metrics['attack/deepfool/rho']:.4f} "
            f"median ||r||_2={metrics['attack/deepfool/median_l2']:.4f} "
            f"success={metrics['attack/deepfool/success_rate']:.4f}"
        )
    print(f"wrote {run.root / 'robustness.csv'}, {run.plots / 'robustness.png'}, {report}")
    return 0
