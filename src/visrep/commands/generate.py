"""``visrep generate RUN_DIR --n 64``: samples of a generative run (a VAE's prior ``N(0, I)``
decoded, Kingma and Welling 2014; a GAN generator's latent prior, Goodfellow et al. 2014) as a
PNG grid and an ``.npz``, with latent interpolations (seed 001, "Generative models")."""

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
from visrep.models.generative.latent import interpolate_latents
from visrep.plots.generation import plot_image_grid, plot_interpolations
from visrep.runs import RunDir


def generate(
    run_dir: str,
    *,
    n: int = 64,
    seed: int = 0,
    out: str | None = None,
    which: Which = "best",
    device: str = "auto",
    interpolations: int = 8,
    steps: int = 10,
) -> int:
    """Decode n samples of a generative run's prior: DIR/samples.png (grid), DIR/samples.npz
    and DIR/interpolations.png.

    The npz holds ``images`` (float32 ``(n, C, H, W)`` in [0, 1]: a VAE's means of P(X | z), a
    GAN's generated images), ``images_uint8`` (``(n, H, W, C)``, rounded), ``latents`` (float32
    ``(n, latent_size)``), ``seed`` and, with ``interpolations`` > 0, ``interpolations`` (float32
    ``(interpolations, steps, C, H, W)``: decoded latents on the great circle between two prior
    samples per row, see :func:`visrep.models.generative.latent.interpolate_latents`). Latents
    are drawn on the CPU from ``seed``, so a seed gives the same samples on every device.

    Args:
        run_dir: a VAE run directory (or a checkpoint inside one).
        n: samples to draw.
        seed: seed of the prior samples.
        out: output folder (default: RUN_DIR/predictions/generated).
        which: the checkpoint of the run.
        device: auto, cpu, cuda or cuda:N.
        interpolations: rows of latent interpolations (0: none).
        steps: images per interpolation row (>= 2).
    """
    check_positive(n=n)
    if interpolations < 0 or steps < 2:
        raise ConfigError(
            f"--interpolations must be >= 0 and --steps >= 2, got {interpolations} and {steps}"
        )
    dev = resolve_device(device)
    ckpt, run = resolve_checkpoint(run_dir, which)
    task = load_task(ckpt)
    net = getattr(task, "net", None)
    if not hasattr(net, "sample_prior"):
        raise ConfigError(
            f"{ckpt}: visrep generate needs a VAE or GAN run (a model with a prior to sample), got "
            f"{type(task).__name__}; an autoencoder has no prior"
        )
    net = net.to(dev).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = net.sample_prior(n, gen)
        images = net.decode(z.to(dev)).float().cpu()
        frames = None
        if interpolations:
            ends = net.sample_prior(2 * interpolations, gen)
            path = interpolate_latents(ends[:interpolations], ends[interpolations:], steps)
            frames = net.decode(path.flatten(0, 1).to(dev)).float().cpu()
            frames = frames.view(interpolations, steps, *frames.shape[1:])
    folder = Path(out) if out is not None else run.predictions / "generated"
    inside = folder.resolve().is_relative_to(run.root.resolve())
    with run.lock() if inside else contextlib.nullcontext():
        png = plot_image_grid(images, folder / "samples.png",
                              title=f"{n} samples of the prior, seed {seed} ({ckpt.name})")  # fmt: skip
        extra = {}
        if frames is not None:
            inter = plot_interpolations(frames, folder / "interpolations.png",
                                        title=f"latent interpolations (slerp), seed {seed}")  # fmt: skip
            extra["interpolations"] = frames.numpy()
        buf = io.BytesIO()
        np.savez(
            buf,
            images=images.numpy(),
            images_uint8=(images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(),
            latents=z.float().cpu().numpy(),
            seed=np.int64(seed),
            **extra,
        )
        npz = folder / "samples.npz"
        RunDir(folder).write_bytes(npz, buf.getvalue())
    print(f"wrote {png}")
    if frames is not None:
        print(f"wrote {inter}")
    print(f"wrote {npz}")
    return 0


def main(argv: Sequence[str]) -> int:
    """Run ``visrep generate ...``; returns the exit code."""
    return run_command(Command(generate, aliases={"-o": "--out"}), "visrep generate", argv)
