"""Unpaired image-to-image translation with cycle consistency (CycleGAN: Zhu, Park, Isola and
Efros, ICCV 2017; seed 001).

Two generators ``G: A -> B`` and ``F: B -> A`` (:class:`~visrep.models.generative.
ResnetGenerator`) and two PatchGAN discriminators ``D_B`` (real B against ``G(a)``) and ``D_A``
(:class:`~visrep.models.generative.PatchDiscriminator`) play eq. 3:

``L = L_GAN(G, D_B) + L_GAN(F, D_A) + lambda (|F(G(a)) - a|_1 + |G(F(b)) - b|_1)
+ lambda_id lambda (|G(b) - b|_1 + |F(a) - a|_1)``

with ``lambda`` = ``cycle_weight`` (10) and the identity term of sec. 5.2 weighted
``identity_weight`` x ``lambda`` (0.5 x 10, as the authors' code). Sec. 4, "Training details":
least-squares adversarial terms (G minimises ``E[(D(G(a)) - 1)^2]``; D minimises ``E[(D(b) -
1)^2] + E[D(G(a))^2]``, halved), discriminators updated on a history of 50 generated images
(Shrivastava et al. 2017; :class:`~visrep.models.generative.ImagePool`), Adam lr 2e-4, betas
(0.5, 0.999) (kept constant here: see :func:`_default_optim`). With ``loss: nonsaturating`` the
adversarial terms are the original GAN's (cross-entropy; the discriminator's halved too). Each
batch is one generator step (both generators) then one discriminator step (both
discriminators), as the authors' code; under DDP that needs ``--trainer.strategy
ddp_find_unused_parameters_true`` (each backward reaches one pair of networks only).

Images in [0, 1] are mapped to [-1, 1] for the networks; every metric is in [0, 1] pixel units.

Metrics: ``val/cycle_a`` = ``|F(G(a)) - a|_1`` and ``val/cycle_b`` per pixel, ``val/loss`` their
sum; the same at test. They select no checkpoint (``last.ckpt`` only, as the authors use the
final epoch's networks): an identity mapping minimises the cycle errors, so the epoch with the
lowest would favour translations that change the least. With ``features``, a visrep
classification run that tells the domains apart (``domain_classes`` names its classes of A and
B; default the data's class names): ``test/acc_ab``, the share of translated A images that the
classifier puts in B (argmax over all its classes: does the translation land in the target
domain?), ``test/acc_ba`` the other way, and ``test/acc_a``, ``test/acc_b`` its accuracy on the
real test images, for reference.

Artifacts after test: ``plots/translations_ab.png`` and ``plots/translations_ba.png`` (input,
translated, reconstructed). ``visrep predict`` translates A images to B
(``predictions/<index>_<name>.png``, with the per-image cycle error in ``predictions.csv``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from visrep.data.base import DataSpec
from visrep.data.samples import IMAGE, IMAGE_B
from visrep.errors import ConfigError
from visrep.losses.gan import (
    cycle_consistency_loss,
    discriminator_loss,
    generator_loss,
    identity_loss,
    lsgan_d_loss,
    lsgan_g_loss,
)
from visrep.models.generative import ImagePool, PatchDiscriminator, ResnetGenerator
from visrep.plots.generation import plot_translations
from visrep.runs import RunDir
from visrep.tasks.base import Task
from visrep.tasks.gan import OptimOverrides, check_optim_option
from visrep.tasks.gan_metrics import FeatureExtractor, load_feature_extractor
from visrep.tasks.gan_training import EpochMeans, check_ddp_strategy, optimizer_with_schedule
from visrep.tasks.optim import OptimConfig

__all__ = ["CycleGANTask", "Translator"]

Batch = dict[str, Any]
_SHOWN = 8  # test images per translation figure


class Translator(nn.Module):
    """An image-to-image generator on images in [0, 1] (it works in [-1, 1]).

    >>> t = Translator(ResnetGenerator(1, 1, width=2, n_blocks=1))
    >>> y = t.translate(torch.rand(2, 1, 8, 8))
    >>> y.shape, bool(y.min() >= 0 and y.max() <= 1)
    (torch.Size([2, 1, 8, 8]), True)
    """

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def raw(self, x: Tensor) -> Tensor:
        """``[-1, 1] -> [-1, 1]``: the generator itself."""
        return self.generator(x)

    def translate(self, images: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` in [0, 1] to the other domain, in [0, 1]."""
        return (self.generator(images * 2 - 1) + 1) / 2

    def forward(self, images: Tensor) -> Tensor:
        return self.translate(images)


