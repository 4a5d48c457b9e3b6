"""``visrep generate RUN_DIR --n 64``: decode samples of a VAE run's prior ``N(0, I)`` into a PNG
grid and an ``.npz`` (Kingma and Welling 2014; seed 001, "Variational Autoencoders")."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from visrep.analysis.runs import load_task, resolve_checkpoint
from visrep.commands._common import Command, Which, check_positive, resolve_device, run_command
from visrep.errors import ConfigError
from visrep.plots.generation import plot_image_grid
from visrep.runs import RunDir


def generate(
    run_dir: str,
    *,
    n: int = 64,
    seed: int = 0,
    out: str | None = None,
    which: Which = "best",
    device: str = "auto",
) -> int:
    """Decode n samples of a VAE run's prior: DIR/samples.png (grid) and DIR/samples.npz.

    The npz holds ``images`` (float32 ``(n, C, H, W)`` in [0, 1], the means of P(X | z)),
    ``images_uint8`` (``(n, H, W, C)``, rounded), ``latents`` (float32 ``(n, latent_size)``) and
    ``seed``. Latents are drawn on the CPU from ``seed``, so a seed gives the same samples on
    every device.

    Args:
        run_dir: a VAE run directory (or a checkpoint inside one).
        n: samples to draw.
        seed: seed of the prior samples.
        out: output folder (default: RUN_DIR/predictions/generated).
        which: the checkpoint of the run.
        device: auto, cpu, cuda or cuda:N.
    """
    check_positive(n=n)
    dev = resolve_device(device)
    ckpt, run = resolve_checkpoint(run_dir, which)
    task = load_task(ckpt)
    net = getattr(task, "net", None)
    if not hasattr(net, "sample_prior"):
        raise ConfigError(
            f"{ckpt}: visrep generate needs a VAE run (a model with a prior to sample), got "
            f"{type(task).__name__}; an autoencoder has no prior"
        )
    net = net.to(dev).eval()
    with torch.no_grad():
        z = net.sample_prior(n, torch.Generator().manual_seed(seed))
        images = net.decode(z).float().cpu()
    folder = Path(out) if out is not None else run.predictions / "generated"
    inside = folder.resolve().is_relative_to(run.root.resolve())
    with run.lock() if inside else contextlib.nullcontext():
        png = plot_image_grid(images, folder / "samples.png",
                              title=f"{n} samples of the prior, seed {seed} ({ckpt.name})")  # fmt: skip
        buf = io.BytesIO()
        np.savez(
            buf,
            images=images.numpy(),
            images_uint8=(images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(),
            latents=z.float().cpu().numpy(),
            seed=np.int64(seed),
        )
        npz = folder / "samples.npz"
        RunDir(folder).write_bytes(npz, buf.getvalue())
    print(f"wrote {png}")
    print(f"wrote {npz}")
    return 0


def main(argv: Sequence[str]) -> int:
    """Run ``visrep generate ...``; returns the exit code."""
    return run_command(Command(generate, aliases={"-o": "--out"}), "visrep generate", argv)
