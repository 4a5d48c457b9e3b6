"""Bag-of-visual-words encoding: visrep's batched torch encoder against straightforward loops.

Descriptors: dense SIFT (``visrep.models.shallow.dense_sift``, step 4, 3 scales: 192 per image)
of ``--images`` seeded random smooth 32 x 32 RGB images (CIFAR-sized; the encoding cost depends
only on the number and dimension of the descriptors). Codebook: ``--words`` words drawn at
random from those descriptors (seeded; k-means centres cost the same to encode against); soft
assignment uses :func:`~visrep.models.shallow.gap_sigma`, the default of ``Codebook.fit``.

Cases (``--cases``, default all):

* ``hard``: nearest-word histograms, L1 (word frequencies, seed 002);
* ``soft``: codeword-uncertainty soft assignment (van Gemert et al. 2010), L1;
* ``pyramid``: hard assignment, 1 x 1 + 2 x 2 + 4 x 4 spatial pyramid (Lazebnik et al. 2006), L1.

Sides, measured in the same process on the same descriptors and codebook:

* ``visrep``: :meth:`visrep.models.shallow.Codebook.encode` (one matmul per chunk of
  ``--batch`` images, scatter-add / batched products for the histograms);
* ``per-image``: a Python loop over images, each with numpy (distances by one matmul, argmin,
  ``np.bincount``; softmax for soft; a bincount over ``cell * V + word`` per pyramid level);
* ``per-descriptor``: a Python loop over images and their descriptors, each descriptor's squared
  distances to all words with numpy and an argmin (or softmax), added to the histogram; timed on
  the first ``--naive-images`` images only (it is slow) and reported as images/s.

The outputs are compared (max |difference|, and for hard assignment the number of images whose
histogram differs: float32 matmuls in torch and numpy can break a near-tie differently). Timed:
whole encodings, sides alternating over ``--rounds`` (ABBA), medians; ratios visrep / loop
(above 1: visrep faster).

    OMP_NUM_THREADS=1 python benchmarks/bovw.py [--images 1024] [--words 1000] [--rounds 4]
        [--batch 16] [--naive-images 16] [--cases hard,soft,pyramid] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from visrep.models.shallow import Codebook, dense_sift, gap_sigma, pyramid_cells

SIZE = (32, 32)
PYRAMID = (1, 2, 4)


def make_data(images: int, words: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dense SIFT of seeded smooth random images, their keypoint positions, and a codebook."""
    g = torch.Generator().manual_seed(0)
    small = torch.rand(images, 3, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(small, size=SIZE, mode="bicubic").clamp(0, 1)
    desc, pos = dense_sift(x, step=4, bin_sizes=(4, 6, 8))
    flat = desc.reshape(-1, desc.shape[-1])
    centers = flat[torch.randperm(len(flat), generator=g)[:words]].clone()
    return desc, pos, centers


def codebook(centers: torch.Tensor, case: str, sigma: float, batch: int) -> Codebook:
    book = Codebook(
        num_words=len(centers),
        assignment="soft" if case == "soft" else "hard",
        sigma=sigma if case == "soft" else None,
        pyramid=PYRAMID if case == "pyramid" else (1,),
        norm="l1",
        batch_size=batch,
    )
    book.centers = centers
    return book


def per_image(desc: np.ndarray, pos: np.ndarray, centers: np.ndarray, case: str, sigma: float):
    """A Python loop over images, numpy inside."""
    v = len(centers)
    c2 = (centers**2).sum(1)
    cells = (
        pyramid_cells(torch.from_numpy(pos), SIZE, PYRAMID)[0].numpy()
        if case == "pyramid"
        else None
    )
    n_cells = sum(g * g for g in PYRAMID) if case == "pyramid" else 1
    out = np.zeros((len(desc), n_cells * v), np.float32)
    for i, x in enumerate(desc):
        d2 = (x**2).sum(1, keepdims=True) - 2 * x @ centers.T + c2
        if case == "soft":
            e = np.exp(-(d2 - d2.min(1, keepdims=True)) / (2 * sigma**2))
            h = (e / e.sum(1, keepdims=True)).sum(0)
        elif case == "hard":
            h = np.bincount(d2.argmin(1), minlength=v)
        else:
            w = d2.argmin(1)
            h = sum(
                np.bincount(cells[i, :, lvl] * v + w, minlength=n_cells * v) for lvl in range(3)
            )
        out[i] = h / h.sum()
    return out


def per_descriptor(desc: np.ndarray, pos: np.ndarray, centers: np.ndarray, case: str, sigma: float):
    """A Python loop over images and descriptors."""
    v = len(centers)
    cells = (
        pyramid_cells(torch.from_numpy(pos), SIZE, PYRAMID)[0].numpy()
        if case == "pyramid"
        else None
    )
    n_cells = sum(g * g for g in PYRAMID) if case == "pyramid" else 1
    out = np.zeros((len(desc), n_cells * v), np.float32)
    for i, x in enumerate(desc):
        h = np.zeros(n_cells * v)
        for j, xj in enumerate(x):
            d2 = ((centers - xj) ** 2).sum(1)
            if case == "soft":
                e = np.exp(-(d2 - d2.min()) / (2 * sigma**2))
                h[:v] += e / e.sum()
            elif case == "hard":
                h[d2.argmin()] += 1
            else:
                for lvl in range(len(PYRAMID)):
                    h[cells[i, j, lvl] * v + d2.argmin()] += 1
        out[i] = h / h.sum()
    return out


def timed(fn: Callable[[], object], sync: bool) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    if sync:
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--words", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--naive-images", type=int, default=16)
    parser.add_argument("--cases", default="hard,soft,pyramid")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    desc, pos, centers = make_data(args.images, args.words)
    sigma = gap_sigma(desc[:32].reshape(-1, 128).numpy(), centers)  # Codebook.fit's default
    k = desc.shape[1]
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, {args.images} images x {k} "
        f"descriptors x 128, {args.words} words, batch {args.batch}, sigma {sigma:.1f}"
    )
    print(
        f"{'case':<8} {'visrep img/s':>12} {'per-image':>10} {'ratio':>7} {'per-desc':>9} "
        f"{'ratio':>8}  max|diff| (images differing)"
    )
    for case in args.cases.split(","):
        print(compare(case, desc, pos, centers, sigma, args, device))


