"""The autoencoder and VAE tasks: the denoising loss by construction, the ELBO wiring by hand,
the importance-weighted bound, the PCA baseline against scikit-learn, and both tasks end to end
through the CLI with their shipped configs (digits; a tiny IDX folder for the Fashion ones)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA

from visrep.data.base import DataSpec, ImageDataModule, LoaderConfig, SplitConfig, Splits
from visrep.errors import ConfigError
from visrep.losses.vae import importance_weighted_nll
from visrep.tasks import AutoencoderTask, VAETask
from visrep.tasks.autoencoder import fit_pca, pca_reconstruct
from visrep.tasks.checkpoint import read_task_checkpoint

_SMALL = {"class_path": "small_cnn", "init_args": {"channels": [4, 8], "convs_per_stage": 1}}
_SPEC = DataSpec(family="classification", in_chans=1, image_size=(8, 8), num_classes=10,
                 class_names=tuple("0123456789"), mean=(0.3,), std=(0.4,))  # fmt: skip
_QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 0.9 + 0.1


def test_denoising_compares_the_reconstruction_of_the_corrupted_input_with_the_clean_one():
    task = AutoencoderTask(backbone=_SMALL, code_size=4, noise="masking", noise_level=0.5)
    task.setup_spec(_SPEC)
    seen: dict[str, torch.Tensor] = {}

    def encode(x: torch.Tensor) -> torch.Tensor:
        seen["x"] = x
        return torch.zeros(len(x), 4)

    task.net.encode = encode
    task.net.decode = lambda code: seen["x"]  # "reconstructs" exactly what the encoder saw
    x = _images()
    torch.manual_seed(1)
    loss = task.training_step({"image": x}, 0)
    masked = seen["x"] != x
    assert (masked.flatten(1).sum(1) == 32).all() and (seen["x"][masked] == 0).all()
    # eq. 1 against the clean input: the masked pixels' squared values
    assert torch.allclose(loss, (x * masked).square().flatten(1).sum(1).mean())


def test_sparse_codes_add_the_weighted_l1_penalty():
    task = AutoencoderTask(backbone=_SMALL, code_size=3, sparsity=0.5)
    task.setup_spec(_SPEC)
    x = _images()
    values, x_hat, code = task._losses(x, x)
    recon = (x_hat - x).square().flatten(1).sum(1).mean()
    assert torch.allclose(values["loss"], recon + 0.5 * code.abs().sum(1).mean())


def test_vae_loss_is_recon_plus_beta_kl_by_hand():
    task = VAETask(backbone=_SMALL, latent_size=3, beta=0.5)
    task.setup_spec(_SPEC)
    x = _images()
    ll, kl, mu = task.terms(x, torch.Generator().manual_seed(7))
    loss = task._values(ll, kl)["loss"]
    m, logvar = task.net.encode(x)
    eps = torch.randn(m.shape, generator=torch.Generator().manual_seed(7))
    z = m + torch.exp(0.5 * logvar) * eps
    logits = task.net.decoder(z)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl_hand = 0.5 * (m.square() + logvar.exp() - 1 - logvar).sum(1)
    assert torch.allclose(mu, m) and torch.allclose(kl, kl_hand, atol=1e-5)
    assert torch.allclose(loss, (recon + 0.5 * kl_hand).mean(), atol=1e-4)


def test_importance_weighted_nll_tightens_the_negative_elbo():
    """Burda et al. 2016: E[-log mean_k w] decreases with k; k = 1 is the negative ELBO."""
    task = VAETask(backbone=_SMALL, latent_size=2)
    task.setup_spec(_SPEC)
    vae = task.net.eval()
    x = _images(16)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        iw100 = importance_weighted_nll(vae.encode, vae.log_likelihood, x, k=100, generator=g)
        iw1 = torch.stack([importance_weighted_nll(vae.encode, vae.log_likelihood, x, k=1,
                                                   generator=g) for _ in range(200)])  # fmt: skip
        mu, logvar = vae.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn(200, *mu.shape, generator=g)
        neg_elbo = -vae.log_likelihood(z, x).mean(0) + task.terms(x, g)[1]
    assert torch.allclose(iw1.mean(0), neg_elbo, rtol=0.02)
    assert float(iw100.mean()) < float(neg_elbo.mean())


def test_pca_baseline_matches_scikit_learn():
    train, test = _images(40, 1), _images(10, 2)
    mean, comps = fit_pca(train, 5)
    assert torch.allclose(comps @ comps.T, torch.eye(5), atol=1e-5)
    pca = PCA(5).fit(train.flatten(1).numpy())
    want = pca.inverse_transform(pca.transform(test.flatten(1).numpy())).reshape(test.shape)
    assert np.allclose(pca_reconstruct(test, mean, comps).numpy(), want, atol=1e-5)
    full_mean, full = fit_pca(_images(100, 3), 64)  # as many components as pixels
    assert torch.allclose(pca_reconstruct(test, full_mean, full), test, atol=1e-5)


class _TwoPlanes(ImageDataModule):
    """8x8 grey images on two different 2-d planes of pixel space: the training images (and
    validation, carved from them) on one, the test images exactly on another. A 2-component
    PCA fitted on the test images would reconstruct them exactly; fitted on the training
    split, it cannot."""

    def load(self) -> Splits:
        g = torch.Generator().manual_seed(0)
        basis, _ = torch.linalg.qr(torch.randn(64, 4, generator=g, dtype=torch.float64))

        def plane(n: int, cols: slice) -> list[dict]:
            coeffs = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
            x = (0.5 + 0.5 * coeffs @ basis[:, cols].T).float().view(n, 1, 8, 8)
            return [{"image": im, "label": 0} for im in x]

        return Splits(plane(60, slice(0, 2)), None, ["image"], test=plane(20, slice(2, 4)))


def test_the_pca_baseline_is_fitted_on_the_training_split():
    dm = _TwoPlanes(loader=LoaderConfig(batch_size=8), split=SplitConfig(stratify=False))
    task = AutoencoderTask(backbone=_SMALL, code_size=2)
    trainer = L.Trainer(logger=False, accelerator="cpu", enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
    got = trainer.test(task, dm, verbose=False)[0]["test/mse_pca"]
    train = torch.stack([s["image"] for s in dm.train_set]).flatten(1).double().numpy()
    test = torch.stack([s["image"] for s in dm.test_set]).flatten(1).double().numpy()
    on_train, on_test = PCA(2).fit(train), PCA(2).fit(test)
    want = np.mean((on_train.inverse_transform(on_train.transform(test)) - test) ** 2)
    wrong = np.mean((on_test.inverse_transform(on_test.transform(test)) - test) ** 2)
    assert wrong < 1e-10 < 1e-3 < want  # the two fits differ by far
    assert got == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize(
    ("cls", "options", "match"),
    [
        (AutoencoderTask, {"code_size": 0}, "code_size"),
        (AutoencoderTask, {"noise": "masking", "noise_level": 1.5}, "noise_level"),
        (AutoencoderTask, {"noise": "gaussian", "noise_level": -0.1}, "noise_level"),
        (AutoencoderTask, {"sparsity": -1.0}, "sparsity"),
        (AutoencoderTask, {"decoder": "deconv"}, "decoder"),
        (VAETask, {"latent_size": 0}, "latent_size"),
        (VAETask, {"beta": -1.0}, "beta"),
        (VAETask, {"iw_samples": 0}, "iw_samples"),
        (VAETask, {"likelihood": "gaussian", "sigma": 0.0}, "sigma"),
    ],
)
def test_bad_options(cls, options, match):
    with pytest.raises(ConfigError, match=match):
        cls(backbone=_SMALL, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"latent_size": 0}, "latent_size must be >= 1, got 0"),
     ({"likelihood": "poisson"}, "likelihood must be bernoulli or gaussian, got 'poisson'"),
     ({"likelihood": "gaussian", "sigma": -1.0}, "sigma must be > 0 or null (learned), got -1.0")],
)  # fmt: skip
def test_the_vae_task_checks_its_options_with_the_vaes_check(options, message):
    """One check (models.generative.vae.check_vae_options): the task's error, before any data,
    names the option (model.latent_size), the model's the argument."""
    from visrep.models.generative import VAE

    with pytest.raises(ConfigError) as task_error:
        VAETask(backbone=_SMALL, **options)
    assert str(task_error.value) == f"model.{message}"
    task = VAETask(backbone=_SMALL)
    with pytest.raises(ConfigError) as model_error:
        VAE(task.build_encoder(_SPEC), (0.3,), (0.4,), 1, (8, 8), **options)
    assert str(model_error.value) == message


