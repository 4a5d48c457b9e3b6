"""EmbeddingTask (visrep.tasks.embedding) on a tiny synthetic identity folder: end to end from
the CLI (metrics, plots, a reloadable checkpoint, predict), each loss in a short fit, bad
options as one error line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from threadpoolctl import threadpool_limits

from visrep.data import IdentityFolderDataModule, LoaderConfig
from visrep.data.embedding import IdentitySplit
from visrep.errors import ConfigError, DataError
from visrep.tasks import EmbeddingTask
from visrep.tasks.checkpoint import read_task_checkpoint

TINY = {"class_path": "small_cnn", "init_args": {"channels": [4, 8], "convs_per_stage": 1}}
FIT = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
       "--model.backbone.channels", "[4,8]", "--model.dim", "8",
       "--data.identities.val", "2", "--data.identities.test", "2",
       "--data.loader.classes_per_batch", "2", "--data.loader.samples_per_class", "3",
       "--data.augment.crop_padding", "1"]  # fmt: skip
PLOTS = ("roc", "distance_histogram", "neighbours", "tsne")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One thread for torch and OpenMP (t-SNE): the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def write_identities(root: Path, people: int = 8, photos: int = 6, size: int = 16) -> Path:
    """``root/p<i>/<j>.png``: each person a fixed random 4x4 pattern, upsampled, plus noise."""
    rng = np.random.default_rng(0)
    for i in range(people):
        face = np.kron(rng.uniform(40, 215, (4, 4)), np.ones((size // 4, size // 4)))
        (root / f"p{i}").mkdir(parents=True)
        for j in range(photos):
            img = np.clip(face + rng.normal(0, 20, face.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"p{i}" / f"{j + 1}.png")
    return root


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_identities(tmp_path_factory.mktemp("faces") / "people")


@pytest.fixture(scope="module")
def triplet_run(faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """orl_triplet for one epoch, verified on an LFW-layout pair list of the test people."""
    from visrep.cli import main

    pairs = faces.parent / "pairs.txt"
    pairs.write_text("3\np0 1 2\np1 3 4\np1 5 6\np0 1 p1 2\np0 3 p1 3\np0 6 p1 1\n")
    run = tmp_path_factory.mktemp("embedding") / "triplet"
    args = ["fit", "--config", "orl_triplet", "--run_dir", run, "--data.root", faces, *FIT,
            "--data.pairs", pairs, "--data.identities.test_identities", "[p0,p1]"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    return run


def test_fit_writes_metrics_and_plots(triplet_run):
    metrics = json.loads((triplet_run / "metrics.json").read_text())
    keys = {"best/val/auc", "val/auc", "val/recall@1", "test/auc", "test/eer",
            "test/tar@far=1e-2", "test/recall@1", "test/recall@8", "test/map@r",
            "test/accuracy"}  # fmt: skip
    assert keys <= set(metrics), sorted(metrics)
    assert 0 <= metrics["test/auc"] <= 1 and 0 <= metrics["test/eer"] <= 1
    assert metrics["test/pairs"] == 6 and metrics["test/same_pairs"] == 3  # the pair list
    for name in PLOTS:
        assert (triplet_run / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    assert 'alt="roc"' in (triplet_run / "report.html").read_text()


def test_checkpoint_reloads_weights_only_and_predict_writes_embeddings(cli, triplet_run, faces):
    saved = read_task_checkpoint(triplet_run / "checkpoints" / "best.ckpt")  # weights_only
    task = saved.build()
    assert isinstance(task, EmbeddingTask) and task.spec.family == "identity"
    z = task(torch.rand(3, 1, 16, 16))
    assert z.shape == (3, 8)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))
    code, _, err = cli("predict", "--ckpt_path", triplet_run / "checkpoints" / "best.ckpt",
                       "--data.path", faces / "p3")  # fmt: skip
    assert code == 0, err
    rows = (triplet_run / "predictions.csv").read_text().splitlines()
    assert rows[0] == "file," + ",".join(f"z{i}" for i in range(8)) and len(rows) == 7
    got = np.array([[float(v) for v in r.split(",")[1:]] for r in rows[1:]])
    x = torch.stack([torch.from_numpy(np.array(Image.open(faces / "p3" / f"{j}.png")))
                     for j in range(1, 7)])[:, None].float() / 255  # fmt: skip
    with torch.no_grad():
        np.testing.assert_allclose(got, task(x).numpy(), atol=2e-6)


def _data(faces: Path) -> IdentityFolderDataModule:
    return IdentityFolderDataModule(
        str(faces),
        identities=IdentitySplit(val=2, test=2),
        loader=LoaderConfig(classes_per_batch=2, samples_per_class=3),
    )


@pytest.mark.parametrize(
    "options",
    [{"loss": "contrastive", "miner": "hard"}, {"loss": "contrastive", "miner": "random"},
     {"loss": "triplet", "miner": "distance_weighted"}, {"loss": "softmax", "dim": 0}],
    ids=lambda o: "-".join(map(str, o.values())),
)  # fmt: skip
def test_each_loss_trains_and_evaluates(faces, options):
    L.seed_everything(0)
    task = EmbeddingTask(backbone=TINY, **{"dim": 8, **options})
    trainer = L.Trainer(max_epochs=2, limit_train_batches=2, logger=False, accelerator="cpu",
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    dm = _data(faces)
    trainer.fit(task, dm)
    fit = dict(trainer.callback_metrics)
    assert fit["train/loss"] > 0 and torch.isfinite(fit["train/loss"])
    assert {"val/auc", "val/recall@1", "val/map@r"} <= set(fit)
    trainer.test(task, dm, verbose=False)
    test = trainer.callback_metrics
    assert {"test/auc", "test/eer", "test/tar@far=1e-1", "test/map@r"} <= set(test)
    assert 0 <= float(test["test/auc"]) <= 1
    dim = 8 if options["loss"] != "softmax" else task.net.backbone.num_features
    assert task.net(torch.rand(2, 1, 16, 16)).shape == (2, dim)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["orl_siamese", "orl_softmax"])
def test_other_configs_fit_from_the_cli(cli, faces, tmp_path, config):
    run = tmp_path / "run"
    extra = ["--model.dim", "0"] if config == "orl_softmax" else []
    code, _, err = cli("fit", "--config", config, "--run_dir", run, "--data.root", faces,
                       *FIT, *extra)  # fmt: skip
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test/auc", "test/eer", "test/map@r"} <= set(metrics)
    assert metrics["test/pairs"] == 66 and metrics["test/same_pairs"] == 30  # all pairs
    for name in PLOTS:
        assert (run / "plots" / f"{name}.png").is_file(), name


@pytest.mark.slow
def test_ddp_gathers_the_split_in_dataset_order(tmp_path):
    """2 CPU processes each embed their share of the 21 test photos (11 + 11: the
    DistributedSampler pads one), the pair list indexes loader order: the gathered metrics equal
    a single-device test of the same checkpoint."""
    import subprocess
    import sys

    faces = write_identities(tmp_path / "people", people=9, photos=7)

    pairs = tmp_path / "pairs.txt"
    pairs.write_text("2\np0 1 2\np1 3 6\np0 1 p1 2\np2 4 p1 5\n")
    common = ["--config", "orl_triplet", "--data.root", str(faces), *FIT,
              "--data.identities.test", "3", "--data.identities.test_identities", "[p0,p1,p2]",
              "--data.pairs", str(pairs), "--data.loader.eval_batch_size", "4"]  # fmt: skip
    vis = [sys.executable, "-m", "visrep"]
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    r = subprocess.run([*vis, "fit", *common, "--run_dir", str(tmp_path / "ddp"), *ddp],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    ckpt = tmp_path / "ddp" / "checkpoints" / "best.ckpt"
    r = subprocess.run([*vis, "test", "--ckpt_path", str(ckpt), "--run_dir", str(tmp_path / "one"),
                        "--trainer.devices", "1"], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    want = json.loads((tmp_path / "one" / "metrics.json").read_text())
    keys = [k for k in want if k.startswith("test/")]
    assert len(keys) > 10 and {k: got[k] for k in keys} == {k: want[k] for k in keys}
    assert want["test/pairs"] == 4 and want["test/recall@8"] == 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model.margin", "0"], "model.margin: margin must be a finite number > 0, got 0"),
        (["--model.miner", "semi_hard"], "model.miner 'semi_hard' is not a contrastive miner"),
        (["--model.squared", "true"], "model.squared applies to the triplet loss"),
    ],
)
def test_bad_options_are_one_error_line(cli, faces, tmp_path, args, message):
    code, _, err = cli("fit", "--config", "orl_siamese", "--run_dir", tmp_path / "r",
                         "--data.root", faces, *FIT, *args)  # fmt: skip
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_a_batch_without_positive_pairs_is_one_error_line(cli, tmp_path):
    # shuffled digits batches of 2: the first has two classes of one sample each
    code, _, err = cli("fit", "--config", "quickstart", "--model", "visrep.tasks.EmbeddingTask",
                       "--run_dir", tmp_path / "r", "--data.loader.batch_size", "2",
                       "--data.split.train_samples", "8", "--trainer.max_epochs", "1",
                       "--trainer.enable_progress_bar", "false")  # fmt: skip
    assert code == 2
    assert err.count("\n") == 1 and "--data.loader.classes_per_batch P" in err, err


def test_task_options_and_batch_checks():
    with pytest.raises(ConfigError, match="the softmax loss mines nothing"):
        EmbeddingTask(loss="softmax", miner="hard")
    with pytest.raises(ConfigError, match="choose from all, batch_hard"):
        EmbeddingTask(loss="triplet", miner="random")
    with pytest.raises(ConfigError, match=r"model\.far"):
        EmbeddingTask(far=(0.0,))
    task = EmbeddingTask(loss="contrastive", miner="hard")
    with pytest.raises(DataError, match=r"--data\.loader\.classes_per_batch P"):
        task._mine(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(DataError, match=r"--data\.loader\.samples_per_class K"):
        task._mine(torch.randn(3, 4), torch.tensor([5, 5, 5]))
    i, j, same = task._mine(torch.randn(4, 4), torch.tensor([0, 0, 1, 1]))
    assert len(i) == len(j) == len(same) > 0
    assert EmbeddingTask(loss="triplet", miner="semi_hard", margin=0.3).miner.margin == 0.3
    for bad in (0.0, -1.0, math.inf, math.nan):  # losses.miners.check_margin, naming the option
        with pytest.raises(ConfigError, match=r"^model\.margin: margin must be a finite number"):
            EmbeddingTask(margin=bad)


# -- evaluating part of a split ---------------------------------------------------------------------
class _SanityMetrics(L.Callback):
    """Records the metrics logged by the end of Lightning's sanity check."""

    def on_sanity_check_end(self, trainer, pl_module):
        self.keys = set(trainer.callback_metrics)


