"""Linear-chain CRF benchmarks: visrep's chain CRF against pytorch-crf on the same batch.

``--sections`` (default ``nll,viterbi``), on each case ``BxTxK`` of ``--cases`` (default
``64x50x10`` and ``256x100x20``): ``B`` sequences of at most ``T`` steps with ``K`` tags,
lengths drawn uniformly in ``T/2..T`` (seeded), Gaussian emissions, random tags, float32 (or
``--dtype``), on ``--device``. Both sides get the same emissions, tags, mask and parameters
(pytorch-crf's ``CRF(K, batch_first=True)``, seed 0, copied into ``ChainCRF``: ``transitions``
``[from, to]``, ``start_transitions`` -> ``start``, ``end_transitions`` -> ``end``).

``nll``: sequences/s of a training step's CRF part: the negative log-likelihood summed over the
batch (visrep: :func:`~visrep.models.layers.chain_crf_nll` through ``ChainCRF``; pytorch-crf:
``-crf(emissions, tags, mask, reduction="sum")``) and its backward to the emissions and the CRF
parameters (forward algorithm + autograd on both sides).

``viterbi``: sequences/s of decoding to a CPU result (visrep: ``ChainCRF.decode``, vectorised
back-tracking, the ``(B, T)`` paths copied to the CPU; pytorch-crf: ``crf.decode``, whose
back-tracking is a Python loop over the sequences, returning lists).

Checked and printed (``same``): NLL values and gradients to 1e-4 relative (float32), identical
Viterbi paths. Timed: ``--repeat`` calls per measurement, sides alternating over ``--rounds``
(ABBA), after one warm-up call each; medians; ratio visrep / pytorch-crf in sequences/s (above
1: visrep faster). CUDA timings are synchronised.

    OMP_NUM_THREADS=1 python benchmarks/chain_crf.py [--sections nll,viterbi] [--cases 64x50x10]
        [--rounds 4] [--repeat 5] [--device cpu] [--dtype float32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _abba import abba
from torch import Tensor

from visrep.models.layers import ChainCRF

CASES = ("64x50x10", "256x100x20")


def _case(text: str) -> tuple[int, int, int]:
    try:
        b, t, k = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--cases: expected BxTxK such as 64x50x10, got {text!r}") from None
    if min(b, t, k) < 1:
        raise SystemExit(f"--cases: need B, T, K >= 1, got {text!r}")
    return b, t, k


def make_case(b: int, t: int, k: int, dev: torch.device, dtype: torch.dtype):
    """Emissions, tags, mask and the two CRFs with the same parameters."""
    from torchcrf import CRF

    g = torch.Generator().manual_seed(0)
    emissions = torch.randn(b, t, k, generator=g).to(dev, dtype)
    tags = torch.randint(0, k, (b, t), generator=g).to(dev)
    lengths = torch.randint((t + 1) // 2, t + 1, (b,), generator=g)
    lengths[0] = t  # pytorch-crf needs no all-padding column; one full sequence
    mask = (torch.arange(t) < lengths[:, None]).to(dev)
    torch.manual_seed(0)
    ref = CRF(k, batch_first=True).to(dev, dtype)
    ours = ChainCRF(k).to(dev, dtype)
    with torch.no_grad():
        ours.transitions.copy_(ref.transitions)
        ours.start.copy_(ref.start_transitions)
        ours.end.copy_(ref.end_transitions)
    return emissions, tags, mask, ours, ref


def bench_nll(case, args, sync) -> tuple[dict[str, float], bool]:
    emissions, tags, mask, ours, ref = case
    e1, e2 = emissions.clone().requires_grad_(True), emissions.clone().requires_grad_(True)

    def visrep_side() -> Tensor:
        ours.zero_grad(set_to_none=True)
        e1.grad = None
        loss = ours(e1, tags, mask=mask, reduction="sum")
        loss.backward()
        return loss

    def ref_side() -> Tensor:
        ref.zero_grad(set_to_none=True)
        e2.grad = None
        loss = -ref(e2, tags, mask, reduction="sum")
        loss.backward()
        return loss

    a, b = visrep_side(), ref_side()
    close = lambda x, y: torch.allclose(x, y, rtol=1e-4, atol=1e-4 * float(y.abs().max()))  # noqa: E731
    same = (
        close(a.detach(), b.detach())
        and close(e1.grad, e2.grad)
        and close(ours.transitions.grad, ref.transitions.grad)
    )
    med = abba({"visrep": visrep_side, "pytorch-crf": ref_side}, args.rounds, args.repeat, sync)
    return med, same


def bench_viterbi(case, args, sync) -> tuple[dict[str, float], bool]:
    emissions, _, mask, ours, ref = case

    def visrep_side() -> list[list[int]]:
        with torch.no_grad():
            paths = ours.decode(emissions, mask=mask)[0].cpu()
        return paths

    def ref_side() -> list[list[int]]:
        with torch.no_grad():
            return ref.decode(emissions, mask)

    lengths = mask.sum(1).tolist()
    ours_paths = [p[:n] for p, n in zip(visrep_side().tolist(), lengths, strict=True)]
    same = ours_paths == ref_side()
    med = abba({"visrep": visrep_side, "pytorch-crf": ref_side}, args.rounds, args.repeat, sync)
    return med, same


SECTIONS = {"nll": bench_nll, "viterbi": bench_viterbi}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = ap.add_argument
    add("--sections", default="nll,viterbi", help="comma-separated: " + ", ".join(SECTIONS))
    add("--cases", default=",".join(CASES), help="comma-separated BxTxK")
    add("--rounds", type=int, default=4, help="ABBA rounds")
    add("--repeat", type=int, default=5, help="calls per measurement")
    add("--device", default="cpu", help="cpu or cuda")
    add("--dtype", default="float32", choices=("float32", "float64"))
    args = ap.parse_args()
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    if sorted(set(names) - set(SECTIONS)):
        ap.error(f"--sections: choose from {list(SECTIONS)}, got {names}")
    dev, dtype = torch.device(args.device), getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(
        f"== chain CRF: visrep vs pytorch-crf 0.7.2; device {dev}, {args.dtype}, threads="
        f"{torch.get_num_threads()}; lengths uniform in T/2..T; {args.rounds} rounds ABBA x "
        f"{args.repeat} calls, medians; seq/s = sequences per second =="
    )
    print(
        f"  {'section':<8} {'case BxTxK':<12} {'visrep seq/s':>13} {'pytorch-crf seq/s':>18} "
        f"{'ratio':>7}  same"
    )
    for text in args.cases.split(","):
        b, t, k = _case(text.strip())
        case = make_case(b, t, k, dev, dtype)
        for name in names:
            med, same = SECTIONS[name](case, args, sync)
            ours, ref = b / med["visrep"], b / med["pytorch-crf"]
            print(
                f"  {name:<8} {text.strip():<12} {ours:13.0f} {ref:18.0f} {ours / ref:7.2f}  "
                f"{'yes' if same else 'NO'}"
            )


if __name__ == "__main__":
    main()
