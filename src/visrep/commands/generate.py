"""``visrep generate RUN_DIR --n 64``: what a generative run makes.

- a VAE (Kingma and Welling 2014) or a GAN (Goodfellow et al. 2014) on images: samples of the
  latent prior decoded, as a PNG grid and an ``.npz``, with latent interpolations;
- a GAN on 2-d points (the mode-collapse mixtures): the generated points, scattered and saved;
- a CycleGAN (Zhu et al. 2017): the run's test images of both domains translated to the other
  and back (seed 001, "Generative models").
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from visrep.analysis.runs import (
    LoadedRun,
    load_datamodule,
    load_task,
    resolve_checkpoint,
    spread_indices,
)
from visrep.analysis.samples import split_dataset
from visrep.commands._common import Command, Which, check_positive, resolve_device, run_command
from visrep.data.samples import IMAGE, IMAGE_B, collate
from visrep.errors import ConfigError
from visrep.models.generative.latent import interpolate_latents
from visrep.plots.generation import (
    plot_image_grid,
    plot_interpolations,
    plot_points_2d,
    plot_translations,
)
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
    split: str = "test",
) -> int:
    """Samples of a generative run in DIR (default RUN_DIR/predictions/generated).

    VAE and GAN runs on images: DIR/samples.png (grid), DIR/samples.npz and
    DIR/interpolations.png. The npz holds ``images`` (float32 ``(n, C, H, W)`` in [0, 1]: a
    VAE's means of P(X | z), a GAN's generated images), ``images_uint8`` (``(n, H, W, C)``,
    rounded), ``latents`` (float32 ``(n, latent_size)``), ``seed`` and, with ``interpolations``
    > 0, ``interpolations`` (float32 ``(interpolations, steps, C, H, W)``: decoded latents on the
    great circle between two prior samples per row, see
    :func:`visrep.models.generative.latent.interpolate_latents`). Latents are drawn on the CPU
    from ``seed``, so a seed gives the same samples on every device.

    GAN runs on 2-d points: DIR/samples.png (a scatter) and DIR/samples.npz with ``points``
    (float32 ``(n, 2)``), ``latents`` and ``seed``.

    CycleGAN runs: ``n`` images of the run's ``split`` spread over each domain, translated and
    translated back: DIR/translations_ab.png, DIR/translations_ba.png and DIR/translations.npz
    (float32 ``a``, ``ab``, ``aba``, ``b``, ``ba``, ``bab`` in [0, 1], and ``indices``).

    Args:
        run_dir: a VAE, GAN or CycleGAN run directory (or a checkpoint inside one).
        n: samples to draw (images to translate).
        seed: seed of the prior samples.
        out: output folder (default: RUN_DIR/predictions/generated).
        which: the checkpoint of the run.
        device: auto, cpu, cuda or cuda:N.
        interpolations: rows of latent interpolations (0: none).
        steps: images per interpolation row (>= 2).
        split: the split whose images a CycleGAN translates (train, val or test).
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
    folder = Path(out) if out is not None else run.predictions / "generated"
    inside = folder.resolve().is_relative_to(run.root.resolve())
    if hasattr(net, "translate") and hasattr(task, "net_ba"):
        loaded = LoadedRun(task, load_datamodule(run), run, ckpt)
        with run.lock() if inside else contextlib.nullcontext():
            written = _translations(loaded, n, split, dev, folder)
    elif hasattr(net, "sample_prior"):
        with run.lock() if inside else contextlib.nullcontext():
            written = _samples(net.to(dev).eval(), n, seed, interpolations, steps, dev, folder,
                               ckpt.name)  # fmt: skip
    else:
        raise ConfigError(
            f"{ckpt}: visrep generate needs a VAE, GAN or CycleGAN run (a model with a prior to "
            f"sample, or a translator), got {type(task).__name__}; an autoencoder has no prior"
        )
    for path in written:
        print(f"wrote {path}")
    return 0


def _samples(
    net: torch.nn.Module, n: int, seed: int, interpolations: int, steps: int,
    dev: torch.device, folder: Path, name: str,
) -> list[Path]:  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = net.sample_prior(n, gen)
        samples = net.decode(z.to(dev)).float().cpu()
        points = samples.dim() == 2
        frames = None
        if interpolations and not points:
            ends = net.sample_prior(2 * interpolations, gen)
            path = interpolate_latents(ends[:interpolations], ends[interpolations:], steps)
            frames = net.decode(path.flatten(0, 1).to(dev)).float().cpu()
            frames = frames.view(interpolations, steps, *frames.shape[1:])
    written: list[Path] = []
    arrays: dict[str, np.ndarray] = {"latents": z.float().cpu().numpy(), "seed": np.int64(seed)}
    if points:
        written.append(plot_points_2d(np.zeros((0, 2)), samples, None, folder / "samples.png",
                                      title=f"{n} generated points, seed {seed} ({name})"))  # fmt: skip
        arrays["points"] = samples.numpy()
    else:
        written.append(plot_image_grid(samples, folder / "samples.png",
                                       title=f"{n} samples of the prior, seed {seed} ({name})"))  # fmt: skip
        arrays["images"] = samples.numpy()
        arrays["images_uint8"] = (samples * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if frames is not None:
        written.append(plot_interpolations(frames, folder / "interpolations.png",
                                           title=f"latent interpolations (slerp), seed {seed}"))  # fmt: skip
        arrays["interpolations"] = frames.numpy()
    written.append(_write_npz(folder / "samples.npz", arrays))
    return written


def _translations(
    loaded: LoadedRun, n: int, split: str, dev: torch.device, folder: Path
) -> list[Path]:
    ds = split_dataset(loaded, split)
    idx = spread_indices(len(ds), n)
    a, b = [], []
    for batch in DataLoader(Subset(ds, idx), batch_size=64, collate_fn=collate):
        if IMAGE not in batch or IMAGE_B not in batch:
            raise ConfigError(
                f"--split {split}: a CycleGAN run translates unpaired samples (image, image_b), "
                f"its data module gives {', '.join(batch)}"
            )
        a.append(batch[IMAGE])
        b.append(batch[IMAGE_B])
    task = loaded.task.to(dev).eval()
    out: dict[str, Tensor] = {"a": torch.cat(a), "b": torch.cat(b)}
    with torch.no_grad():
        for x, there, back in (("a", task.net, task.net_ba), ("b", task.net_ba, task.net)):
            y = torch.cat([there.translate(c.to(dev)) for c in out[x].split(64)])
            out[x + ("b" if x == "a" else "a")] = y.float().cpu()
            rec = torch.cat([back.translate(c) for c in y.split(64)])
            out[x + ("ba" if x == "a" else "ab")] = rec.float().cpu()
    written = [
        plot_translations(out["a"], out["ab"], out["aba"], folder / "translations_ab.png",
                          title=f"A -> B -> A ({split} images)"),
        plot_translations(out["b"], out["ba"], out["bab"], folder / "translations_ba.png",
                          title=f"B -> A -> B ({split} images)"),
    ]  # fmt: skip
    arrays = {k: v.numpy() for k, v in out.items()}
    arrays["indices"] = np.asarray(idx, dtype=np.int64)
    written.append(_write_npz(folder / "translations.npz", arrays))
    return written


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    RunDir(path.parent).write_bytes(path, buf.getvalue())
    return path


def main(argv: Sequence[str]) -> int:
    """Run ``visrep generate ...``; returns the exit code."""
    return run_command(Command(generate, aliases={"-o": "--out"}), "visrep generate", argv)
