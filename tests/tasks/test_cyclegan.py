"""CycleGANTask: eq. 3 with the paper's least-squares terms by hand, the discriminators on
pooled fakes (the pools' output reaches them), each step moving only its own networks, partial
optimiser options, the pools kept by checkpoints, a tiny fit on an unpaired tree with a domain
classifier (cycle errors, accuracies on translated images, translation figures, last.ckpt
only), DDP refused without unused-parameter detection (and a 2-process fit, slow) and the bad
options as one error line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from visrep.data import ImageFolderDataModule, UnpairedImageDataModule
from visrep.data.base import DataSpec, LoaderConfig, SplitConfig
from visrep.errors import ConfigError
from visrep.runs import RunDir
from visrep.tasks import ClassificationTask, CycleGANTask
from visrep.tasks.checkpoint import read_task_checkpoint
from visrep.tasks.cyclegan import _default_optim

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


class _NoStep:
    def step(self) -> None:
        pass

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass


def test_the_discriminators_see_the_pooled_fakes(monkeypatch):
    """Each discriminator's loss reads what its pool returns for this step's fakes (Shrivastava
    et al. 2017), not the fresh fakes: the pools are replaced by markers here."""
    task = _task(pool_size=2)
    seen: dict[str, list[torch.Tensor]] = {"a": [], "b": []}
    for key, disc in (("a", task.disc_a), ("b", task.disc_b)):
        disc.register_forward_hook(
            lambda m, inputs, out, k=key: seen[k].append(inputs[0].detach().clone())
        )
    markers = (torch.full((2, 3, 16, 16), 0.25), torch.full((2, 3, 16, 16), -0.5))
    asked: list[torch.Tensor] = []
    for pool, marker in zip(task.pools, markers, strict=True):
        monkeypatch.setattr(pool, "query", lambda x, m=marker: asked.append(x.detach()) or m)
    monkeypatch.setattr(task, "optimizers", lambda: (_NoStep(), _NoStep()))
    monkeypatch.setattr(task, "lr_schedulers", lambda: (_NoStep(), _NoStep()))
    monkeypatch.setattr(task, "manual_backward", lambda loss: loss.backward())
    task.on_train_epoch_start()
    monkeypatch.setattr(task._means, "epoch_done", lambda *args: False)
    a, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    task.training_step({"image": a, "image_b": b}, 0)
    with torch.no_grad():
        fake_a, fake_b = task.net_ba.raw(b * 2 - 1), task.net.raw(a * 2 - 1)
    # the pools were asked with this step's fakes: F(b) for D_A's, G(a) for D_B's
    assert torch.allclose(asked[0], fake_a) and torch.allclose(asked[1], fake_b)
    # D_A scored F(b) for the generators' term, then real A and the pool's answer for its loss
    assert torch.allclose(seen["a"][0], fake_a) and torch.allclose(seen["a"][1], a * 2 - 1)
    assert torch.equal(seen["a"][2], markers[0]) and len(seen["a"]) == 3
    assert torch.allclose(seen["b"][1], b * 2 - 1) and torch.equal(seen["b"][2], markers[1])


class _Changes(L.Callback):
    """Which parameters the generators' step and the discriminators' step of each batch moved."""

    def __init__(self) -> None:
        self.snaps: list[tuple[str, dict[str, torch.Tensor]]] = []

    @staticmethod
    def _params(task) -> dict[str, torch.Tensor]:
        return {k: p.detach().clone() for k, p in task.named_parameters()}

    def on_train_start(self, trainer, task) -> None:
        g_opt = trainer.optimizers[0]  # the generators' (first) optimiser
        g_opt.register_step_post_hook(lambda *_: self.snaps.append(("g", self._params(task))))

    def on_train_batch_start(self, trainer, task, batch, batch_idx) -> None:
        self.snaps.append(("start", self._params(task)))

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx) -> None:
        self.snaps.append(("end", self._params(task)))


def test_each_step_changes_only_its_own_networks_parameters(unpaired):
    """Per batch: the generators' step moves G's and F's parameters only, the discriminators'
    step D_A's and D_B's only."""
    torch.manual_seed(0)
    task, spy = CycleGANTask(**_TINY), _Changes()
    dm = UnpairedImageDataModule(str(unpaired[0]), loader=LoaderConfig(batch_size=4),
                                 split=SplitConfig(val_fraction=0.25))  # fmt: skip
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False,
                        accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, callbacks=[spy])  # fmt: skip
    trainer.fit(task, dm)
    names = [k for k, _ in task.named_parameters()]
    gens = {k for k in names if k.startswith(("net.", "net_ba."))}
    discs = {k for k in names if k.startswith(("disc_a.", "disc_b."))}
    assert gens and discs and gens | discs == set(names)
    assert [w for w, _ in spy.snaps] == ["start", "g", "end"] * 2

    def moved(x, y):
        return {k for k in x if not torch.equal(x[k], y[k])}

    for i in range(0, 6, 3):
        (_, start), (_, after_g), (_, end) = spy.snaps[i : i + 3]
        assert moved(start, after_g) == gens and moved(after_g, end) == discs


def test_a_partial_optimiser_option_changes_only_those_fields():
    task = CycleGANTask(d_optim={"lr": 1e-4})
    assert task.d_optim == replace(_default_optim(), lr=1e-4) and task.g_optim == _default_optim()
    assert task.g_optim.optimizer == "adam" and task.g_optim.schedule == "constant"


def test_ddp_without_unused_parameter_detection_is_one_error_line():
    task = CycleGANTask(**_TINY)
    task.trainer = L.Trainer(strategy="ddp", devices=2, accelerator="cpu", logger=False)
    with pytest.raises(ConfigError) as e:
        task.setup("fit")
    msg = str(e.value)
    assert msg.startswith("CycleGANTask steps its networks with separate backward passes")
    assert "--trainer.strategy ddp_find_unused_parameters_true" in msg and "\n" not in msg
    task.trainer = L.Trainer(strategy="ddp_find_unused_parameters_true", devices=2,
                             accelerator="cpu", logger=False)  # fmt: skip
    task.setup("fit")


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
    # the cycle errors select no checkpoint (an identity mapping minimises them): last.ckpt only
    assert not any(k.startswith("best/") for k in m)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    for name in ("translations_ab", "translations_ba"):
        assert (run / "plots" / f"{name}.png").is_file()
    task = read_task_checkpoint(run / "checkpoints" / "last.ckpt").build()
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
     ({"domain_classes": ["A", "B"]}, "model.domain_classes names classes of the "
                                      "model.features classifier, but no --model.features"),
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


@pytest.mark.slow
def test_ddp_fit_on_two_cpu_processes(tmp_path, unpaired):
    """Two CPU processes (gloo) with unused-parameter detection train, validate and test."""
    tree, _ = unpaired
    run = tmp_path / "ddp"
    args = [sys.executable, "-m", "visrep", "fit", "--model", "visrep.tasks.CycleGANTask",
            "--model.width", "4", "--model.n_blocks", "1", "--model.n_down", "1",
            "--model.d_layers", "1", "--model.pool_size", "4", "--data",
            "visrep.data.UnpairedImageDataModule", "--data.root", str(tree),
            "--data.loader.batch_size", "2", "--data.split.val_fraction", "0.25",
            "--trainer.max_epochs", "1", "--trainer.strategy", "ddp_find_unused_parameters_true",
            "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--run_dir", str(run),
            *_QUIET]  # fmt: skip
    res = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert 0 < m["test/cycle_a"] < 1 and 0 < m["test/cycle_b"] < 1
