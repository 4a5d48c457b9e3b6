"""GANTask: the seed's alternation of discriminator and generator steps (counted), each step
moving only its own network, the gradient penalty and clipping paths, the EMA formula, partial
optimiser options merged onto each game's default, the generator's schedule as long as its
steps, counters kept across a resume, a tiny fit on a 2-d mixture and one on digits with a visrep
classifier as FID feature extractor (the test's held-out protocol checked directly), DDP
refused without unused-parameter detection (and a 2-process fit, slow), and every bad option as
one error line."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch import nn

import visrep.tasks.gan as gan_module
from visrep.cli import main
from visrep.data import DigitsDataModule, GaussianMixtureDataModule
from visrep.data.base import DataSpec, LoaderConfig
from visrep.errors import ConfigError, TrainingError
from visrep.runs import load_checkpoint
from visrep.tasks import ClassificationTask, GANTask
from visrep.tasks.checkpoint import read_task_checkpoint
from visrep.tasks.gan import OptimOverrides, default_gan_optim, ema_update_
from visrep.tasks.gan_metrics import (
    GenerativeMetrics,
    holdout_split,
    load_feature_extractor,
    mode_coverage_2d,
    real_floor,
)
from visrep.tasks.optim import OptimConfig, lr_factor

_QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
_MLP = {"generator": "mlp", "latent_size": 2, "hidden": 8, "depth": 1, "eval_samples": 200,
        "kid_subset_size": 10}  # fmt: skip
_POINTS = DataSpec(family="mixture2d", keys=("point", "label"), num_classes=8,
                   class_names=tuple(str(i) for i in range(8)), point_dim=2)  # fmt: skip


def _mixture(batches: int = 12, batch_size: int = 50) -> GaussianMixtureDataModule:
    return GaussianMixtureDataModule(train_size=batches * batch_size, val_size=200,
                                     test_size=200, loader=LoaderConfig(batch_size=batch_size))  # fmt: skip


def _trainer(tmp_path: Path | None = None, **kwargs) -> L.Trainer:
    opts = {"max_epochs": 1, "logger": False, "accelerator": "cpu", "enable_progress_bar": False,
            "enable_model_summary": False, "enable_checkpointing": False,
            "num_sanity_val_steps": 0} | kwargs  # fmt: skip
    if tmp_path is not None:
        opts["default_root_dir"] = tmp_path
    return L.Trainer(**opts)


class _Steps(L.Callback):
    """Records every optimiser step, in order: ``d`` (the first optimiser) or ``g``."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def on_train_start(self, trainer, pl_module) -> None:
        for name, opt in zip("dg", trainer.optimizers, strict=True):
            opt.register_step_post_hook(lambda *_, n=name: self.order.append(n))