@pytest.mark.parametrize(
    ("config", "option", "value"),
    [("digits_ae", "code_size", "0"), ("digits_ae", "noise_level", "2"),
     ("fashion_vae", "latent_size", "0"), ("fashion_vae", "beta", "-1")],
)  # fmt: skip
def test_bad_options_give_one_error_line(cli, tmp_path, idx_dir, config, option, value):
    extra = ["--model.noise", "masking"] if option == "noise_level" else []
    data = ["--data.root", idx_dir] if config.startswith("fashion") else []
    code, out, err = cli("fit", "--config", config, *data, f"--model.{option}", value, *extra,
                         "--run_dir", tmp_path / "run", *_QUIET)  # fmt: skip
    assert code == 2, (out, err)
    last = err.strip().splitlines()
    assert len(last) == 1 and last[0].startswith("error: ") and option in last[0]


def test_digits_ae_config_trains_and_writes_mse_against_pca(cli, tmp_path):
    run = tmp_path / "ae"
    code, _, err = cli("fit", "--config", "digits_ae", "--trainer.max_epochs", "1",
                       "--model.code_size", "2", "--model.noise", "salt_pepper",
                       "--model.sparsity", "0.01", "--run_dir", run, *_QUIET)  # fmt: skip
    assert code == 0, err
    m = json.loads((run / "metrics.json").read_text())
    assert 0 < m["test/mse"] < 1 and 0 < m["test/mse_pca"] < 1 and m["val/loss"] > 0
    for name in ("reconstructions", "latent_scatter", "learning_curves"):
        assert (run / "plots" / f"{name}.png").is_file(), name
    saved = read_task_checkpoint(run / "checkpoints" / "best.ckpt")  # weights_only
    task = saved.build()
    assert isinstance(task, AutoencoderTask) and task.net.embed(_images(3)).shape == (3, 2)


def _fit_vae(run: Path, idx_dir: Path, *extra: str) -> dict:
    args = ["fit", "--config", "fashion_vae", "--data.root", str(idx_dir), "--run_dir", str(run),
            "--trainer.max_epochs", "1", "--model.backbone.width", "32", "--data.loader.batch_size",
            "16", *extra, *_QUIET]  # fmt: skip
    from visrep.cli import main

    assert main(args) == 0
    return json.loads((run / "metrics.json").read_text())


def test_fashion_vae_config_trains_and_writes_the_iw_nll(tmp_path, idx_dir):
    m = _fit_vae(tmp_path / "vae", idx_dir, "--model.latent_size", "2")
    # nats per 12x12 image: the bound holds on average over the test images
    assert math.isfinite(m["test/nll"]) and m["test/nll"] <= -m["test/elbo"] + 1.0
    assert m["test/loss"] == pytest.approx(m["test/recon"] + m["test/kl"], rel=1e-4)
    assert m["test/loss"] == pytest.approx(-m["test/elbo"], rel=1e-4)
    plots = {p.stem for p in (tmp_path / "vae" / "plots").iterdir()}
    assert {"reconstructions", "samples", "interpolations", "manifold", "latent_scatter"} <= plots