def _default_optim() -> OptimConfig:
    """Adam, lr 2e-4, betas (0.5, 0.999) (Zhu et al. 2017, sec. 4), at a constant rate.

    The paper keeps lr 2e-4 for the first 100 epochs and decays it linearly to 0 over the next
    100. visrep's default is constant because its runs are a few epochs long (a CPU budget):
    a decay that starts after epoch 100 would never start. None of
    :mod:`visrep.tasks.optim`'s schedules (constant, step, cosine, each with a linear warm-up)
    is "constant, then linear to 0"; ``--model.g_optim.schedule cosine`` (and ``d_optim``)
    decays smoothly to 0 over the whole run instead.
    """
    return OptimConfig(optimizer="adam", lr=2e-4, betas=(0.5, 0.999), weight_decay=0.0,
                       schedule="constant")  # fmt: skip


class CycleGANTask(Task):
    """Trains CycleGAN on two unpaired domains (``image``, ``image_b`` batches; see the module).

    Args:
        width: generators' and discriminators' first-layer channels (64 in the paper).
        n_blocks: residual blocks of each generator (6 for 128x128 images, 9 for 256x256).
        n_down: stride-2 down- and up-samplings of each generator.
        d_layers: stride-2 layers of each PatchGAN (3: 70x70 patches).
        norm: ``instance`` (the paper) or ``batch``.
        loss: ``lsgan`` (the paper) or ``nonsaturating`` (the original GAN's cross-entropy).
        cycle_weight: lambda of the cycle-consistency terms (10).
        identity_weight: the identity terms' weight relative to ``cycle_weight`` (0.5; 0: none).
        pool_size: generated images each discriminator's history holds (50; 0: none).
        g_optim: the generators' optimiser and schedule: the fields given replace those of the
            default (Adam 2e-4, (0.5, 0.999), constant: :func:`_default_optim`).
        d_optim: the discriminators' (the same default).
        features: a visrep classification run (directory or ``.ckpt``) that tells the domains
            apart, on images of the data's channels and size.
        domain_classes: the classifier's class names of domain A and B (default: the data's
            class names); only with ``features``.
    """

    families = ("unpaired",)
    input_key = IMAGE  # forward translates A images
    monitor: ClassVar[tuple[str, str] | None] = None  # last.ckpt only (see the module)

    def __init__(
        self,
        width: int = 64,
        n_blocks: int = 6,
        n_down: int = 2,
        d_layers: int = 3,
        norm: Literal["instance", "batch"] = "instance",
        loss: Literal["lsgan", "nonsaturating"] = "lsgan",
        cycle_weight: float = 10.0,
        identity_weight: float = 0.5,
        pool_size: int = 50,
        g_optim: OptimOverrides | None = None,
        d_optim: OptimOverrides | None = None,
        features: str | None = None,
        domain_classes: list[str] | None = None,
    ) -> None:
        super().__init__()
        _check_options(width, n_blocks, n_down, d_layers, norm, loss, cycle_weight,
                       identity_weight, pool_size, features, domain_classes)  # fmt: skip
        self.g_optim = check_optim_option(g_optim, "g_optim", _default_optim())
        self.d_optim = check_optim_option(d_optim, "d_optim", _default_optim())
        self.save_hyperparameters()
        # checkpoints keep the optimisers used, whole
        self.hparams["g_optim"] = asdict(self.g_optim)
        self.hparams["d_optim"] = asdict(self.d_optim)
        self.automatic_optimization = False
        self.pools = (ImagePool(pool_size), ImagePool(pool_size))  # fakes of A, fakes of B
        self._held: dict[str, Any] = {}
        self._test_results: dict[str, Any] | None = None

    def setup(self, stage: str) -> None:
        check_ddp_strategy(self, stage)

    # -- the model, from the data ---------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        hp = self.hparams
        if spec.in_chans is None or spec.image_size is None:
            raise ConfigError(f"CycleGANTask needs the images' channels and size, got {spec}")
        c = spec.in_chans
        step = 2**hp.n_down
        if spec.image_size[0] % step or spec.image_size[1] % step:
            raise ConfigError(
                f"data image_size {tuple(spec.image_size)} must be divisible by 2**n_down = "
                f"{step} (--model.n_down {hp.n_down})"
            )

        def generator() -> ResnetGenerator:
            return ResnetGenerator(c, c, hp.width, hp.n_blocks, hp.n_down, hp.norm)

        self.net = Translator(generator())  # G: A -> B
        self.net_ba = Translator(generator())  # F: B -> A
        self.disc_a = PatchDiscriminator(c, hp.width, hp.d_layers, hp.norm)  # A against F(b)
        self.disc_b = PatchDiscriminator(c, hp.width, hp.d_layers, hp.norm)  # B against G(a)
        self._held.clear()

    def forward(self, images: Tensor) -> Tensor:
        return self.net.translate(images)

    # -- the losses (Zhu et al. 2017, sec. 4) -----------------------------------------------------
    def _adversarial(self, scores: Tensor) -> Tensor:
        """The generator's adversarial term: ``E[(D(G(a)) - 1)^2]`` for lsgan (Mao et al.'s
        loss without its 1/2, as sec. 4 writes it), the non-saturating cross-entropy else."""
        if self.hparams.loss == "lsgan":
            return 2 * lsgan_g_loss(scores)
        return generator_loss("nonsaturating", scores)

    def _discriminator(self, real: Tensor, fake: Tensor) -> Tensor:
        """A discriminator's loss on real and (pooled) fake scores, halved (sec. 4)."""
        if self.hparams.loss == "lsgan":
            return lsgan_d_loss(real, fake)  # 0.5 E[(D(b) - 1)^2] + 0.5 E[D(G(a))^2]
        return 0.5 * discriminator_loss("nonsaturating", real, fake)

    def generator_losses(self, a: Tensor, b: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """Eq. 3 for the generators on ``a``, ``b`` in [-1, 1]: the terms, the total in
        ``"loss"``, and the fakes ``G(a)``, ``F(b)``."""
        hp = self.hparams
        fake_b, fake_a = self.net.raw(a), self.net_ba.raw(b)
        values = {
            "g_adv_ab": self._adversarial(self.disc_b(fake_b)),
            "g_adv_ba": self._adversarial(self.disc_a(fake_a)),
            "cycle_a": cycle_consistency_loss(a, self.net_ba.raw(fake_b)),
            "cycle_b": cycle_consistency_loss(b, self.net.raw(fake_a)),
        }
        total = values["g_adv_ab"] + values["g_adv_ba"]
        total = total + hp.cycle_weight * (values["cycle_a"] + values["cycle_b"])
        if hp.identity_weight > 0:
            values["identity_a"] = identity_loss(a, self.net_ba.raw(a))  # F(a) ~ a
            values["identity_b"] = identity_loss(b, self.net.raw(b))  # G(b) ~ b
            weight = hp.identity_weight * hp.cycle_weight
            total = total + weight * (values["identity_a"] + values["identity_b"])
        values["g_loss"] = total
        return values, fake_b, fake_a

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> tuple[list, list]:
        per_epoch = max(int(self.trainer.estimated_stepping_batches)
                        // max(self.trainer.max_epochs or 1, 1), 1)  # fmt: skip
        generators = nn.ModuleList([self.net, self.net_ba])
        discriminators = nn.ModuleList([self.disc_a, self.disc_b])
        g_opt, g_sched = optimizer_with_schedule(self, generators, self.g_optim, "g_optim",
                                                 per_epoch)  # fmt: skip
        d_opt, d_sched = optimizer_with_schedule(self, discriminators, self.d_optim, "d_optim",
                                                 per_epoch)  # fmt: skip
        return [g_opt, d_opt], [g_sched, d_sched]

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        a, b = batch[IMAGE] * 2 - 1, batch[IMAGE_B] * 2 - 1
        g_opt, d_opt = self.optimizers()
        g_sched, d_sched = self.lr_schedulers()
        discriminators = (self.disc_a, self.disc_b)
        for d in discriminators:
            d.requires_grad_(False)
        try:
            values, fake_b, fake_a = self.generator_losses(a, b)
            g_opt.zero_grad(set_to_none=True)
            self.manual_backward(values["g_loss"])
            g_opt.step()
        finally:
            for d in discriminators:
                d.requires_grad_(True)
        g_sched.step()
        pooled_a, pooled_b = self.pools[0].query(fake_a), self.pools[1].query(fake_b)
        d_a = self._discriminator(self.disc_a(a), self.disc_a(pooled_a))
        d_b = self._discriminator(self.disc_b(b), self.disc_b(pooled_b))
        d_opt.zero_grad(set_to_none=True)
        self.manual_backward(d_a + d_b)
        d_opt.step()
        d_sched.step()
        self._means.add(values | {"d_a": d_a, "d_b": d_b}, len(a))
        if self._means.epoch_done(self, batch_idx):
            self._means.log(self, "train", ("g_loss",))

    def on_train_epoch_start(self) -> None:
        self._means = EpochMeans()

    # -- pools in checkpoints -------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["image_pools"] = [p.state_dict() for p in self.pools]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("image_pools")
        if isinstance(saved, list) and len(saved) == 2:
            for pool, state in zip(self.pools, saved, strict=True):
                pool.load_state_dict(state)

    # -- evaluation -----------------------------------------------------------------------------
    def _cycle(self, batch: Batch) -> dict[str, Tensor]:
        a, b = batch[IMAGE], batch[IMAGE_B]
        ab, ba = self.net.translate(a), self.net_ba.translate(b)
        aba, bab = self.net_ba.translate(ab), self.net.translate(ba)
        return {"a": a, "b": b, "ab": ab, "ba": ba, "aba": aba, "bab": bab}

    def _log_cycle(self, stage: str, out: dict[str, Tensor]) -> None:
        cycle_a = (out["aba"] - out["a"]).abs().mean()
        cycle_b = (out["bab"] - out["b"]).abs().mean()
        n = len(out["a"])
        for name, v in (("cycle_a", cycle_a), ("cycle_b", cycle_b), ("loss", cycle_a + cycle_b)):
            self.log(f"{stage}/{name}", v, on_step=False, on_epoch=True, batch_size=n,
                     sync_dist=True, prog_bar=name == "loss")  # fmt: skip

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._log_cycle("val", self._cycle(batch))

    def extractor(self) -> tuple[FeatureExtractor, int, int] | None:
        """The domain classifier of ``features`` and its class indices of A and B, or None."""
        if self.hparams.features is None:
            return None
        if "extractor" not in self._held:
            spec = self.spec
            ex = load_feature_extractor(self.hparams.features, spec.in_chans, spec.image_size,
                                        "model.features")  # fmt: skip
            names = list(self.hparams.domain_classes or spec.class_names)
            missing = [n for n in names if n not in ex.class_names]
            if missing:
                raise ConfigError(
                    f"model.domain_classes: the classifier of model.features has no class "
                    f"{missing[0]!r} (its classes: {', '.join(ex.class_names)}); name its classes "
                    "of domain A and B"
                )
            self._held["extractor"] = (ex, ex.class_names.index(names[0]),
                                       ex.class_names.index(names[1]))  # fmt: skip
        ex, ia, ib = self._held["extractor"]
        return ex.to(self.device), ia, ib

    def on_fit_start(self) -> None:
        self.extractor()  # a classifier that does not fit fails now, not at test

    def on_test_epoch_start(self) -> None:
        self._shown: list[dict[str, Tensor]] = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        out = self._cycle(batch)
        self._log_cycle("test", out)
        found = self.extractor()
        if found is not None:
            ex, ia, ib = found
            n = len(out["a"])
            for name, images, target in (("acc_ab", out["ab"], ib), ("acc_ba", out["ba"], ia),
                                         ("acc_a", out["a"], ia), ("acc_b", out["b"], ib)):  # fmt: skip
                hit = (ex.classify(images).argmax(1) == target).float().mean()
                self.log(f"test/{name}", hit, on_step=False, on_epoch=True, batch_size=n,
                         sync_dist=True)  # fmt: skip
        have = sum(len(s["a"]) for s in self._shown)
        if have < _SHOWN:
            k = _SHOWN - have
            self._shown.append({key: v[:k].detach().cpu() for key, v in out.items()})

    def on_test_epoch_end(self) -> None:
        if self._shown:
            self._test_results = {k: torch.cat([s[k] for s in self._shown]) for k in self._shown[0]}

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """A images translated to B (``translated``, uint8) and each image's cycle error
        ``|F(G(a)) - a|`` per pixel (``cycle_l1``)."""
        a = batch[IMAGE]
        ab = self.net.translate(a)
        aba = self.net_ba.translate(ab)
        return {
            "translated": (ab.clamp(0, 1) * 255).round().to(torch.uint8),
            "cycle_l1": (aba - a).abs().flatten(1).mean(1),
        }

    # -- what the trainer calls ------------------------------------------------------------------
    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: ``plots/translations_ab.png`` and ``plots/translations_ba.png``."""
        results, self._test_results = self._test_results, None
        if stage != "test" or not results:
            return {}
        plot_translations(results["a"], results["ab"], results["aba"],
                          run.plots / "translations_ab.png",
                          title="test images of A, translated to B (G), and back (F)")  # fmt: skip
        plot_translations(results["b"], results["ba"], results["bab"],
                          run.plots / "translations_ba.png",
                          title="test images of B, translated to A (F), and back (G)")  # fmt: skip
        return {}

    def write_prediction_files(
        self, run: RunDir, outputs: list[dict[str, Tensor]], names: list[str]
    ) -> list[str]:
        """Each A image translated to B: ``predictions/<index>_<name>.png``."""
        images = [im.permute(1, 2, 0).cpu().numpy() for out in outputs for im in out["translated"]]
        return [
            run.write_prediction_image(i, name, Image.fromarray(np.ascontiguousarray(
                img[..., 0] if img.shape[-1] == 1 else img)))
            for i, (img, name) in enumerate(zip(images, names, strict=True))
        ]  # fmt: skip

    def predict_rows(self, outputs: list[dict[str, Tensor]]) -> list[dict[str, Any]]:
        """The cycle error of each image (the translation itself is a file)."""
        return [{"cycle_l1": round(float(v), 6)} for out in outputs for v in out["cycle_l1"].cpu()]


def _check_options(
    width: int, n_blocks: int, n_down: int, d_layers: int, norm: str, loss: str,
    cycle_weight: float, identity_weight: float, pool_size: int, features: str | None,
    domain_classes: Any,
) -> None:  # fmt: skip
    """CycleGANTask's options, each refused in one line naming ``model.<option>``."""
    ints = {"width": (width, 1), "n_blocks": (n_blocks, 0), "n_down": (n_down, 0),
            "d_layers": (d_layers, 1), "pool_size": (pool_size, 0)}  # fmt: skip
    for name, (value, low) in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"model.{name} must be an integer >= {low}, got {value!r}")
    for name, value, allowed in (("norm", norm, ("instance", "batch")),
                                 ("loss", loss, ("lsgan", "nonsaturating"))):  # fmt: skip
        if value not in allowed:
            raise ConfigError(f"model.{name} must be one of {', '.join(allowed)}, got {value!r}")
    for name, value in (("cycle_weight", cycle_weight), ("identity_weight", identity_weight)):
        if not (isinstance(value, int | float) and 0 <= value < float("inf")):
            raise ConfigError(f"model.{name} must be a finite number >= 0, got {value!r}")
    if domain_classes is not None and (
        len(domain_classes) != 2 or len(set(domain_classes)) != 2
        or not all(isinstance(n, str) for n in domain_classes)
    ):  # fmt: skip
        raise ConfigError(
            "model.domain_classes must name two different classes of the classifier (domain A's, "
            f"then B's), got {domain_classes!r}"
        )
    if domain_classes is not None and features is None:
        raise ConfigError(
            "model.domain_classes names classes of the model.features classifier, but no "
            "--model.features is given (it would have no effect)"
        )