@pytest.mark.parametrize("n_critic", [1, 5])
def test_discriminator_and_generator_steps_alternate_as_configured(n_critic):
    """Goodfellow et al. 2014, algorithm 1: n_critic D steps, then one G step; 12 batches."""
    torch.manual_seed(0)
    task, steps = GANTask(**_MLP, n_critic=n_critic), _Steps()
    trainer = _trainer(callbacks=[steps])
    trainer.fit(task, _mixture())
    want = ("d" * n_critic + "g") * (12 // n_critic) + "d" * (12 % n_critic)
    assert "".join(steps.order) == want
    assert (int(task.d_steps), int(task.g_steps)) == (12, 12 // n_critic)
    m = trainer.callback_metrics
    assert (m["train/d_steps"], m["train/g_steps"]) == (12, 12 // n_critic)
    assert trainer.global_step == 12 + 12 // n_critic


def test_each_game_gets_its_papers_optimisers():
    clip = GANTask(**_MLP, loss="wasserstein", clip=0.01)
    gp = GANTask(**_MLP, loss="wasserstein", gp_weight=10.0)
    dcgan = GANTask(**_MLP)
    assert (clip.d_optim.optimizer, clip.d_optim.lr, clip.d_optim.momentum) == ("rmsprop", 5e-5, 0)
    assert (gp.g_optim.optimizer, gp.g_optim.lr, gp.g_optim.betas) == ("adam", 1e-4, (0.0, 0.9))
    assert (dcgan.d_optim.lr, dcgan.d_optim.betas) == (2e-4, (0.5, 0.999))
    assert default_gan_optim("lsgan", 0.0) == dcgan.g_optim
    task = GANTask(**_MLP, loss="wasserstein", clip=0.01, d_optim={"optimizer": "adam", "lr": 1e-3})
    assert (task.d_optim.optimizer, task.g_optim.optimizer) == ("adam", "rmsprop")
    assert task.d_optim == replace(default_gan_optim("wasserstein", 0.0), optimizer="adam", lr=1e-3)
    trainer = _trainer(limit_train_batches=2, limit_val_batches=0)
    trainer.fit(task, _mixture())
    d_opt, g_opt = trainer.optimizers
    assert isinstance(d_opt, torch.optim.Adam) and isinstance(g_opt, torch.optim.RMSprop)


def test_a_partial_optimiser_option_changes_only_those_fields_of_the_games_default():
    """--model.d_optim.lr 1e-4 on the clipped WGAN keeps RMSProp, momentum 0, no weight decay,
    constant rate (not OptimConfig's SGD 0.9, 5e-4, cosine)."""
    wgan = default_gan_optim("wasserstein", 0.0)
    task = GANTask(loss="wasserstein", clip=0.01, d_optim={"lr": 1e-4})
    assert task.d_optim == replace(wgan, lr=1e-4) and task.g_optim == wgan
    both = GANTask(**_MLP, g_optim=OptimOverrides(betas=[0.0, 0.99], schedule="cosine"))
    assert both.g_optim == replace(default_gan_optim("nonsaturating", 0.0), betas=(0.0, 0.99),
                                   schedule="cosine")  # fmt: skip
    whole = OptimConfig(optimizer="sgd", lr=0.01)
    assert GANTask(**_MLP, d_optim=whole).d_optim == whole  # a whole config is used as it is
    # the same fields, so every OptimConfig option can be given on its own
    assert [f.name for f in fields(OptimOverrides)] == [f.name for f in fields(OptimConfig)]
    # checkpoints keep the resolved optimisers, which give them back
    assert GANTask(**_MLP, d_optim=task.hparams["d_optim"]).d_optim == replace(wgan, lr=1e-4)
    with pytest.raises(ConfigError, match=r"--model\.d_optim: unknown option 'learning_rate'"):
        GANTask(d_optim={"learning_rate": 0.1})


def test_the_cli_merges_one_optimiser_field_onto_the_default(capsys):
    with pytest.raises(SystemExit) as done:  # --print_config prints and exits
        main(["fit", "--model", "visrep.tasks.GANTask", "--model.generator", "mlp",
              "--model.loss", "wasserstein", "--model.clip", "0.01", "--model.d_optim.lr", "1e-4",
              "--data", "visrep.data.GaussianMixtureDataModule", "--print_config"])  # fmt: skip
    assert done.value.code == 0
    init = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    given = {k: v for k, v in init["d_optim"].items() if v is not None}
    assert given == {"lr": 1e-4} and init["g_optim"] is None  # the fields given, no others
    task = GANTask(**init)
    assert task.d_optim == replace(default_gan_optim("wasserstein", 0.0), lr=1e-4)


def test_the_generator_schedule_ends_with_its_last_step():
    """12 batches an epoch, n_critic 5, 5 epochs: 60 discriminator and 12 generator steps (2.4
    an epoch). The cosine schedule of each reaches its end (lr x min_lr_ratio) after the run's
    last step of it, not before (rounding 2.4 down to 2 ended the generator's at step 10)."""
    torch.manual_seed(0)
    cosine = {"schedule": "cosine", "min_lr_ratio": 0.1}
    task = GANTask(**_MLP, n_critic=5, g_optim=cosine, d_optim=cosine)
    lrs: dict[str, list[float]] = {"d": [], "g": []}

    class Record(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            for name, opt in zip("dg", trainer.optimizers, strict=True):
                opt.register_step_pre_hook(
                    lambda o, *_, n=name: lrs[n].append(o.param_groups[0]["lr"])
                )

    trainer = _trainer(max_epochs=5, limit_val_batches=0, callbacks=[Record()])
    trainer.fit(task, _mixture())
    assert (len(lrs["d"]), len(lrs["g"])) == (60, 12)
    for name, steps, cfg in (("d", 60, task.d_optim), ("g", 12, task.g_optim)):
        got = lrs[name]
        want = [cfg.lr * lr_factor(i, steps / 5, 5, cfg) for i in range(steps)]
        assert got == pytest.approx(want, rel=1e-9)
        assert all(a > b for a, b in itertools.pairwise(got))  # decreasing throughout
        assert got[-1] > cfg.lr * 0.1
    for sched, cfg in zip(trainer.lr_scheduler_configs, (task.d_optim, task.g_optim), strict=True):
        assert sched.scheduler.get_last_lr()[0] == pytest.approx(cfg.lr * 0.1, rel=1e-9)


class _Changes(L.Callback):
    """Wraps the task's discriminator_step and generator_step: which parameters each changed."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, set[str]]] = []

    def on_train_start(self, trainer, task) -> None:
        for name in ("discriminator_step", "generator_step"):
            setattr(task, name, self._spy(task, name, getattr(task, name)))

    def _spy(self, task, name, step):
        def wrapped(*args):
            before = {k: p.detach().clone() for k, p in task.named_parameters()}
            out = step(*args)
            moved = {k for k, p in task.named_parameters() if not torch.equal(p, before[k])}
            self.seen.append((name, moved))
            return out

        return wrapped


def test_each_step_changes_only_its_own_networks_parameters():
    """A discriminator step moves every discriminator parameter and nothing else; a generator
    step every generator parameter and its EMA copy, and nothing else."""
    torch.manual_seed(0)
    task, spy = GANTask(**_MLP, n_critic=2, ema=0.9), _Changes()
    _trainer(limit_train_batches=4, limit_val_batches=0, callbacks=[spy]).fit(task, _mixture())
    names = [k for k, _ in task.named_parameters()]
    d = {k for k in names if k.startswith("discriminator.")}
    g = {k for k in names if k.startswith("train_net.")}
    ema = {k for k in names if k.startswith("net.")}
    assert d and g and ema and d | g | ema == set(names)
    assert [n for n, _ in spy.seen] == ["discriminator_step", "discriminator_step",
                                        "generator_step"] * 2  # fmt: skip
    for name, moved in spy.seen:
        assert moved == (d if name == "discriminator_step" else g | ema), name


def test_weight_clipping_keeps_the_critic_in_the_box():
    """Arjovsky et al. 2017, algorithm 1 line 7: after every critic step, |w| <= c."""
    torch.manual_seed(0)
    task = GANTask(**_MLP, loss="wasserstein", clip=0.01, n_critic=5,
                   d_optim={"optimizer": "adam", "lr": 0.1, "weight_decay": 0.0})  # fmt: skip
    _trainer(limit_val_batches=0).fit(task, _mixture())
    weights = torch.cat([p.detach().flatten() for p in task.discriminator.parameters()])
    assert float(weights.abs().max()) == pytest.approx(0.01)  # lr 0.1 pushes them to the bound


def test_the_gradient_penalty_is_applied_on_every_critic_step(monkeypatch):
    calls: list[tuple] = []
    real_gp = gan_module.gradient_penalty

    def spy(critic, real, fake, *args, **kwargs):
        calls.append((critic, real.shape, fake.requires_grad))
        return real_gp(critic, real, fake, *args, **kwargs)

    monkeypatch.setattr(gan_module, "gradient_penalty", spy)
    torch.manual_seed(0)
    task = GANTask(**_MLP, loss="wasserstein", gp_weight=10.0, n_critic=5)
    trainer = _trainer(limit_val_batches=0)
    trainer.fit(task, _mixture())
    assert len(calls) == 12 and all(c[0] is task.discriminator for c in calls)
    assert calls[0][1] == (50, 2) and not calls[0][2]  # fakes come detached from G
    assert (
        math.isfinite(trainer.callback_metrics["train/gp"])
        and trainer.callback_metrics["train/gp"] > 0
    )


def test_penalty_weight_enters_the_critic_loss(monkeypatch):
    """With the penalty replaced by a constant-gradient term, the critic's gradient moves by
    gp_weight times that term's gradient."""
    grads = {}
    for weight in (0.0, 3.0):
        torch.manual_seed(0)
        task = GANTask(**_MLP, loss="lsgan", gp_weight=weight)
        task.setup_spec(_POINTS)
        bias = task.discriminator.net[-1].bias
        monkeypatch.setattr(gan_module, "gradient_penalty", lambda critic, r, f, b=bias: b.sum())
        monkeypatch.setattr(task, "optimizers", lambda: (_NoStep(), None))
        monkeypatch.setattr(task, "lr_schedulers", lambda: (_NoStep(), None))
        monkeypatch.setattr(task, "manual_backward", lambda loss: loss.backward())
        task._d = 0
        torch.manual_seed(1)
        task.discriminator_step(torch.randn(16, 2))
        grads[weight] = bias.grad.clone()
    assert torch.allclose(grads[3.0] - grads[0.0], torch.full_like(grads[0.0], 3.0))


class _NoStep:
    def step(self) -> None:
        pass

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass


class _EMACheck(L.Callback):
    def __init__(self) -> None:
        self.checked = 0

    def on_train_batch_start(self, trainer, task, batch, batch_idx) -> None:
        self.before = [p.detach().clone() for p in task.net.parameters()]

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx) -> None:
        for ema, old, p in zip(task.net.parameters(), self.before,
                               task.train_net.parameters(), strict=True):  # fmt: skip
            assert torch.allclose(ema, 0.9 * old + 0.1 * p, atol=1e-6)
        self.checked += 1


def test_the_ema_generator_follows_the_decay_formula_and_is_the_net():
    torch.manual_seed(0)
    task, check = GANTask(**_MLP, ema=0.9), _EMACheck()
    _trainer(limit_train_batches=3, limit_val_batches=0, callbacks=[check]).fit(task, _mixture())
    assert check.checked == 3
    ema, raw = task.net.generator.net[0].weight, task.train_net.generator.net[0].weight
    assert not torch.allclose(ema, raw) and not ema.requires_grad
    # the trained generator is what the optimiser holds; the EMA one is what samples
    assert task.generator_net is task.train_net and task.net is not task.train_net
    bn, bn_src = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    bn_src.running_mean.fill_(2.0)
    ema_update_(bn, bn_src, 0.5)
    assert torch.equal(bn.running_mean, bn_src.running_mean)  # buffers are copied


def test_resume_keeps_the_step_counters_and_progress_rows(tmp_path):
    """12 batches an epoch, n_critic 5: two epochs make 24 D and 4 G steps (G after D steps 5,
    10, 15, 20). Resumed after epoch 0 from counters reset to 0, the run would end at 12 and 2.
    The progress grid's row of epoch 0 comes back from the checkpoint."""
    spec = {"latent_size": 4, "width": 4, "n_critic": 5, "grid": 4}
    limits = {"limit_train_batches": 12, "limit_val_batches": 1}
    ckpt = L.pytorch.callbacks.ModelCheckpoint(tmp_path, filename="last")
    task = GANTask(**spec)
    first = _trainer(tmp_path, enable_checkpointing=True, callbacks=[ckpt], **limits)
    first.fit(task, DigitsDataModule())
    assert (int(task.d_steps), int(task.g_steps)) == (12, 2)
    row0 = task._progress[0][1]
    resumed = GANTask(**spec)
    trainer = _trainer(tmp_path, max_epochs=2, **limits)
    trainer.fit(resumed, DigitsDataModule(), ckpt_path=tmp_path / "last.ckpt")
    assert (int(resumed.d_steps), int(resumed.g_steps)) == (24, 4)
    assert trainer.callback_metrics["train/g_steps"] == 4
    assert [e for e, _ in resumed._progress] == [0, 1]
    assert torch.equal(resumed._progress[0][1], row0) and row0.shape == (4, 1, 8, 8)


def test_a_non_finite_loss_stops_training_with_the_bases_error(monkeypatch):
    task = GANTask(**_MLP)
    task.setup_spec(_POINTS)
    bias = task.discriminator.net[-1].bias  # the scores depend on a weight: backward runs
    monkeypatch.setattr(task.discriminator, "forward", lambda x: (x.sum(1) + bias) * float("nan"))
    with pytest.raises(TrainingError, match="training loss is nan") as e:
        _trainer(limit_val_batches=0).fit(task, _mixture())
    # Lightning refuses gradient_clip_val under manual optimisation: the hint names the options
    assert "--model.g_optim.lr / --model.d_optim.lr" in str(e.value)
    assert "gradient_clip_val" not in str(e.value)


def test_mixture_fit_and_test_write_mode_metrics_and_plots(cli, tmp_path):
    """No checkpoint is selected on the mode metrics (last.ckpt only), the test's samples are
    not the validation's (latents of seed 1 and seed 0), and the partial optimiser options reach
    the optimisers."""
    run = tmp_path / "gan"
    code, _, err = cli("fit", "--model", "visrep.tasks.GANTask", "--model.generator", "mlp",
                       "--model.latent_size", "2", "--model.hidden", "16", "--model.depth", "2",
                       "--model.eval_samples", "300", "--model.d_optim.lr", "1e-4",
                       "--model.ema", "0.99", "--data", "visrep.data.GaussianMixtureDataModule",
                       "--data.mixture", "grid25", "--data.train_size", "600", "--data.val_size",
                       "300", "--data.test_size", "300", "--data.loader.batch_size", "100",
                       "--trainer.max_epochs", "2", "--run_dir", run, *_QUIET)  # fmt: skip
    assert code == 0, err
    m = json.loads((run / "metrics.json").read_text())
    for stage in ("val", "test"):
        assert 0 <= m[f"{stage}/modes"] <= 25 and 0 <= m[f"{stage}/high_quality"] <= 1
        assert m[f"{stage}/mode_score"] == m[f"{stage}/modes"] + m[f"{stage}/high_quality"]
        assert m[f"{stage}/mode_kl"] >= 0
    assert not any(k.startswith("best/") for k in m)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    assert (run / "plots" / "points.png").is_file()
    ckpt = run / "checkpoints" / "last.ckpt"
    task = read_task_checkpoint(ckpt).build()
    assert isinstance(task, GANTask) and task.net.sample(5).shape == (5, 2)
    assert task.d_optim == replace(default_gan_optim("nonsaturating", 0.0), lr=1e-4)
    d_group = load_checkpoint(ckpt)["optimizer_states"][0]["param_groups"][0]
    assert (d_group["lr"], d_group["betas"], d_group["weight_decay"]) == (1e-4, (0.5, 0.999), 0)
    data = GaussianMixtureDataModule(mixture="grid25")
    for stage, seed in (("val", 0), ("test", 1)):
        with torch.no_grad():
            z = task.net.sample_prior(300, torch.Generator().manual_seed(seed))
            want = mode_coverage_2d(task.net.decode(z), data.modes, data.std)
        assert {k: m[f"{stage}/{k}"] for k in want} == pytest.approx(want, abs=1e-6), stage


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory) -> Path:
    """A visrep classification checkpoint on digits (8x8 grey), trained for a few batches."""
    torch.manual_seed(0)
    task = ClassificationTask(backbone={"class_path": "mlp", "init_args": {"width": 32}},
                              optim={"lr": 0.05})  # fmt: skip
    trainer = _trainer(limit_train_batches=10, limit_val_batches=0)
    trainer.fit(task, DigitsDataModule())
    path = tmp_path_factory.mktemp("classifier") / "digits.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_digits_fit_with_features_reports_fid_against_its_floor(cli, tmp_path, digits_classifier):
    run = tmp_path / "dcgan"
    code, _, err = cli("fit", "--model", "visrep.tasks.GANTask", "--model.latent_size", "8",
                       "--model.width", "8", "--model.features", digits_classifier,
                       "--model.eval_samples", "200", "--model.kid_subset_size", "50",
                       "--model.grid", "16", "--data", "visrep.data.DigitsDataModule",
                       "--trainer.max_epochs", "2", "--run_dir", run, *_QUIET)  # fmt: skip
    assert code == 0, err
    m = json.loads((run / "metrics.json").read_text())
    assert m["test/fid"] > m["test/fid_floor"] >= 0  # two epochs are far from the data
    assert m["test/kid"] > m["test/kid_floor"]
    # the test's protocol, computed directly: H = min(200, 360 // 2) = 180 held-out real test
    # images (seed 0) and 180 samples of seed-1 latents, each against the other 180 (R)
    dm = DigitsDataModule()
    dm.setup()
    real = torch.cat([b["image"] for b in dm.test_dataloader()])
    ex = load_feature_extractor(digits_classifier, 1, (8, 8))
    floor = real_floor(ex, real, n=180, kid_subset_size=50)
    assert (m["test/fid_floor"], m["test/kid_floor"]) == pytest.approx(
        (floor["fid"], floor["kid"]), rel=1e-5)  # fmt: skip
    _, rest = holdout_split(360, 180, seed=0)
    net = read_task_checkpoint(run / "checkpoints" / "best.ckpt").build().net
    with torch.no_grad():
        fake = net.decode(net.sample_prior(180, torch.Generator().manual_seed(1)))
    direct = GenerativeMetrics(ex, kid_subset_size=50)
    direct.update_real(real[rest])
    direct.update_fake(fake)
    got = direct.compute()
    assert (m["test/fid"], m["test/kid"]) == pytest.approx((got["fid"], got["kid"]), rel=1e-4)
    assert 1 <= m["test/classes_hit"] <= 10 and m["test/class_kl"] >= 0
    assert "best/val/fid" in m and "val/kid" in m
    for name in ("samples", "progress", "nearest_neighbours", "interpolations"):
        assert (run / "plots" / f"{name}.png").is_file(), name
    # visrep generate calls net.sample_prior and net.decode: images in [0, 1]
    code, _, err = cli("generate", run, "--n", "4")
    assert code == 0, err
    import numpy as np

    images = np.load(run / "predictions" / "generated" / "samples.npz")["images"]
    assert images.shape == (4, 1, 8, 8) and images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize(
    ("case", "expected"),
    [("features", ["error: model.features", "1x8x8", "1x12x12"]),
     ("kid", ["error: model.kid_subset_size 500 is larger than the", "validation images"]),
     ("kid_test", ["error: model.kid_subset_size 200 is larger than the 180",
                   "held-out real test images", "N = 360"]),
     ("n_critic", ["error: model.n_critic must be an integer >= 1, got 0"])],
)  # fmt: skip
def test_bad_input_is_one_error_line(cli, tmp_path, idx_dir, digits_classifier, case, expected):
    """A features run whose input does not fit the images, a KID subset larger than the
    validation split or than the test's held-out real images (min(eval_samples, N // 2)),
    n_critic < 1: one line each, before any training."""
    data = {"features": ["--data", "visrep.data.IDXDataModule", "--data.root", idx_dir],
            "kid": ["--data", "visrep.data.DigitsDataModule", "--model.kid_subset_size", "500"],
            "kid_test": ["--data", "visrep.data.DigitsDataModule", "--data.split.val_fraction",
                         "0.2", "--model.kid_subset_size", "200"],
            "n_critic": ["--data", "visrep.data.DigitsDataModule", "--model.n_critic", "0"]}[case]  # fmt: skip
    code, out, err = cli("fit", "--model", "visrep.tasks.GANTask", "--model.width", "4",
                         "--model.features", digits_classifier, "--model.eval_samples", "1000",
                         "--model.kid_subset_size", "10", *data, "--trainer.max_epochs", "1",
                         "--run_dir", tmp_path / "run", *_QUIET)  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (out, err)
    assert lines[0].startswith(expected[0]) and all(e in lines[0] for e in expected[1:])
    assert not (tmp_path / "run" / "metrics.csv").exists()  # no epoch ran


@pytest.mark.parametrize(
    ("options", "message"),
    [({"n_critic": 0}, "model.n_critic must be an integer >= 1, got 0"),
     ({"clip": 0.0}, "model.clip must be a finite number > 0"),
     ({"clip": -0.01}, "model.clip must be a finite number > 0"),
     ({"gp_weight": -1.0}, "model.gp_weight must be a finite number >= 0, got -1.0"),
     ({"ema": 1.0}, "model.ema must be a decay in (0, 1)"),
     ({"ema": 0.0}, "model.ema must be a decay in (0, 1)"),
     ({"loss": "wasserstein"}, "model.loss wasserstein needs a Lipschitz critic"),
     ({"loss": "hinge"}, "model.loss must be one of minimax, nonsaturating, wasserstein, lsgan"),
     ({"loss": "wasserstein", "gp_weight": 10.0},
      "model.gp_weight > 0 with a batch-norm critic"),
     ({"eval_samples": 100, "features": "runs/cls"},
      "model.kid_subset_size 1000 exceeds model.eval_samples 100"),
     ({"kid_subset_size": 1}, "model.kid_subset_size must be an integer >= 2, got 1"),
     ({"generator": "mlp", "width": 32}, "model.width has no effect with --model.generator mlp"),
     ({"generator": "mlp", "discriminator_norm": "layer"},
      "model.discriminator_norm has no effect with --model.generator mlp"),
     ({"generator": "mlp", "grid": 16}, "model.grid has no effect with --model.generator mlp"),
     ({"hidden": 128}, "model.hidden has no effect with --model.generator dcgan"),
     ({"depth": 2}, "model.depth has no effect with --model.generator dcgan"),
     ({"generator": "mlp", "features": "runs/cls"}, "model.features (FID, KID, class coverage) "
                                                    "needs images"),
     ({"g_optim": {"lr": -1.0}}, "model.g_optim.lr must be > 0"),
     ({"d_optim": {"betas": [0.5, 1.5]}}, "--model.d_optim.betas must be two numbers in [0, 1)")],
)  # fmt: skip
def test_bad_options_are_refused_in_one_line(options, message):
    with pytest.raises(ConfigError) as e:
        GANTask(**options)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_gradient_penalty_error_names_the_fix():
    with pytest.raises(ConfigError, match=re.escape("--model.discriminator_norm layer")):
        GANTask(loss="wasserstein", gp_weight=10.0)
    GANTask(loss="wasserstein", gp_weight=10.0, discriminator_norm="layer")  # the fix works


@pytest.mark.parametrize(
    ("options", "spec", "message"),
    [({"generator": "dcgan"}, _POINTS, "model.generator dcgan makes images"),
     ({"generator": "mlp"}, DataSpec(family="classification", in_chans=1, image_size=(8, 8)),
      "model.generator mlp makes points"),
     ({}, DataSpec(family="classification", in_chans=1, image_size=(9, 9)),
      "image_size (DCGAN) must be square with side s0 * 2**k")],
)  # fmt: skip
def test_models_that_do_not_fit_the_data_are_refused(options, spec, message):
    task = GANTask(**options)
    with pytest.raises(ConfigError, match=re.escape(message)):
        task.setup_spec(spec)


def test_kid_options_are_only_checked_where_kid_is_computed():
    GANTask(generator="mlp", eval_samples=500)  # 2-d runs compute no KID
    GANTask(eval_samples=500)  # nor images without features


def test_monitor_is_the_instances_sample_quality_metric():
    assert GANTask(features="runs/cls").monitor == ("val/fid", "min")
    # the 2-d mode metrics do not depend on the real split: no best-of-N selection
    assert GANTask(**_MLP).monitor is None
    assert GANTask().monitor is None  # no quality metric: last.ckpt only


@pytest.mark.parametrize(
    ("strategy", "stage", "message"),
    [("ddp", "fit", "--trainer.strategy ddp_find_unused_parameters_true"),
     ("ddp_spawn", "fit", "--trainer.strategy ddp_spawn_find_unused_parameters_true"),
     ("ddp_find_unused_parameters_true", "fit", None),
     ("ddp", "test", None),  # no backward pass
     ("auto", "fit", None)],
)  # fmt: skip
def test_ddp_without_unused_parameter_detection_is_one_error_line(strategy, stage, message):
    """Each backward reaches one network only; plain DDP stops at the first step with
    Lightning's 'parameters that were not used in producing the loss'."""
    devices = 1 if strategy == "auto" else 2
    trainer = L.Trainer(strategy=strategy, devices=devices, accelerator="cpu", logger=False)
    task = GANTask(**_MLP)
    task.trainer = trainer
    if message is None:
        task.setup(stage)
        return
    with pytest.raises(ConfigError) as e:
        task.setup(stage)
    assert str(e.value).startswith("GANTask steps its networks with separate backward passes")
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_ddp_fit_on_two_cpu_processes(tmp_path):
    """Two CPU processes (gloo) with unused-parameter detection: 400 training points in batches
    of 50 are 4 batches a process, so 4 discriminator and 2 generator steps (n_critic 2)."""
    run = tmp_path / "ddp"
    args = [sys.executable, "-m", "visrep", "fit", "--model", "visrep.tasks.GANTask",
            "--model.generator", "mlp", "--model.latent_size", "2", "--model.hidden", "8",
            "--model.depth", "1", "--model.n_critic", "2", "--model.eval_samples", "100",
            "--data", "visrep.data.GaussianMixtureDataModule", "--data.train_size", "400",
            "--data.val_size", "100", "--data.test_size", "100", "--data.loader.batch_size", "50",
            "--trainer.max_epochs", "1", "--trainer.strategy", "ddp_find_unused_parameters_true",
            "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--run_dir", str(run),
            *_QUIET]  # fmt: skip
    res = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert 0 <= m["test/modes"] <= 8 and math.isfinite(m["test/d_loss"])
    state = load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    assert (int(state["d_steps"]), int(state["g_steps"])) == (4, 2)
    # every process scored the same seed-1 samples: the logged means are one process's values
    net = read_task_checkpoint(run / "checkpoints" / "last.ckpt").build().net
    data = GaussianMixtureDataModule()
    with torch.no_grad():
        fake = net.decode(net.sample_prior(100, torch.Generator().manual_seed(1)))
    want = mode_coverage_2d(fake, data.modes, data.std)
    assert {k: m[f"test/{k}"] for k in want} == pytest.approx(want, abs=1e-6)
