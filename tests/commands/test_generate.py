"""``visrep generate RUN``: prior samples of a VAE run as a PNG grid and an npz, seeded; an
autoencoder run has no prior (one error line)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from visrep.cli import main
from visrep.models.generative.latent import interpolate_latents
from visrep.tasks.checkpoint import read_task_checkpoint

_FIT = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--test_after_fit", "false"]  # fmt: skip


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("generate") / "vae"
    args = ["fit", "--config", "fashion_vae", "--data", "visrep.data.DigitsDataModule",
            "--model.backbone.width", "16", "--model.latent_size", "3", "--run_dir", str(run),
            "--trainer.limit_train_batches", "2", *_FIT]  # fmt: skip
    assert main(args) == 0
    return run


def test_generate_writes_a_seeded_grid_and_npz(cli, vae_run, tmp_path):
    code, out, err = cli("generate", vae_run, "--n", "10", "--seed", "3")
    assert code == 0, err
    folder = vae_run / "predictions" / "generated"
    assert (folder / "samples.png").read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {folder / 'samples.npz'}" in out
    a = np.load(folder / "samples.npz")
    assert a["images"].shape == (10, 1, 8, 8) and a["images"].dtype == np.float32
    assert a["images_uint8"].shape == (10, 8, 8, 1) and a["latents"].shape == (10, 3)
    assert a["images"].min() >= 0 and a["images"].max() <= 1 and int(a["seed"]) == 3
    code, _, err = cli("generate", vae_run / "checkpoints" / "last.ckpt", "--n", "10",
                       "--seed", "3", "-o", tmp_path / "out", "--which", "last")  # fmt: skip
    assert code == 0, err
    b = np.load(tmp_path / "out" / "samples.npz")
    assert np.array_equal(a["latents"], b["latents"])  # best == last after one epoch
    code, _, _ = cli("generate", vae_run, "--n", "10", "--seed", "4", "-o", tmp_path / "other")
    assert not np.array_equal(np.load(tmp_path / "other" / "samples.npz")["latents"], a["latents"])


def test_the_written_images_are_the_decoded_latents(cli, vae_run, tmp_path):
    """samples.npz's images are net.decode of its latents (the means of P(X | z)), and the
    uint8 copy their rounding, channels last."""
    code, _, err = cli("generate", vae_run, "--n", "6", "--seed", "5", "-o", tmp_path)
    assert code == 0, err
    a = np.load(tmp_path / "samples.npz")
    net = read_task_checkpoint(vae_run / "checkpoints" / "best.ckpt").build().net.eval()
    with torch.no_grad():
        want = net.decode(torch.from_numpy(a["latents"])).numpy()
    np.testing.assert_allclose(a["images"], want, atol=1e-6, rtol=0)
    rounded = np.round(want * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.abs(a["images_uint8"].astype(int) - rounded).max() <= 1  # float32 rounding ties


def test_interpolations_decode_the_slerp_between_prior_samples(cli, vae_run, tmp_path):
    """Row r of ``interpolations`` decodes the great circle between the (n + r)-th and
    (n + R + r)-th prior samples of the seed; its ends are those samples decoded."""
    code, _, err = cli("generate", vae_run, "--n", "4", "--seed", "2", "-o", tmp_path,
                         "--interpolations", "3", "--steps", "5")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "interpolations.png").read_bytes()[:4] == b"\x89PNG"
    a = np.load(tmp_path / "samples.npz")
    assert a["interpolations"].shape == (3, 5, 1, 8, 8)
    net = read_task_checkpoint(vae_run / "checkpoints" / "best.ckpt").build().net.eval()
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        net.sample_prior(4, gen)
        ends = net.sample_prior(6, gen)
        want_ends = net.decode(ends).numpy()
        path = interpolate_latents(ends[:3], ends[3:], 5)
        want = net.decode(path.flatten(0, 1)).view(3, 5, 1, 8, 8).numpy()
    np.testing.assert_allclose(a["interpolations"], want, atol=1e-6, rtol=0)
    np.testing.assert_allclose(a["interpolations"][:, 0], want_ends[:3], atol=1e-5, rtol=0)
    np.testing.assert_allclose(a["interpolations"][:, -1], want_ends[3:], atol=1e-5, rtol=0)
    code, _, _ = cli("generate", vae_run, "--n", "4", "-o", tmp_path / "none",
                     "--interpolations", "0")  # fmt: skip
    assert code == 0 and not (tmp_path / "none" / "interpolations.png").exists()


def _one_error(cli, *args) -> str:
    code, out, err = cli(*args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (out, err)
    return lines[0]


def test_bad_runs_and_options(cli, vae_run, tmp_path):
    assert "--n must be >= 1" in _one_error(cli, "generate", vae_run, "--n", "0")
    assert "--steps >= 2" in _one_error(cli, "generate", vae_run, "--steps", "1")
    assert "no checkpoints" in _one_error(cli, "generate", tmp_path)
    ae = tmp_path / "ae"
    assert main(["fit", "--config", "digits_ae", "--run_dir", str(ae),
                 "--trainer.limit_train_batches", "1", *_FIT]) == 0  # fmt: skip
    assert "an autoencoder has no prior" in _one_error(cli, "generate", ae)


def test_a_gan_on_points_writes_a_scatter_and_the_points(cli, tmp_path):
    run = tmp_path / "gan"
    assert main(["fit", "--config", "gaussians_gan", "--model.hidden", "8", "--model.depth", "1",
                 "--model.eval_samples", "64", "--model.kid_subset_size", "10",
                 "--data.train_size", "128", "--data.val_size",
                 "64", "--data.test_size", "64", "--data.loader.batch_size", "64",
                 "--run_dir", str(run), *_FIT]) == 0  # fmt: skip
    code, _, err = cli("generate", run, "--n", "7", "--seed", "1", "-o", tmp_path / "out")
    assert code == 0, err
    a = np.load(tmp_path / "out" / "samples.npz")
    assert a["points"].shape == (7, 2) and a["latents"].shape == (7, 2) and "images" not in a
    assert not (run / "checkpoints" / "best.ckpt").exists()  # 2-d runs keep last.ckpt only
    net = read_task_checkpoint(run / "checkpoints" / "last.ckpt").build().net.eval()
    with torch.no_grad():
        want = net.decode(torch.from_numpy(a["latents"])).numpy()
    np.testing.assert_allclose(a["points"], want, atol=1e-6, rtol=0)
    assert (tmp_path / "out" / "samples.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "out" / "interpolations.png").exists()


def test_a_cyclegan_translates_test_images_both_ways(cli, tmp_path):
    from tests.tasks.test_contract import unpaired_tree

    tree = unpaired_tree(tmp_path / "tree")
    run = tmp_path / "cyclegan"
    assert main(["fit", "--model", "visrep.tasks.CycleGANTask", "--model.width", "4",
                 "--model.n_blocks", "1", "--model.n_down", "1", "--model.d_layers", "1",
                 "--data", "visrep.data.UnpairedImageDataModule", "--data.root", str(tree),
                 "--data.loader.batch_size", "4", "--data.split.val_fraction", "0.25",
                 "--run_dir", str(run), *_FIT]) == 0  # fmt: skip
    assert not (run / "checkpoints" / "best.ckpt").exists()  # last.ckpt only: what "best" means
    code, out, err = cli("generate", run, "--n", "3")
    assert code == 0, err
    folder = run / "predictions" / "generated"
    for name in ("translations_ab.png", "translations_ba.png", "translations.npz"):
        assert f"wrote {folder / name}" in out
    t = np.load(folder / "translations.npz")
    assert t["indices"].tolist() == [0, 2, 3]  # spread over the 4 test pairs
    task = read_task_checkpoint(run / "checkpoints" / "last.ckpt").build().eval()
    with torch.no_grad():
        ab = task.net.translate(torch.from_numpy(t["a"]))
        np.testing.assert_allclose(t["ab"], ab.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(t["aba"], task.net_ba.translate(ab).numpy(), atol=1e-5, rtol=0)
        ba = task.net_ba.translate(torch.from_numpy(t["b"]))
        np.testing.assert_allclose(t["ba"], ba.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(t["bab"], task.net.translate(ba).numpy(), atol=1e-5, rtol=0)
    assert t["a"].shape == (3, 1, 16, 16) and t["a"].max() < 0.5 <= t["b"].min()  # A dark, B bright
