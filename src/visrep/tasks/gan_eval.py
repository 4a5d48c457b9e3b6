"""What :class:`~visrep.tasks.gan.GANTask` measures and draws: sample quality without downloads.

Every validation generates ``eval_samples`` samples from the same fixed latents (seed 0) and
every test from other ones (seed 1), drawn on the CPU (so they do not depend on the device),
with ``net`` (the EMA generator when ``ema`` is set): a test never repeats a validation's
samples. It logs:

- always: ``val/d_loss`` (``test/d_loss``), the discriminator's loss on the held-out real
  samples against as many seeded fakes (other seeds at test), and for the WGAN
  ``val/wasserstein``, the critic's estimate of the distance on held-out data (Arjovsky et al.
  2017, sec. 4.2 and fig. 3: it follows sample quality);
- images with ``features`` (a visrep classification run of the same domain,
  :func:`~visrep.tasks.gan_metrics.load_feature_extractor`): ``val/fid``, ``val/kid`` of the
  ``eval_samples`` samples against all validation images (Heusel et al. 2017; Binkowski et
  al. 2018: ``best.ckpt``'s metric). The test holds out ``H = min(eval_samples, N // 2)`` of
  the ``N`` real test images (seeded, :func:`~visrep.tasks.gan_metrics.holdout_split`) and
  scores against the other ``N - H`` (``R``): ``test/fid``, ``test/kid`` of ``H`` generated
  samples ``G`` against ``R``, and the floor ``test/fid_floor``, ``test/kid_floor`` of the
  held-out real images against ``R`` (:func:`~visrep.tasks.gan_metrics.real_floor`): what a
  perfect generator scores, at the same sample sizes. When the classifier's classes are the
  data's, mode coverage of ``G``: ``test/classes_hit`` and ``test/class_kl`` (``KL(p_gen ||
  p_test)`` of the predicted class histogram). Under DDP every process gathers the whole test
  split and computes these the same;
- 2-d mixtures: VEEGAN's ``val/modes``, ``val/modes_frequent``, ``val/high_quality``,
  ``val/mode_kl`` (Srivastava et al. 2017, sec. 5.1; :func:`~visrep.tasks.gan_metrics.
  mode_coverage_2d`) and ``val/mode_score`` = modes captured + high-quality share (the share
  is in [0, 1]), and the same at test. They do not depend on the real split, so they select
  no checkpoint: the test is the last epoch's.

Artifacts: each validation epoch decodes the fixed latent vectors (buffer ``fixed_latents``)
and keeps the first row of them (checkpoints keep the rows, so a resumed run continues them);
``plots/progress.png`` shows them epoch by epoch (at most 12 rows, evenly spaced, the last
included) after fit and test. After test: ``plots/samples.png`` (all ``grid`` fixed latents),
``plots/nearest_neighbours.png`` (samples beside their 3 nearest training images, in the
classifier's feature space with ``features``, else in pixels: Karras et al. 2018, seed 001),
``plots/interpolations.png`` (slerp between prior samples of seed 2, White 2016), and for 2-d data
``plots/points.png`` (generated against real test points and the mode centres).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from visrep.data.samples import IMAGE, LABEL, POINT
from visrep.errors import ConfigError
from visrep.losses.gan import discriminator_loss
from visrep.models.generative.latent import interpolate_latents
from visrep.plots.generation import (
    plot_image_grid,
    plot_interpolations,
    plot_nearest_neighbours,
    plot_points_2d,
)
from visrep.runs import RunDir
from visrep.tasks.embedding import is_sharded, merge_gathered
from visrep.tasks.gan_metrics import (
    FeatureExtractor,
    GenerativeMetrics,
    check_kid_subset,
    class_histogram_metrics,
    holdout_split,
    load_feature_extractor,
    mode_coverage_2d,
    nearest_training_images,
)
from visrep.utils.embedding import subsample

__all__ = ["GANEvaluationMixin", "thin_rows"]

Batch = dict[str, Any]
_CHUNK = 500  # samples generated (and embedded) at a time
_PROGRESS_COLS = 8  # fixed latents per progress row
_PROGRESS_ROWS = 12  # rows of plots/progress.png
_PROGRESS_KEEP = 64  # rows a checkpoint keeps (halved, evenly, when full)
_NEIGHBOURS, _NN_SAMPLES, _NN_BANK = 3, 8, 10_000
_PAIRS, _STEPS = 8, 10  # interpolations: rows and images per row
_SEEDS = {"val": 0, "test": 1, "interpolations": 2}  # of the evaluation latents


def thin_rows(epochs: list[int], rows: int) -> list[int]:
    """Indices of at most ``rows`` of ``epochs``, evenly spaced, first and last included.

    >>> thin_rows(list(range(30)), 4), thin_rows([0, 1], 4)
    ([0, 10, 19, 29], [0, 1])
    """
    n = len(epochs)
    if n <= rows:
        return list(range(n))
    return sorted({round(i * (n - 1) / (rows - 1)) for i in range(rows)})


class GANEvaluationMixin:
    """Validation, test and artifacts of :class:`~visrep.tasks.gan.GANTask` (see the module).

    A mixin placed before :class:`~visrep.tasks.base.Task`; the task provides ``net`` (a
    :class:`~visrep.tasks.gan.GeneratorNet`), ``discriminator``, ``fixed_latents``,
    ``to_model`` and the hyper-parameters ``loss``, ``features``, ``eval_samples``,
    ``kid_subset_size``.
    """

    def init_evaluation(self) -> None:
        self._progress: list[tuple[int, Tensor]] = []  # (epoch, uint8 (cols, C, H, W))
        self._held: dict[str, Any] = {}  # extractor and metrics: not modules of the task
        self._test_results: dict[str, Any] | None = None

    def build_evaluation(self, spec: Any) -> None:
        self._held.clear()

    # -- the feature extractor and the metrics ----------------------------------------------------
    def extractor(self) -> FeatureExtractor | None:
        """The ``features`` run's classifier (loaded once, on the task's device), or None."""
        path = self.hparams.features
        if path is None:
            return None
        if "extractor" not in self._held:
            spec = self.spec
            self._held["extractor"] = load_feature_extractor(
                path, spec.in_chans, spec.image_size, "model.features"
            )
        return self._held["extractor"].to(self.device)

    def _metrics(self, stage: str) -> GenerativeMetrics | None:
        ex = self.extractor()
        if ex is None:
            return None
        if stage not in self._held:
            self._held[stage] = GenerativeMetrics(
                ex, kid_subset_size=self.hparams.kid_subset_size, option="model.kid_subset_size"
            )
        return self._held[stage].to(self.device)

    def on_fit_start(self) -> None:
        # a features run that does not fit, or a KID subset larger than the validation split or
        # the held-out test images, fails now, not after an epoch (or after the whole fit)
        self._check_kid_subset(("val", "test"))

    def on_test_start(self) -> None:
        self._check_kid_subset(("test",))

    def _check_kid_subset(self, splits: tuple[str, ...]) -> None:
        """``kid_subset_size`` against the validation images and the test's held-out ones."""
        if self.extractor() is None:
            return
        dm, size = self.trainer.datamodule, self.hparams.kid_subset_size
        val, test = getattr(dm, "val_set", None), getattr(dm, "test_set", None)
        if "val" in splits and val is not None:
            check_kid_subset(size, len(val), "validation images")
        if "test" in splits and test is not None:
            check_kid_subset(size, self.held_out(len(test)),
                             f"held-out real test images (min(model.eval_samples, N // 2) of the "
                             f"N = {len(test)})")  # fmt: skip

    def held_out(self, n_test: int) -> int:
        """``H``: the real test images held out for the floor, and the samples scored at test."""
        return min(self.hparams.eval_samples, n_test // 2)

    # -- generation --------------------------------------------------------------------------------
    def eval_latents(self, n: int, seed: int = _SEEDS["val"]) -> Tensor:
        """``n`` prior samples drawn on the CPU from ``seed`` (device-independent)."""
        return self.net.sample_prior(n, torch.Generator().manual_seed(seed)).cpu()

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """``net.decode`` of latents ``z`` (any device), ``_CHUNK`` at a time, on the task's
        device."""
        return torch.cat([self.net.decode(c.to(self.device)) for c in z.split(_CHUNK)])

    # -- validation --------------------------------------------------------------------------------
    def _d_values(self, batch: Batch, batch_idx: int, stage: str) -> dict[str, Tensor]:
        real = self.to_model(batch)
        g = torch.Generator(self.device).manual_seed(2 * batch_idx + (stage == "test"))
        fake = self.net.raw(self.net.sample_prior(len(real), g))
        d_loss = discriminator_loss(self.hparams.loss, self.discriminator(real),
                                    self.discriminator(fake))  # fmt: skip
        values = {"d_loss": d_loss}
        if self.hparams.loss == "wasserstein":
            values["wasserstein"] = -d_loss
        return values

    def _log_values(self, stage: str, values: dict[str, Any], n: int | None = None) -> None:
        for name, v in values.items():
            self.log(f"{stage}/{name}", v, on_step=False, on_epoch=True, sync_dist=True,
                     batch_size=n, prog_bar=name in ("fid", "mode_score"))  # fmt: skip

    def on_validation_epoch_start(self) -> None:
        metrics = self._metrics("val") if not self.trainer.sanity_checking else None
        # the validation split's real features are computed once (the split does not change)
        self._collect_real = metrics is not None and metrics.num_real == 0

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._log_values("val", self._d_values(batch, batch_idx, "val"), len(batch[self._key]))
        if self._collect_real:
            self._metrics("val").update_real(batch[IMAGE])

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return  # a couple of batches measure nothing; the grids start with epoch 0
        self._log_values("val", self.sample_metrics("val"))
        if self.trainer.state.fn == "fit":
            self._keep_progress()

    def sample_metrics(self, stage: str) -> dict[str, float]:
        """The sample-quality metrics of ``eval_samples`` generated samples (see the module):
        2-d mode coverage, or FID and KID against the validation images."""
        z = self.eval_latents(self.hparams.eval_samples, _SEEDS[stage])
        if not self.net.images:
            return self._mode_metrics(self.decode(z))
        metrics = self._metrics(stage)
        if metrics is None:
            return {}
        metrics.reset()
        rank, world = self.global_rank, self.trainer.world_size
        for chunk in list(z.split(_CHUNK))[rank::world]:  # the ranks' shares make up the set
            metrics.update_fake(self.decode(chunk))
        out = metrics.compute()
        return {"fid": out["fid"], "kid": out["kid"]}

    def _mixture(self) -> tuple[Tensor, float]:
        dm = self.trainer.datamodule if self._trainer is not None else None
        modes, std = getattr(dm, "modes", None), getattr(dm, "std", None)
        if not isinstance(modes, Tensor) or not isinstance(std, float):
            raise ConfigError(
                "GANTask's mode coverage needs the data module's mode centres and std "
                f"(modes, std of GaussianMixtureDataModule); {type(dm).__name__} has none"
            )
        return modes, std

    def _mode_metrics(self, samples: Tensor) -> dict[str, float]:
        modes, std = self._mixture()
        out = mode_coverage_2d(samples, modes, std)
        out["mode_score"] = out["modes"] + out["high_quality"]
        return out

    # -- progress grids ----------------------------------------------------------------------------
    @torch.no_grad()
    def _keep_progress(self) -> None:
        if not self.net.images:
            return
        images = self.decode(self.fixed_latents[:_PROGRESS_COLS])
        row = (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
        self._progress = [r for r in self._progress if r[0] < self.current_epoch]
        self._progress.append((self.current_epoch, row))
        if len(self._progress) > _PROGRESS_KEEP:  # halve evenly, keep the last
            self._progress = self._progress[::-2][::-1]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._progress:
            checkpoint["gan_progress"] = {
                "epochs": torch.tensor([e for e, _ in self._progress]),
                "images": torch.stack([r for _, r in self._progress]),
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("gan_progress")
        # a resumed run (or a test in a new process) takes the rows back; after fit, the
        # best checkpoint's validation and test keep the whole run's rows
        if not self._progress and isinstance(saved, dict) and {"epochs", "images"} <= set(saved):
            self._progress = list(zip(saved["epochs"].tolist(), saved["images"], strict=True))

    # -- test --------------------------------------------------------------------------------------
    @property
    def _key(self) -> str:
        return IMAGE if self.net.images else POINT

    def on_test_epoch_start(self) -> None:
        self._test_real: list[Tensor] = []
        self._test_labels: list[Tensor] = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        x = batch[self._key]
        self._log_values("test", self._d_values(batch, batch_idx, "test"), len(x))
        if self.extractor() is not None or not self.net.images:  # FID's split, the 2-d scatter
            self._test_real.append(x.detach().cpu())
        if isinstance(batch.get(LABEL), Tensor):
            self._test_labels.append(batch[LABEL].detach().cpu())

    def _gathered(self, parts: list[Tensor]) -> Tensor | None:
        """The test split's rows collected by ``test_step``, all of them in dataset order on every
        process (under DDP each process saw a share), or None when none were collected."""
        world = self.trainer.world_size if self._trainer is not None else 1
        if world == 1:
            return torch.cat(parts) if parts else None
        local = torch.cat(parts).to(self.device) if parts else None
        has = bool(self.all_gather(torch.tensor(local is not None, device=self.device)).all())
        if not has:
            return None
        loaders = self.trainer.test_dataloaders
        loader = loaders[0] if isinstance(loaders, list | tuple) else loaders
        ds = getattr(loader, "dataset", None)
        size = len(ds) if ds is not None and hasattr(ds, "__len__") else None
        return merge_gathered(self.all_gather(local), is_sharded(loader), size).cpu()

    def on_test_epoch_end(self) -> None:
        real, labels = self._gathered(self._test_real), self._gathered(self._test_labels)
        self._test_real, self._test_labels = [], []
        results: dict[str, Any] = {}
        if self.net.images:
            values = self._test_image_metrics(real, labels)
            results["samples"] = self.decode(self.fixed_latents).cpu()
            results |= self._neighbours(results["samples"][:_NN_SAMPLES])
            ends = self.eval_latents(2 * _PAIRS, _SEEDS["interpolations"])
            path = interpolate_latents(ends[:_PAIRS], ends[_PAIRS:], _STEPS)
            frames = self.decode(path.flatten(0, 1)).cpu()
            results["interpolations"] = frames.view(_PAIRS, _STEPS, *frames.shape[1:])
        else:
            fake = self.decode(self.eval_latents(self.hparams.eval_samples, _SEEDS["test"]))
            values = self._mode_metrics(fake)
            results["points"] = (real, fake.cpu(), self._mixture()[0])
        self._log_values("test", values)
        self._test_results = results

    def _test_image_metrics(self, real: Tensor | None, labels: Tensor | None) -> dict[str, float]:
        """FID and KID of ``H`` samples and of ``H`` held-out real images (the floor) against the
        other real test images, and the class coverage of the samples (see the module)."""
        ex = self.extractor()
        if ex is None or real is None:
            return {}
        n = self.held_out(len(real))
        held, rest = holdout_split(len(real), n, seed=0)
        # each process holds the whole split: no gathering in compute
        metrics = GenerativeMetrics(ex, kid_subset_size=self.hparams.kid_subset_size,
                                    option="model.kid_subset_size", sync=False).to(self.device)  # fmt: skip
        for chunk in rest.split(_CHUNK):
            metrics.update_real(real[chunk].to(self.device))
        for chunk in held.split(_CHUNK):
            metrics.update_fake(real[chunk].to(self.device))
        floor = metrics.compute()
        metrics.reset()  # keeps the reference R
        z = self.eval_latents(n, _SEEDS["test"])
        pred = []
        for chunk in z.split(_CHUNK):
            fake = self.decode(chunk)
            metrics.update_fake(fake)
            pred.append(ex.classify(fake).argmax(1).cpu())
        out = metrics.compute()
        values = {"fid": out["fid"], "kid": out["kid"], "fid_floor": floor["fid"],
                  "kid_floor": floor["kid"]}  # fmt: skip
        names = tuple(self.spec.class_names)
        if labels is not None and ex.class_names == names:
            data_hist = torch.bincount(labels, minlength=len(names)).float()
            values |= class_histogram_metrics(torch.cat(pred), data_hist)
        elif labels is not None:
            warnings.warn(
                f"model.features: the classifier's classes {ex.class_names[:4]}... are not the "
                f"data's {names[:4]}...; no class coverage (test/classes_hit, test/class_kl)",
                stacklevel=1,
            )
        return values

    def _train_images(self) -> Tensor | None:
        """A seeded subset (at most ``_NN_BANK``) of the training images, or None."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        ds = getattr(dm, "train_set", None)
        if ds is None or len(ds) == 0:
            return None
        idx = subsample(len(ds), _NN_BANK).tolist()
        loader = DataLoader(Subset(ds, idx), batch_size=512, collate_fn=type(dm).collate_fn)
        return torch.cat([b[IMAGE] for b in loader])

    def _neighbours(self, samples: Tensor) -> dict[str, Any]:
        train = self._train_images()
        if train is None:
            return {}
        ex = self.extractor()
        dev = self.device
        idx = nearest_training_images(samples.to(dev), train.to(dev), ex, k=_NEIGHBOURS)
        return {"neighbours": (samples, train[idx.cpu()], ex is not None)}

    # -- artifacts ---------------------------------------------------------------------------------
    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After fit and test ``plots/progress.png``; after test the sample plots (module)."""
        if stage in ("fit", "test") and self._progress:
            rows = thin_rows([e for e, _ in self._progress], _PROGRESS_ROWS)
            frames = torch.stack([self._progress[i][1] for i in rows]).float() / 255
            epochs = ", ".join(str(self._progress[i][0]) for i in rows)
            plot_interpolations(frames, run.plots / "progress.png",
                                title=f"fixed latents after epochs {epochs} (rows)")  # fmt: skip
        results, self._test_results = self._test_results, None
        if stage != "test" or not results:
            return {}
        if "samples" in results:
            plot_image_grid(results["samples"], run.plots / "samples.png",
                            title=f"{len(results['samples'])} samples of the fixed latents")  # fmt: skip
        if "neighbours" in results:
            samples, neighbours, in_features = results["neighbours"]
            space = "the classifier's feature space" if in_features else "pixels"
            plot_nearest_neighbours(samples, neighbours, run.plots / "nearest_neighbours.png",
                                    title=f"samples (left) and their nearest training images "
                                    f"({space})")  # fmt: skip
        if "interpolations" in results:
            plot_interpolations(results["interpolations"], run.plots / "interpolations.png",
                                title="latent interpolations (slerp) between prior samples")  # fmt: skip
        if "points" in results:
            real, fake, centres = results["points"]
            plot_points_2d(real, fake, centres, run.plots / "points.png",
                           title=f"{len(fake)} generated points against the real test points")  # fmt: skip
        return {}