def compare(
    case: str,
    desc: torch.Tensor,
    pos: torch.Tensor,
    centers: torch.Tensor,
    sigma: float,
    args: argparse.Namespace,
    device: torch.device,
) -> str:
    """One case: ABBA rounds of visrep against the per-image loop, then the per-descriptor loop."""
    sync = device.type == "cuda"
    np_desc, np_centers = desc.numpy(), centers.numpy()
    np_pos = pos.expand(len(desc), -1, -1).numpy()
    book = codebook(centers, case, sigma, args.batch).to(device)
    d_dev, p_dev = desc.to(device), pos.to(device)
    sides = {
        "visrep": lambda: book.encode(d_dev, p_dev, SIZE),
        "image": lambda: per_image(np_desc, np_pos, np_centers, case, sigma),
    }
    sides["visrep"]()  # warm-up
    times: dict[str, list[float]] = {"visrep": [], "image": []}
    outs: dict[str, np.ndarray] = {}
    for r in range(args.rounds):  # ABBA
        for name in ("visrep", "image") if r % 2 == 0 else ("image", "visrep"):
            t, out = timed(sides[name], sync and name == "visrep")
            times[name].append(t)
            outs[name] = out.cpu().numpy() if name == "visrep" else out
    m = args.naive_images
    t_d, ref_d = timed(
        lambda: per_descriptor(np_desc[:m], np_pos[:m], np_centers, case, sigma), False
    )
    n = len(desc)
    v_ips = n / statistics.median(times["visrep"])
    i_ips = n / statistics.median(times["image"])
    d_ips = m / t_d
    got, ref = outs["visrep"], outs["image"]
    diff = max(np.abs(got - ref).max(), np.abs(got[:m] - ref_d).max())
    differing = int((np.abs(got - ref).max(1) > 1e-5).sum())
    return (
        f"{case:<8} {v_ips:>12.1f} {i_ips:>10.1f} {v_ips / i_ips:>6.2f}x {d_ips:>9.1f} "
        f"{v_ips / d_ips:>7.1f}x  {diff:.1e} ({differing})"
    )


if __name__ == "__main__":
    main()