def _part_trainer(**options) -> L.Trainer:
    return L.Trainer(max_epochs=1, limit_train_batches=1, logger=False, accelerator="cpu",
                     enable_progress_bar=False, enable_model_summary=False,
                     **{"enable_checkpointing": False, **options})  # fmt: skip


def _eval_data(faces: Path, pairs: str | None = None) -> IdentityFolderDataModule:
    """Evaluation batches of 2: the first batches of a split hold one person (6 photos each)."""
    return IdentityFolderDataModule(
        str(faces), identities=IdentitySplit(val=2, test=2, test_identities=("p0", "p1")),
        loader=LoaderConfig(classes_per_batch=2, samples_per_class=3, eval_batch_size=2),
        pairs=pairs,
    )  # fmt: skip


def test_the_sanity_check_measures_nothing(faces):
    """Lightning's sanity check sees 2 batches of one person: no metric, no error."""
    L.seed_everything(0)
    task = EmbeddingTask(backbone=TINY, dim=8)
    seen = _SanityMetrics()
    trainer = _part_trainer(num_sanity_val_steps=2, callbacks=[seen])
    trainer.fit(task, _eval_data(faces))
    assert not any(k.startswith("val/") for k in seen.keys), seen.keys
    assert {"val/auc", "val/recall@1"} <= set(trainer.callback_metrics)  # the whole split


