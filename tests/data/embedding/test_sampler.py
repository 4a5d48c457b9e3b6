"""P x K batch sampling (visrep.data.embedding.sampler) and its hook in SplitDataModule."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.data import _replace_dunder_methods, _set_sampler_epoch
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities.data import _update_dataloader
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from visrep.data import DigitsDataModule, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.datasets import ArrayImageDataset
from visrep.data.embedding import PKBatchSampler, pk_batches_per_epoch
from visrep.errors import ConfigError, DataError

# 12 classes of 2..19 samples, 1 singleton class (never drawn), shuffled sample order.
COUNTS = np.array([19, 8, 8, 8, 7, 6, 5, 4, 4, 3, 2, 2, 1])
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(len(COUNTS)), COUNTS))


def check_batches(batches: np.ndarray, labels: np.ndarray, p: int, k: int) -> None:
    """Every batch: P blocks of K samples of one class each, P distinct classes; a class's
    samples repeat only when it has fewer than K; no singleton class."""
    counts = np.bincount(labels)
    for b in batches:
        blocks = labels[b].reshape(p, k)
        assert (blocks == blocks[:, :1]).all()  # K of one class per block
        classes = blocks[:, 0]
        assert len(set(classes.tolist())) == p
        assert (counts[classes] >= 2).all()
        for c, idx in zip(classes, b.reshape(p, k), strict=True):
            distinct = len(set(idx.tolist()))
            assert distinct == min(k, counts[c])  # no repeat unless the class is short


@pytest.mark.parametrize(("p", "k"), [(2, 2), (4, 3), (5, 4), (12, 2)])
def test_every_batch_holds_p_distinct_classes_of_k_samples(p, k):
    s = PKBatchSampler(LABELS, p, k, seed=3)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = np.array(list(s))
        assert batches.shape == (len(s), p * k)
        check_batches(batches, LABELS, p, k)


def test_short_classes_are_filled_with_replacement_and_singletons_never_drawn():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2])  # class 0 short for K=4
    s = PKBatchSampler(labels, 2, 4, seed=0)
    seen = np.concatenate([s.epoch_batches(e).ravel() for e in range(5)])
    assert 11 not in seen  # the one sample of class 2
    for e in range(5):
        b = s.epoch_batches(e)[0].reshape(2, 4)
        short = b[labels[b[:, 0]] == 0][0]
        assert set(short.tolist()) == {0, 1, 2}  # all three, one of them twice


def test_epoch_is_a_function_of_seed_and_epoch_only():
    a, b = PKBatchSampler(LABELS, 4, 2, seed=7), PKBatchSampler(LABELS, 4, 2, seed=7)
    np.random.seed(123), torch.manual_seed(123)  # global generators play no part
    a.set_epoch(5)
    b.set_epoch(5)
    assert list(a) == list(b) == list(a)
    b.set_epoch(6)
    assert list(a) != list(b)
    assert list(PKBatchSampler(LABELS, 4, 2, seed=8)) != list(PKBatchSampler(LABELS, 4, 2))


def test_balanced_classes_see_every_sample_once_per_epoch():
    labels = np.repeat(np.arange(6), 8)  # 6 classes x 8 = 4 groups of K=2 each: 24 groups
    s = PKBatchSampler(labels, 3, 2, seed=1)
    assert len(s) == 8 == len(labels) // (3 * 2)
    for e in range(3):
        assert np.array_equal(np.sort(s.epoch_batches(e).ravel()), np.arange(48))


def test_batches_per_epoch_is_the_largest_feasible_number():
    rng = np.random.default_rng(0)
    for _ in range(200):
        groups = rng.integers(1, 12, rng.integers(2, 15))
        p = int(rng.integers(2, len(groups) + 1))
        feasible = [b for b in range(groups.sum() + 1) if np.minimum(groups, b).sum() >= b * p]
        assert pk_batches_per_epoch(groups, p) == max(feasible)


def test_distributed_shares_are_disjoint_and_equal():
    world = 3
    shares = [PKBatchSampler(LABELS, 3, 2, seed=4, num_replicas=world, rank=r) for r in range(3)]
    for s in shares:
        s.set_epoch(2)
    batches = [np.array(list(s)) for s in shares]
    full = shares[0].epoch_batches(2)
    assert all(len(b) == len(shares[0]) == full.shape[0] // world for b in batches)
    rows = np.concatenate(batches)
    assert len({tuple(r) for r in rows.tolist()}) == len(rows)  # no batch on two ranks
    expect = full[: len(shares[0]) * world]
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, expect.tolist()))


def test_lightning_injects_its_distributed_sampler_and_epoch():
    """What PKBatchSampler relies on in Lightning: under DDP the train loader is re-created
    with the batch sampler re-instantiated from its saved arguments and ``sampler=`` a
    DistributedSampler (whose rank and world size it takes), and ``set_epoch`` reaches it
    through ``loader.batch_sampler.sampler``."""
    ds = ArrayImageDataset(np.zeros((len(LABELS), 1, 2, 2), np.uint8), LABELS)
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = DataLoader(ds, batch_sampler=PKBatchSampler(LABELS, 3, 2, seed=9))
    per_rank = []
    for rank in range(2):
        dist = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        dl = _update_dataloader(loader, dist, mode=RunningStage.TRAINING)
        s = dl.batch_sampler
        assert isinstance(s, PKBatchSampler) and s.sampler is dist
        assert (s.num_replicas, s.rank, s.seed) == (2, rank, 9)
        _set_sampler_epoch(dl, 4)
        assert s.epoch == 4
        per_rank.append([b["label"].tolist() for b in dl])
        ref = PKBatchSampler(LABELS, 3, 2, seed=9, num_replicas=2, rank=rank)
        ref.set_epoch(4)
        assert [LABELS[b].tolist() for b in ref] == per_rank[-1]
    _set_sampler_epoch(loader, 4)  # one process: the EpochCounter carries the epoch
    assert loader.batch_sampler.epoch == 4


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"classes_per_batch": 1}, ConfigError, r"data.loader.classes_per_batch must be >= 2"),
        ({"samples_per_class": 1}, ConfigError, r"data.loader.samples_per_class must be >= 2"),
        ({"classes_per_batch": 13}, ConfigError, r"has 12 classes with >= 2 samples; need"),
        ({"classes_per_batch": 12, "num_replicas": 9}, ConfigError, "fewer than the 9 proc"),
        ({"labels": LABELS[:, None]}, DataError, "1-D integer array"),
        ({"labels": LABELS - 1}, DataError, "labels must be >= 0"),
    ],
)
def test_bad_arguments_raise_one_line_errors(kwargs, err, match):
    args = {"labels": LABELS, "classes_per_batch": 2, "samples_per_class": 2, **kwargs}
    with pytest.raises(err, match=match):
        PKBatchSampler(**args)


def test_loader_config_validates_p_and_k():
    assert LoaderConfig(classes_per_batch=8, samples_per_class=4).classes_per_batch == 8
    with pytest.raises(ConfigError, match=r"^data.loader.classes_per_batch must be >= 2"):
        LoaderConfig(classes_per_batch=1)
    with pytest.raises(ConfigError, match=r"^data.loader.samples_per_class must be >= 2"):
        LoaderConfig(samples_per_class=1)


def test_split_data_module_trains_on_pk_batches_and_resumes_them():
    def loader():
        dm = DigitsDataModule(loader=LoaderConfig(classes_per_batch=5, samples_per_class=3))
        dm.setup()
        return dm, dm.train_dataloader()

    torch.manual_seed(11)  # what seed_everything does, again when a run resumes
    dm, dl = loader()
    labels = dm.train_labels()
    assert labels.dtype == np.int64 and len(labels) == len(dm.train_set)
    assert [dm.train_set[i]["label"] for i in range(0, len(labels), 97)] == labels[::97].tolist()
    assert isinstance(dl.batch_sampler, PKBatchSampler) and len(dl) == len(dl.batch_sampler)
    _set_sampler_epoch(dl, 3)
    first = [b["label"] for b in dl]
    assert all(len(set(x.tolist())) == 5 and len(x) == 15 for x in first)
    torch.manual_seed(11)
    _, again = loader()
    _set_sampler_epoch(again, 3)
    assert all(torch.equal(a, b["label"]) for a, b in zip(first, again, strict=True))


def test_pk_batches_need_labels():
    class Unlabelled(SplitDataModule):
        def load(self) -> Splits:
            ds = ArrayImageDataset(np.zeros((20, 1, 2, 2), np.uint8), np.zeros(20))
            return Splits(ds, None, [], test=ds)

    dm = Unlabelled(loader=LoaderConfig(classes_per_batch=2))
    dm.setup()
    with pytest.raises(ConfigError, match="gives no class per training sample"):
        dm.train_dataloader()


class _Recorder(L.LightningModule):
    """Records the labels of every training batch, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(64, 10)
        self.seen: dict[int, list[list[int]]] = {}

    def training_step(self, batch, _):
        self.seen.setdefault(self.current_epoch, []).append(batch["label"].tolist())
        return F.cross_entropy(self.lin(batch["image"].flatten(1)), batch["label"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(epochs: int, tmp_path, ckpt=None) -> _Recorder:
    L.seed_everything(5, verbose=False)
    model = _Recorder()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
        callbacks=[L.pytorch.callbacks.ModelCheckpoint(tmp_path, "last")],
    )
    dm = DigitsDataModule(loader=LoaderConfig(classes_per_batch=4, samples_per_class=4))
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
    return model


def test_lightning_sets_the_epoch_and_a_resumed_run_sees_the_same_batches(tmp_path):
    whole = _fit(3, tmp_path / "whole")
    assert whole.seen[0] != whole.seen[1] != whole.seen[2]  # Lightning's set_epoch arrived
    assert all(len(set(b)) == 4 and len(b) == 16 for b in whole.seen[2])
    _fit(2, tmp_path / "cut")
    resumed = _fit(3, tmp_path / "cut", ckpt=str(tmp_path / "cut" / "last.ckpt"))
    assert list(resumed.seen) == [2] and resumed.seen[2] == whole.seen[2]


N_INDEXED = 600


class _IndexedData(SplitDataModule):
    """600 samples of 12 classes whose 1x1 image encodes the sample index (i / 600)."""

    def load(self) -> Splits:
        x = (np.arange(N_INDEXED, dtype=np.float32) / N_INDEXED)[:, None, None, None]
        labels = np.arange(N_INDEXED) % 12
        return Splits(ArrayImageDataset(x, labels, scale=1.0), labels, [], test=None)


class _RankRecorder(L.LightningModule):
    """Writes the sample indices each DDP process trained on to ``out/rank<r>.json``."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out
        self.lin = torch.nn.Linear(1, 12)
        self.seen: dict[int, list[list[int]]] = {}

    def training_step(self, batch, _):
        idx = (batch["image"].flatten() * N_INDEXED).round().long().tolist()
        self.seen.setdefault(self.current_epoch, []).append(idx)
        return F.cross_entropy(self.lin(batch["image"].flatten(1)), batch["label"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_end(self) -> None:
        Path(self.out, f"rank{self.global_rank}.json").write_text(json.dumps(self.seen))


@pytest.mark.slow
def test_ddp_processes_train_on_disjoint_pk_batches(tmp_path):
    """Two CPU processes (ddp_spawn, gloo; about 45 s): Lightning's DistributedSampler
    injection gives each its own share of the epoch's P x K batches. Every class has >= K
    samples, so an epoch draws each sample at most once over both processes."""
    L.seed_everything(2, verbose=False)
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    dm = _IndexedData(LoaderConfig(classes_per_batch=4, samples_per_class=5), SplitConfig(0.0, 0.1))
    trainer.fit(_RankRecorder(str(tmp_path)), datamodule=dm)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    labels = np.arange(N_INDEXED) % 12
    for epoch in ("0", "1"):
        a, b = (np.array(s[epoch]) for s in seen)
        # 540 training samples = 45 per class = 9 groups of 5: 12 * 9 / 4 = 27 batches, 13 each
        assert a.shape == b.shape == (13, 20)
        both = np.concatenate([a, b]).ravel()
        assert len(np.unique(both)) == len(both)  # disjoint shares, one seed on both ranks
        blocks = labels[np.concatenate([a, b])].reshape(26, 4, 5)
        assert (blocks == blocks[..., :1]).all()
        assert all(len(set(c)) == 4 for c in blocks[..., 0].tolist())
    assert seen[0]["0"] != seen[0]["1"]
