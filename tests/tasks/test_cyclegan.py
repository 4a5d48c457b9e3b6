"""CycleGANTask: eq. 3 with the paper's least-squares terms by hand, the discriminators on
pooled fakes, the pools kept by checkpoints, a tiny fit on an unpaired tree with a domain
classifier (cycle errors, accuracies on translated images, translation figures) and the bad
options as one error line."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from visrep.data import ImageFolderDataModule
from visrep.data.base import DataSpec, LoaderConfig, SplitConfig
from visrep.errors import ConfigError
from visrep.runs import RunDir
from visrep.tasks import ClassificationTask, CycleGANTask
from visrep.tasks.checkpoint import read_task_checkpoint

_TINY = {"width": 4, "n_blocks": 1, "n_down": 1, "d_layers": 1}
_SPEC = DataSpec(family="unpaired", keys=("image", "image_b"), in_chans=3, image_size=(16, 16),
                 num_classes=2, class_names=("A", "B"), mean=(0.5,) * 3, std=(0.2,) * 3)  # fmt: skip
_QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _write(folder: Path, n: int, channel: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        img = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
        img[..., channel] = 200  # domain A red, domain B blue
        Image.fromarray(img).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def unpaired(tmp_path_factory) -> tuple[Path, Path]:
    """CycleGAN's layout (12 + 4 images a domain) and a classifier checkpoint of the domains
    (class folders A/ and B/ of other images of the same kind)."""
    root = tmp_path_factory.mktemp("unpaired")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for domain, channel in (("A", 0), ("B", 2)):
            _write(root / "tree" / f"{split}{domain}", n, channel, rng)
    for domain, channel in (("A", 0), ("B", 2)):
        _write(root / "domains" / domain, 16, channel, rng)
    torch.manual_seed(0)
    task = ClassificationTask(backbone={"class_path": "mlp", "init_args": {"width": 16}},
                              optim={"lr": 0.05})  # fmt: skip
    dm = ImageFolderDataModule(str(root / "domains"), loader=LoaderConfig(batch_size=8),
                               split=SplitConfig(val_fraction=0.0, test_fraction=0.1))  # fmt: skip
    trainer = L.Trainer(max_epochs=3, logger=False, accelerator="cpu", enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
    trainer.fit(task, dm)
    trainer.save_checkpoint(root / "domains.ckpt")
    return root / "tree", root / "domains.ckpt"


def _task(**options) -> CycleGANTask:
    torch.manual_seed(0)
    task = CycleGANTask(**(_TINY | options))
    task.setup_spec(_SPEC)
    return task


def test_generator_objective_is_eq_3_with_least_squares_terms_by_hand():
    """Zhu et al. 2017, eq. 3 and sec. 4: G minimises E[(D_B(G(a)) - 1)^2] (no 1/2), lambda
    10 on both cycle terms, identity terms weighted 0.5 x 10."""
    task = _task(cycle_weight=10.0, identity_weight=0.5)
    a, b = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    values, fake_b, fake_a = task.generator_losses(a, b)
    G, Fn = task.net.generator, task.net_ba.generator
    want = (
        F.mse_loss(task.disc_b(G(a)), torch.ones_like(task.disc_b(G(a))))
        + F.mse_loss(task.disc_a(Fn(b)), torch.ones_like(task.disc_a(Fn(b))))
        + 10 * (F.l1_loss(Fn(G(a)), a) + F.l1_loss(G(Fn(b)), b))
        + 5 * (F.l1_loss(G(b), b) + F.l1_loss(Fn(a), a))
    )
    assert torch.allclose(values["g_loss"], want, rtol=1e-5)
    assert torch.allclose(fake_b, G(a)) and torch.allclose(fake_a, Fn(b))
    no_id, _, _ = _task(identity_weight=0.0).generator_losses(a, b)
    assert "identity_a" not in no_id


def test_discriminators_are_halved_least_squares_on_real_and_pooled_fakes():
    task = _task()
    real, fake = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3)
    want = 0.5 * (
        F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake))
    )
    assert torch.allclose(task._discriminator(real, fake), want)
    bce = _task(loss="nonsaturating")._discriminator(real, fake)
    want = 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                  + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))  # fmt: skip
    assert torch.allclose(bce, want)


def test_checkpoints_keep_the_image_pools():
    task = _task(pool_size=3)
    images = torch.rand(2, 3, 16, 16)
    task.pools[0].query(images)
    ckpt: dict = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(ckpt)
    other = _task(pool_size=3)
    other.on_load_checkpoint(ckpt)
    assert len(other.pools[0]) == 2 and len(other.pools[1]) == 0
    assert torch.equal(other.pools[0].images[:2], images)


def test_tiny_fit_on_an_unpaired_tree_with_a_domain_classifier(cli, tmp_path, unpaired):
    tree, classifier = unpaired
    run = tmp_path / "cyclegan"
    code, _, err = cli("fit", "--model", "visrep.tasks.CycleGANTask", "--model.width", "4",
                       "--model.n_blocks", "1", "--model.n_down", "1", "--model.d_layers", "1",
                       "--model.pool_size", "4", "--model.features", classifier,
                       "--data", "visrep.data.UnpairedImageDataModule", "--data.root", tree,
                       "--data.loader.batch_size", "4", "--data.split.val_fraction", "0.25",
                       "--trainer.max_epochs", "2", "--run_dir", run, *_QUIET)  # fmt: skip
    assert code == 0, err
    m = json.loads((run / "metrics.json").read_text())
    for stage in ("val", "test"):
        assert 0 < m[f"{stage}/cycle_a"] < 1 and 0 < m[f"{stage}/cycle_b"] < 1
        assert m[f"{stage}/loss"] == pytest.approx(m[f"{stage}/cycle_a"] + m[f"{stage}/cycle_b"])
    for name in ("acc_ab", "acc_ba", "acc_a", "acc_b"):
        assert 0 <= m[f"test/{name}"] <= 1, name
    assert m["test/acc_a"] == 1.0 and m["test/acc_b"] == 1.0  # the domains are easy to tell
    assert "best/val/loss" in m
    for name in ("translations_ab", "translations_ba"):
        assert (run / "plots" / f"{name}.png").is_file()
    task = read_task_checkpoint(run / "checkpoints" / "best.ckpt").build()
    assert isinstance(task, CycleGANTask)
    with torch.no_grad():
        y = task.net.translate(torch.rand(2, 3, 16, 16))
    assert y.shape == (2, 3, 16, 16) and float(y.min()) >= 0 and float(y.max()) <= 1


def test_predict_writes_translated_images(tmp_path):
    task = _task().eval()
    with torch.no_grad():
        out = task.predict_step({"image": torch.rand(2, 3, 16, 16)}, 0)
    run = RunDir(tmp_path)
    files = task.write_prediction_files(run, [out], ["x.png", "y.png"])
    assert files == ["predictions/00000_x.png", "predictions/00001_y.png"]
    assert Image.open(tmp_path / files[0]).size == (16, 16)
    assert [set(r) for r in task.predict_rows([out])] == [{"cycle_l1"}] * 2


@pytest.mark.parametrize(
    ("options", "message"),
    [({"cycle_weight": -1.0}, "model.cycle_weight must be a finite number >= 0, got -1.0"),
     ({"identity_weight": float("nan")}, "model.identity_weight must be a finite number >= 0"),
     ({"pool_size": -1}, "model.pool_size must be an integer >= 0, got -1"),
     ({"n_blocks": -2}, "model.n_blocks must be an integer >= 0, got -2"),
     ({"loss": "wasserstein"}, "model.loss must be one of lsgan, nonsaturating"),
     ({"domain_classes": ["cat"]}, "model.domain_classes must name two different classes"),
     ({"g_optim": {"lr": 0.0}}, "model.g_optim.lr must be > 0")],
)  # fmt: skip
def test_bad_options_are_refused_in_one_line(options, message):
    with pytest.raises(ConfigError) as e:
        CycleGANTask(**options)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_images_the_generator_cannot_halve_are_refused():
    task = CycleGANTask(**(_TINY | {"n_down": 3}))
    spec = DataSpec(family="unpaired", keys=("image", "image_b"), in_chans=3, image_size=(12, 12))
    with pytest.raises(
        ConfigError, match=r"image_size \(12, 12\) must be divisible by 2\*\*n_down"
    ):
        task.setup_spec(spec)


def test_domain_classes_the_classifier_lacks_are_one_error_line(cli, tmp_path, unpaired):
    tree, classifier = unpaired
    code, out, err = cli("fit", "--model", "visrep.tasks.CycleGANTask", "--model.width", "4",
                         "--model.n_blocks", "1", "--model.n_down", "1", "--model.d_layers", "1",
                         "--model.features", classifier, "--model.domain_classes", "[horse,zebra]",
                         "--data", "visrep.data.UnpairedImageDataModule", "--data.root", tree,
                         "--trainer.max_epochs", "1", "--run_dir", tmp_path / "run", *_QUIET)  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (out, err)
    assert lines[0].startswith("error: model.domain_classes") and "'horse'" in lines[0]