def test_a_cut_split_of_one_class_warns_once_and_logs_nothing(faces):
    L.seed_everything(0)
    task = EmbeddingTask(backbone=TINY, dim=8)
    trainer = _part_trainer(num_sanity_val_steps=0, limit_val_batches=1, limit_test_batches=2)
    with pytest.warns(UserWarning, match=r"the 2 evaluated samples of the 12 of the val split"):
        trainer.fit(task, _eval_data(faces))
    assert not any(k.startswith("val/") for k in trainer.callback_metrics)
    with pytest.warns(UserWarning, match=r"4 evaluated samples of the 12 of the test split") as w:
        trainer.test(task, _eval_data(faces), verbose=False)
        trainer.test(task, _eval_data(faces), verbose=False)
    assert sum("test split" in str(x.message) for x in w) == 1  # once
    assert not any(k.startswith("test/") for k in trainer.callback_metrics)
    assert task.write_artifacts(None, "test") == {}  # nothing to draw


def test_a_cut_split_that_a_checkpoint_monitors_is_one_error(faces):
    """Skipping would leave ModelCheckpoint(monitor='val/auc') without its metric."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    task = EmbeddingTask(backbone=TINY, dim=8)
    ckpt = ModelCheckpoint(monitor="val/auc", mode="max", dirpath=None)
    trainer = _part_trainer(num_sanity_val_steps=0, limit_val_batches=1,
                            enable_checkpointing=True, callbacks=[ckpt],
                            default_root_dir=str(faces.parent / "ckpt"))  # fmt: skip
    with pytest.raises(DataError, match=r"ModelCheckpoint\(monitor='val/auc'\) needs val"):
        trainer.fit(task, _eval_data(faces))


def test_a_whole_split_of_one_class_is_an_error():
    task = EmbeddingTask(backbone=TINY, dim=8)
    task._outputs = [(torch.randn(5, 8), torch.zeros(5, dtype=torch.long))]
    with pytest.raises(DataError, match=r"the test split \(5 samples evaluated\) gives 10 same"):
        task._evaluate("test")


def test_pairs_beyond_the_evaluated_samples_are_dropped_with_a_warning(faces):
    """A pair list of the two test people, the test split cut to its first 8 photos (p0 and
    two of p1): the pairs that reach beyond are dropped, the others evaluated."""
    pairs = faces.parent / "pairs_cut.txt"
    pairs.write_text("2\np0 1 2\np1 5 6\np0 1 p1 2\np0 3 p1 6\n")
    L.seed_everything(0)
    task = EmbeddingTask(backbone=TINY, dim=8)
    trainer = _part_trainer(num_sanity_val_steps=0, limit_test_batches=4)
    dm = _eval_data(faces, str(pairs))
    with pytest.warns(UserWarning, match=r"test_pairs: 2 of the 4 pairs index samples beyond the "
                      r"8 evaluated and are dropped; verification uses the 2 others"):  # fmt: skip
        trainer.test(task, dm, verbose=False)
    assert task._test_results["same"].tolist() == [1, 0]


# -- gathering a split over DDP ranks ---------------------------------------------------------------
def test_gathered_ranks_are_interleaved_only_under_a_distributed_sampler():
    """Lightning's DistributedSampler gives rank r indices[r::world] (padded): interleaving
    restores the split; without one (use_distributed_sampler false) every rank embedded the
    whole split, and interleaving would repeat each sample world times."""
    from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, SequentialSampler

    from visrep.tasks.embedding import is_sharded, merge_gathered

    data = torch.arange(7) * 10  # one "embedding" row per sample
    for world in (2, 3):
        shares = [list(DistributedSampler(data, world, r, shuffle=False)) for r in range(world)]
        loader = DataLoader(data, sampler=DistributedSampler(data, world, 0, shuffle=False))
        assert is_sharded(loader)
        gathered = torch.stack([data[s] for s in shares])  # (world, ceil(7 / world))
        assert torch.equal(merge_gathered(gathered, is_sharded(loader), len(data)), data)
        emb = torch.stack([data[s][:, None].expand(-1, 3) for s in shares])  # (world, n, D)
        assert torch.equal(merge_gathered(emb, True, 7), data[:, None].expand(-1, 3))
    plain = DataLoader(data, batch_size=2)
    assert not is_sharded(plain)
    whole = torch.stack([data, data])  # both ranks embedded all 7
    assert torch.equal(merge_gathered(whole, is_sharded(plain), len(data)), data)
    wrapped = DataLoader(data, batch_sampler=BatchSampler(
        DistributedSampler(data, 2, 1, shuffle=False), 2, False))  # fmt: skip
    assert is_sharded(wrapped)
    assert not is_sharded(DataLoader(data, sampler=SequentialSampler(data)))
    cut = merge_gathered(torch.stack([data[[0, 2]], data[[1, 3]]]), True, 7)  # limit_*_batches
    assert torch.equal(cut, data[:4])


def test_the_softmax_baseline_has_an_output_per_identity_and_trains_on_the_seen_ones(faces):
    """What configs/orl_softmax.yaml states: one output per identity of the folder (8 here, 40
    for ORL); only the training identities' labels are ever targets."""
    dm = _data(faces)
    dm.setup()
    task = EmbeddingTask(backbone=TINY, loss="softmax", dim=0)
    task.setup_spec(dm.spec())
    _, logits = task.net.logits(torch.rand(2, 1, 16, 16))
    assert logits.shape == (2, 8) and dm.spec().num_classes == 8
    seen = {int(s["label"]) for s in dm.train_set}
    unseen = {int(s["label"]) for part in (dm.val_set, dm.test_set) for s in part}
    assert len(seen) == 4 and len(unseen) == 4 and not seen & unseen
