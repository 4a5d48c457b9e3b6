"""Robustness measures of a classifier under attack (seed 001, seed 004).

The attacks are :mod:`visrep.attacks`; this module measures with them: accuracy under an attack
(:func:`attack_accuracy`), DeepFool's robustness ``rho_adv = mean ||r(x)||_2 / ||x||_2``
(Moosavi-Dezfooli et al., CVPR 2016) and the accuracy DeepFool's minimal perturbations allow
at a budget (:func:`deepfool_accuracy`). :func:`robustness` sweeps the budgets of every attack
over a set of samples, the curves ``visrep attack`` writes to ``robustness.csv``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from visrep.attacks import DeepFoolResult, Norm, deepfool, fgsm, perturbation_norms, pgd
from visrep.errors import ConfigError, ShapeError

__all__ = [
    "ATTACKS",
    "Robustness",
    "attack_accuracy",
    "deepfool_accuracy",
    "deepfool_batched",
    "gradient_attack",
    "read_robustness",
    "rho_adv",
    "robustness",
]


def rho_adv(x: Tensor, r: Tensor, mask: Tensor | None = None) -> float:
    """DeepFool's robustness measure ``rho_adv = mean ||r(x)||_2 / ||x||_2`` (DeepFool, CVPR 2016).

    Args:
        x: clean images ``(B, ...)``.
        r: their perturbations ``(B, ...)``.
        mask: ``(B,)`` booleans selecting the samples to average (e.g. DeepFool's ``success``);
            ``None``: all.

    >>> round(rho_adv(torch.tensor([[3.0, 4.0], [1.0, 0.0]]), torch.tensor([[0.5, 0.0], [0.0, 0.3]])), 6)
    0.2
    """
    if r.shape != x.shape:
        raise ShapeError(f"r must have the shape of x {tuple(x.shape)}, got {tuple(r.shape)}")
    ratio = perturbation_norms(r) / x.flatten(1).norm(dim=1).clamp_min(1e-12)
    if mask is not None:
        ratio = ratio[mask]
    return float(ratio.mean()) if ratio.numel() else float("nan")


def deepfool_accuracy(result: DeepFoolResult, y: Tensor, eps: float, norm: Norm = "l2") -> float:
    """Accuracy when DeepFool may use perturbations of norm at most ``eps``.

    A sample counts as correct when the clean prediction is right and DeepFool's perturbation is
    either unsuccessful or larger than ``eps``: an upper bound on the robust accuracy at ``eps``.
    """
    if not eps >= 0:  # also rejects NaN
        raise ConfigError(f"eps must be >= 0, got {eps}")
    fooled = result.success & (perturbation_norms(result.r, norm) <= eps)
    return int(((result.label == y) & ~fooled).sum()) / max(len(y), 1)


def attack_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: Callable[[Tensor, Tensor], Tensor],
    batch_size: int = 256,
) -> float:
    """Accuracy of ``model`` on ``attack(x, y)``, run in batches of ``batch_size``."""
    correct = 0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        with torch.no_grad():
            correct += int((model(attack(xb, yb)).argmax(1) == yb).sum())
    return correct / max(len(x), 1)


def deepfool_batched(
    model: nn.Module, x: Tensor, batch_size: int = 256, overshoot: float = 0.02, max_iter: int = 50
) -> DeepFoolResult:
    """:func:`~visrep.attacks.deepfool` over ``x`` in batches, results concatenated."""
    parts = [deepfool(model, xb, overshoot, max_iter) for xb in x.split(batch_size)]
    return DeepFoolResult(
        *(torch.cat([getattr(p, f) for p in parts]) for f in DeepFoolResult.__dataclass_fields__)
    )


@dataclass
class Robustness:
    """Accuracy under attack of a classifier on a set of samples (what ``visrep attack`` writes).

    Attributes:
        norm: the budgets' norm, ``linf`` or ``l2``.
        clean_acc: accuracy without attack.
        num_samples: samples attacked.
        curves: attack name -> ``[(eps, accuracy)]`` sorted by eps; DeepFool's is the upper bound
            of :func:`deepfool_accuracy`.
        deepfool: DeepFool's result on every sample, or None when it was not run.
        deepfool_stats: DeepFool's ``rho``, ``median_l2`` (of the successful perturbations),
            ``success_rate`` and ``mean_iterations``.
    """

    norm: str
    clean_acc: float
    num_samples: int
    curves: dict[str, list[tuple[float, float]]]
    deepfool: DeepFoolResult | None = None
    deepfool_stats: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float | int | str]:
        """The ``attack/...`` keys of ``metrics.json``."""
        out: dict[str, float | int | str] = {
            "attack/clean_acc": self.clean_acc,
            "attack/norm": self.norm,
            "attack/num_samples": self.num_samples,
        }
        out |= {f"attack/deepfool/{k}": v for k, v in self.deepfool_stats.items()}
        for name, pts in self.curves.items():
            out |= {f"attack/{name}/acc@{e:g}": acc for e, acc in pts}
        return out

    def csv(self) -> str:
        """``robustness.csv``: one row ``attack,norm,eps,accuracy`` per attack and budget."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["attack", "norm", "eps", "accuracy"])
        w.writeheader()
        for name, pts in self.curves.items():
            for e, acc in pts:
                w.writerow({"attack": name, "norm": self.norm, "eps": f"{e:g}",
                            "accuracy": f"{acc:.6f}"})  # fmt: skip
        return buf.getvalue()


ATTACKS = ("fgsm", "pgd", "deepfool")


def gradient_attack(
    model: nn.Module,
    name: str,
    eps: float,
    norm: Norm = "linf",
    steps: int = 20,
    step_size: float | None = None,
) -> Callable[[Tensor, Tensor], Tensor]:
    """``(x, y) -> x_adv`` of FGSM or PGD at budget ``eps``."""
    if name == "fgsm":
        return lambda xb, yb: fgsm(model, xb, yb, eps, norm)
    if name == "pgd":
        return lambda xb, yb: pgd(model, xb, yb, eps, step_size, steps, norm)
    raise ConfigError(f"attack must be fgsm or pgd, got {name!r}")


def robustness(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attacks: Sequence[str] = ATTACKS,
    eps: Sequence[float] = (0.0, 0.01, 0.03, 0.1),
    norm: Norm = "linf",
    steps: int = 20,
    step_size: float | None = None,
    overshoot: float = 0.02,
    max_iter: int = 50,
    batch_size: int = 256,
) -> Robustness:
    """Accuracy of ``model`` under each attack at each budget (FGSM, PGD, DeepFool's bound).

    PGD draws its random start from torch's global generator: seed it first for repeatable
    numbers.

    Args:
        model: pixels in [0, 1] -> logits, eval mode, on the device of ``x``.
        x: images ``(N, C, H, W)`` in [0, 1]; y: their classes ``(N,)``.
        attacks: a subset of ``fgsm``, ``pgd``, ``deepfool``.
        eps: the budgets, in ``norm`` and pixel units.
        norm: ``linf`` or ``l2``.
        steps, step_size: PGD's iterations and step (default ``2.5 eps / steps``).
        overshoot, max_iter: DeepFool's options.
        batch_size: samples per attack batch.
    """
    bad = [a for a in attacks if a not in ATTACKS]
    if bad or not attacks:
        raise ConfigError(f"attacks must be a subset of {', '.join(ATTACKS)}, got {list(attacks)}")
    eps = sorted(set(eps))
    curves: dict[str, list[tuple[float, float]]] = {}
    for name in (a for a in attacks if a != "deepfool"):
        curves[name] = [
            (e, attack_accuracy(model, x, y, gradient_attack(model, name, e, norm, steps,
                                                             step_size), batch_size))
            for e in eps
        ]  # fmt: skip
    result = Robustness(norm, attack_accuracy(model, x, y, lambda a, b: a, batch_size), len(x),
                        curves)  # fmt: skip
    if "deepfool" in attacks:
        df = deepfool_batched(model, x, batch_size, overshoot, max_iter)
        ok = df.success
        l2 = perturbation_norms(df.r[ok])
        result.deepfool = df
        result.deepfool_stats = {
            "rho": rho_adv(x, df.r, ok),
            "median_l2": float(l2.median()) if len(l2) else float("nan"),
            "success_rate": float(ok.float().mean()),
            "mean_iterations": float(df.iterations.float().mean()),
        }
        curves["deepfool"] = [(e, deepfool_accuracy(df, y, e, norm)) for e in eps]
    return result


def read_robustness(run_dir: str | Path) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """``(attack, norm) -> [(eps, accuracy)]`` from the ``robustness.csv`` of an attacked run."""
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
