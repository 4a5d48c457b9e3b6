"""Digit strings (visrep.data.video.digit_strings) and SequenceLabelingTask on strings: the chain,
its samples, the images drawn, held-out test images, bad input, and the task's string metrics."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from tests.conftest import SHARED_DATA
from visrep.data import DigitStringsDataModule
from visrep.data.base import LoaderConfig
from visrep.data.samples import FRAME_LABELS, LABEL, VIDEO
from visrep.data.video.digit_strings import draw_images, sample_chain, successor_chain
from visrep.data.video.moving_digits import load_digit_pool
from visrep.errors import ConfigError, DataError, ShapeError
from visrep.tasks import SequenceLabelingTask

KMNIST = SHARED_DATA / "kmnist" / "KMNIST"


def _dm(**kw) -> DigitStringsDataModule:
    args = dict(num_frames=6, digit_size=8, train_strings=24, val_strings=8, test_strings=16)
    args.update(kw)
    return DigitStringsDataModule(loader=LoaderConfig(batch_size=8), **args)


# -- the chain ------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, m", [(10, 3), (10, 1), (5, 5), (2, 1)])
def test_successor_chain_is_doubly_stochastic_with_m_successors(k: int, m: int) -> None:
    initial, a = successor_chain(k, m, seed=3)
    assert torch.allclose(initial, torch.full((k,), 1 / k, dtype=torch.float64))
    assert ((a > 0).sum(1) == m).all() and ((a > 0).sum(0) == m).all()
    assert torch.allclose(a.sum(1), torch.ones(k, dtype=a.dtype))
    assert torch.allclose(a.sum(0), torch.ones(k, dtype=a.dtype))
    assert set(a.unique().tolist()) <= {0.0, 1 / m}
    if m < k:
        assert not a.diagonal().any()  # the next classes on the cycle, never the class itself
    assert torch.equal(a, successor_chain(k, m, seed=3)[1])
    assert not torch.equal(a, successor_chain(k, m, seed=4)[1]) or k == m or k == 2


def test_samples_follow_the_chain() -> None:
    initial, a = successor_chain(6, 2, seed=0)
    s = sample_chain(initial, a, 4000, 5, torch.Generator().manual_seed(0))
    assert s.shape == (4000, 5) and s.dtype == torch.int64
    pairs = torch.stack((s[:, :-1].flatten(), s[:, 1:].flatten()), 1)
    assert (a[pairs[:, 0], pairs[:, 1]] > 0).all()  # every step is allowed
    counts = torch.zeros(6, 6, dtype=torch.float64)
    counts.index_put_((pairs[:, 0], pairs[:, 1]), torch.ones(len(pairs), dtype=torch.float64), True)
    freq = counts / counts.sum(1, keepdim=True)
    assert (freq - a).abs().max() < 0.05  # 16,000 steps: empirical transitions near the matrix
    first = torch.bincount(s[:, 0], minlength=6) / 4000
    assert (first - 1 / 6).abs().max() < 0.03


def test_sample_chain_rejects_bad_chains() -> None:
    g = torch.Generator()
    with pytest.raises(ShapeError, match="transition"):
        sample_chain(torch.ones(3) / 3, torch.eye(2), 2, 3, g)
    with pytest.raises(ConfigError, match="sum to 1"):
        sample_chain(torch.ones(2) / 2, torch.tensor([[0.5, 0.6], [0.5, 0.5]]), 2, 3, g)
    with pytest.raises(ConfigError, match="successors"):
        successor_chain(10, 0, 0)
    with pytest.raises(ConfigError, match="successors"):
        successor_chain(10, 11, 0)


def test_draw_images_matches_classes_and_covers_them() -> None:
    labels = torch.tensor([2, 0, 1, 0, 2, 2, 1])
    strings = torch.tensor([[0, 1, 2]]).expand(3000, -1)
    idx = draw_images(labels, strings, torch.Generator().manual_seed(0))
    assert torch.equal(labels[idx], strings)
    used = torch.bincount(idx.flatten(), minlength=7).double()
    assert (used > 0).all()  # every image of each class is drawn
    want = torch.tensor([1 / 3, 1 / 2, 1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 2], dtype=torch.float64)
    assert ((used / 3000) - want).abs().max() < 0.05  # uniform within the class
    with pytest.raises(DataError, match=r"no images of classes \[3\]"):
        draw_images(labels, torch.tensor([[3, 0]]), torch.Generator())


# -- the data module -------------------------------------------------------------------------------
def test_samples_spec_and_determinism() -> None:
    dm = _dm()
    dm.setup("fit")
    spec = dm.spec()
    assert spec.family == "video" and spec.keys == (VIDEO, FRAME_LABELS)
    assert spec.num_classes == 10 and spec.class_names == tuple(str(c) for c in range(10))
    assert spec.num_frames == 6 and spec.image_size == (8, 8) and spec.in_chans == 1
    s = dm.train_set[0]
    assert s[VIDEO].shape == (6, 1, 8, 8) and s[FRAME_LABELS].shape == (6,) and LABEL not in s
    base = dm.train_set.dataset
    pool = base.pool
    for i in range(len(base)):  # each frame shows an image of its class
        item = base[i]
        assert torch.equal(pool.labels[torch.tensor(item["meta"]["images"])], item[FRAME_LABELS])
        assert torch.equal(item[VIDEO][:, 0], pool.images[item["meta"]["images"]])
    again = _dm()
    again.setup("fit")
    assert torch.equal(again.train_set.dataset.strings, base.strings)
    other = _dm(seed=1)
    other.setup("fit")
    assert not torch.equal(other.train_set.dataset.strings, base.strings)


def test_test_strings_use_held_out_images() -> None:
    dm = _dm()
    dm.setup("test")
    assert torch.equal(dm.test_set.pool.images, load_digit_pool("sklearn", "test", 8).images)
    train, val = dm.train_set.dataset.pool, dm.val_set.pool
    every = load_digit_pool("sklearn", "train", 8)
    assert len(train) + len(val) == len(every) and len(val) == round(0.1 * len(every))
    both = torch.cat((train.images, val.images)).flatten(1)
    # together the training images, each once: the two sets are disjoint
    assert torch.equal(both.sort(0).values, every.images.flatten(1).sort(0).values)
    assert torch.equal(
        torch.cat((train.labels, val.labels)).sort().values, every.labels.sort().values
    )


def test_explicit_transitions() -> None:
    a = np.roll(np.eye(10), 1, axis=1).tolist()  # c -> c + 1 (mod 10)
    dm = _dm(transitions=a)
    dm.setup("fit")
    s = dm.train_set.dataset.strings
    assert torch.equal(s[:, 1:], (s[:, :-1] + 1) % 10)


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"num_frames": 1}, "num_frames"),
        ({"digit_size": 2}, "digit_size"),
        ({"train_strings": 0}, "train_strings"),
        ({"test_strings": 0}, "test_strings"),
        ({"val_images": 0.0}, "val_images"),
        ({"transitions": [[1.0, 0.0]]}, "K x K"),
        ({"transitions": [[0.7, 0.7], [0.5, 0.5]]}, "sum to 1"),
    ],
)
def test_bad_options(kw: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        _dm(**kw)


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.transitions is 3 x 3"):
        dm = _dm(transitions=[[0, 1, 0], [0, 0, 1], [1, 0, 0]])
        dm.setup("fit")
    with pytest.raises(ConfigError, match="labels_path"):
        _dm(labels_path=str(tmp_path / "y.npz")).setup("fit")
    images = tmp_path / "x.npz"
    np.savez(images, np.zeros((20, 8, 8), np.uint8))
    with pytest.raises(DataError, match="no labels"):
        _dm(source=str(images)).setup("fit")
    labels = tmp_path / "y.npz"
    np.savez(labels, np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="19 labels"):
        _dm(source=str(images), labels_path=str(labels)).setup("fit")
    with pytest.raises(DataError, match="does not exist"):
        _dm(source=str(images), labels_path=str(tmp_path / "missing.npz")).setup("fit")


@pytest.mark.skipif(not KMNIST.is_dir(), reason="../shared/data/kmnist absent")
def test_kmnist_source_with_separate_labels() -> None:
    dm = _dm(
        source=str(KMNIST / "kmnist-test-imgs.npz"),
        labels_path=str(KMNIST / "kmnist-test-labels.npz"),
        digit_size=28,
    )
    dm.setup("fit")
    pool = dm.train_set.dataset.pool
    assert pool.images.shape == (7200, 28, 28) and len(dm.val_set.pool) == 800
    assert len(dm.test_set.pool) == 2000 and (torch.bincount(pool.labels) > 600).all()
    assert pool.labels.min() == 0 and pool.labels.max() == 9
    assert dm.spec().image_size == (28, 28)


# -- the task on strings ---------------------------------------------------------------------------
_SMALL = {"class_path": "small_cnn", "init_args": {"channels": [4, 8], "convs_per_stage": 1}}


def test_task_on_strings_metrics_artifacts_and_predictions(tmp_path: Path) -> None:
    from visrep.runs import RunDir
    from visrep.trainer.callbacks import RunArtifacts

    L.seed_everything(0)
    dm = _dm()
    task = SequenceLabelingTask(
        backbone=_SMALL,
        frame_input="single",
        head="chain_crf",
        optim={"optimizer": "adam", "lr": 0.01, "weight_decay": 0.0},
    )
    run = RunDir(tmp_path / "run")
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=run.root,
        callbacks=[RunArtifacts(run.root)],
    )
    trainer.fit(task, dm)
    results = trainer.test(task, dm, verbose=False)[0]
    assert "test/frame_acc_gesture" not in results
    assert {"test/frame_acc", "test/frame_acc_mean_class", "test/seq_acc"} <= set(results)
    # seq_acc is the fraction of strings with EVERY frame right; frame_acc the fraction of frames
    task.eval()
    right, frames_right, frames = 0, 0, 0
    with torch.no_grad():
        for batch in dm.test_dataloader():
            pred = task.predict_step(batch, 0)
            assert "pred" not in pred
            ok = pred["frames"] == batch[FRAME_LABELS]
            right += int(ok.all(1).sum())
            frames_right, frames = frames_right + int(ok.sum()), frames + ok.numel()
    assert results["test/seq_acc"] == pytest.approx(right / 16)
    assert results["test/frame_acc"] == pytest.approx(frames_right / frames)
    rows = (run.root / "confusion_matrix.csv").read_text().splitlines()
    assert rows[0].split(",")[1:] == [str(c) for c in range(10)] and len(rows) == 11
    assert (run.plots / "test_predictions.png").is_file()
    pred = task.predict_step(next(iter(dm.test_dataloader())), 0)
    rows = task.predict_rows([pred])
    assert len(rows) == 8 and all(len(r["frames"]) == 6 and r["frames"].isdigit() for r in rows)


def test_hcrf_needs_a_clip_label() -> None:
    dm = _dm()
    dm.setup("fit")
    task = SequenceLabelingTask(backbone=_SMALL, frame_input="single", head="hcrf")
    with pytest.raises(ConfigError, match="clip label"):
        task.setup_spec(dm.spec())


@pytest.mark.parametrize("head", ["softmax", "chain_crf", "ldcrf"])
def test_string_heads_have_k_frame_classes(head: str) -> None:
    dm = _dm()
    dm.setup("fit")
    task = SequenceLabelingTask(
        backbone=_SMALL, frame_input="single", head=head, hidden_per_label=2
    )
    task.setup_spec(dm.spec())
    batch = next(iter(dm.train_dataloader()))
    unary = task.net(batch[VIDEO])
    assert unary.shape == (8, 6, 20 if head == "ldcrf" else 10)
    frames, seq = task.net.decode(unary)
    assert seq is None and frames.shape == (8, 6) and frames.min() >= 0 and frames.max() < 10
    loss = task.net.loss(unary, None, batch[FRAME_LABELS])
    assert torch.isfinite(loss) and loss > 0


def test_digit_string_configs_resolve(capsys: pytest.CaptureFixture[str]) -> None:
    from visrep.cli import main

    for head in ("softmax", "chain_crf", "ldcrf"):
        with pytest.raises(SystemExit) as e:
            main(["fit", "--config", f"digit_strings_{head}", "--print_config"])
        assert e.value.code in (0, None), head
        out = capsys.readouterr().out
        assert "visrep.data.DigitStringsDataModule" in out and f"head: {head}" in out
