"""GANTask: the seed's alternation of discriminator and generator steps (counted), the gradient
penalty and clipping paths, the EMA formula, counters kept across a resume, a tiny fit on a 2-d
mixture and one on digits with a visrep classifier as FID feature extractor, and every bad
option as one error line."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

import visrep.tasks.gan as gan_module
from visrep.data import DigitsDataModule, GaussianMixtureDataModule
from visrep.data.base import DataSpec, LoaderConfig
from visrep.errors import ConfigError, TrainingError
from visrep.tasks import ClassificationTask, GANTask
from visrep.tasks.checkpoint import read_task_checkpoint
from visrep.tasks.gan import default_gan_optim, ema_update_

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
    trainer = _trainer(limit_train_batches=2, limit_val_batches=0)
    trainer.fit(task, _mixture())
    d_opt, g_opt = trainer.optimizers
    assert isinstance(d_opt, torch.optim.Adam) and isinstance(g_opt, torch.optim.RMSprop)


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
    monkeypatch.setattr(task.discriminator, "forward", lambda x: x.sum(1) * float("nan"))
    with pytest.raises(TrainingError, match="training loss is nan"):
        _trainer(limit_val_batches=0).fit(task, _mixture())


def test_mixture_fit_and_test_write_mode_metrics_and_plots(cli, tmp_path):
    run = tmp_path / "gan"
    code, _, err = cli("fit", "--model", "visrep.tasks.GANTask", "--model.generator", "mlp",
                       "--model.latent_size", "2", "--model.hidden", "16", "--model.depth", "2",
                       "--model.eval_samples", "300", "--model.kid_subset_size", "10",
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
    assert "best/val/mode_score" in m  # best.ckpt chosen on modes, then quality
    assert (run / "plots" / "points.png").is_file()
    task = read_task_checkpoint(run / "checkpoints" / "best.ckpt").build()
    assert isinstance(task, GANTask) and task.net.sample(5).shape == (5, 2)


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
     ("n_critic", ["error: model.n_critic must be an integer >= 1, got 0"])],
)  # fmt: skip
def test_bad_input_is_one_error_line(cli, tmp_path, idx_dir, digits_classifier, case, expected):
    """A features run whose input does not fit the images, a KID subset larger than the
    validation split, n_critic < 1: one line each, before any training."""
    data = {"features": ["--data", "visrep.data.IDXDataModule", "--data.root", idx_dir],
            "kid": ["--data", "visrep.data.DigitsDataModule", "--model.kid_subset_size", "500"],
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
     ({"eval_samples": 100}, "model.kid_subset_size 1000 exceeds model.eval_samples 100"),
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


def test_monitor_is_the_instances_sample_quality_metric():
    assert GANTask(features="runs/cls").monitor == ("val/fid", "min")
    assert GANTask(**_MLP).monitor == ("val/mode_score", "max")
    assert GANTask().monitor is None  # no quality metric: last.ckpt only
