"""SequenceLabelingTask (visrep.tasks.sequence): frame inputs, the accuracy functions on hand-made
cases, every head's shapes and training, freeze_encoder, init_weights, checkpoints, bad input."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from visrep.data import MovingDigitsGestureDataModule
from visrep.data.base import DataSpec, LoaderConfig
from visrep.data.samples import FRAME_LABELS, LABEL, VIDEO
from visrep.errors import ConfigError, ShapeError
from visrep.models.layers.chain_crf import chain_crf_nll
from visrep.models.layers.hidden_crf import hidden_crf_nll, latent_dynamic_crf_nll
from visrep.tasks import SequenceLabelingTask
from visrep.tasks.checkpoint import read_task_checkpoint
from visrep.tasks.sequence import (
    HEADS,
    frame_accuracy,
    frame_class_scores,
    frame_confusion,
    frame_inputs,
    majority_gesture,
    sequence_accuracy,
)

_SMALL = {"class_path": "small_cnn", "init_args": {"channels": [4, 8], "convs_per_stage": 1}}
_ADAM = {"optimizer": "adam", "lr": 0.01, "weight_decay": 0.0}


def _dm(batch_size: int = 8) -> MovingDigitsGestureDataModule:
    return MovingDigitsGestureDataModule(
        num_frames=10,
        image_size=(16, 16),
        digit_size=8,
        speed=(1.5, 2.0),
        part_frames=(2, 3),
        train_clips=16,
        val_clips=8,
        test_clips=8,
        loader=LoaderConfig(batch_size=batch_size),
    )


def _task(head: str = "softmax", **kw) -> SequenceLabelingTask:
    return SequenceLabelingTask(backbone=_SMALL, head=head, hidden_per_label=2, optim=_ADAM, **kw)


def _trainer(tmp_path: Path, epochs: int = 1) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )


# -- functions ------------------------------------------------------------------------------------
def test_frame_inputs() -> None:
    v = torch.rand(2, 5, 3, 4, 4)
    assert torch.equal(frame_inputs(v, "single"), v)
    pair = frame_inputs(v, "pair")
    assert pair.shape == (2, 5, 6, 4, 4)
    assert torch.equal(pair[:, 1:, :3], v[:, :-1]) and torch.equal(pair[:, :, 3:], v)
    assert torch.equal(pair[:, 0, :3], v[:, 0])
    diff = frame_inputs(v, "diff")
    assert torch.equal(diff[:, 1:], v[:, 1:] - v[:, :-1]) and not diff[:, 0].any()
    with pytest.raises(ConfigError, match="frame_input"):
        frame_inputs(v, "triple")
    with pytest.raises(ShapeError, match="B, T, C, H, W"):
        frame_inputs(v[0], "pair")


def test_majority_gesture_hand_cases() -> None:
    pred = torch.tensor(
        [
            [0, 1, 1, 2, 0, 0],  # gesture 0 on 2 frames, gesture 1 on 1
            [0, 0, 0, 0, 0, 0],  # background only: none
            [3, 3, 2, 2, 0, 0],  # a tie: the lowest id
            [0, 3, 0, 0, 0, 0],  # a single frame decides
            [0, 2, 2, -1, -1, -1],  # padding is ignored
        ]
    )
    assert majority_gesture(pred, 3).tolist() == [0, -1, 1, 2, 1]


def test_accuracies_hand_cases() -> None:
    labels = torch.tensor([[0, 1, 1, 0], [0, 2, 2, 0]])
    pred = torch.tensor([[0, 1, 0, 0], [2, 2, 2, 0]])
    assert frame_accuracy(pred, labels).item() == pytest.approx(6 / 8)
    seq = majority_gesture(pred, 2)  # [0, 1]
    assert sequence_accuracy(seq, torch.tensor([0, 1])).item() == 1.0
    # a clip predicted all background is wrong
    assert sequence_accuracy(torch.tensor([-1, 1]), torch.tensor([0, 1])).item() == 0.5
    with pytest.raises(ShapeError):
        frame_accuracy(pred, labels[:1])


def test_frame_class_scores_hand_cases() -> None:
    # 3 clips of 6 frames, 2 gestures: 12 background frames, 6 gesture frames
    labels = torch.tensor([[0, 0, 1, 1, 0, 0], [0, 0, 2, 2, 2, 0], [0, 0, 0, 1, 0, 0]])
    background = torch.zeros_like(labels)  # predicting background everywhere
    cm = frame_confusion(background, labels, 3)
    assert cm.tolist() == [[12, 0, 0], [3, 0, 0], [3, 0, 0]]
    assert frame_accuracy(background, labels).item() == pytest.approx(12 / 18)
    assert frame_class_scores(cm) == (0.0, pytest.approx(1 / 3))  # recalls 1, 0, 0
    perfect = frame_class_scores(frame_confusion(labels, labels, 3))
    assert perfect == (1.0, 1.0)
    # gesture 1 right on 2 of its 3 frames, gesture 2 on 1 of 3 (once called 1), background
    # wrong on 2 of 12: gesture frames 3 / 6 right; recalls 10/12, 2/3, 1/3
    pred = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 0, 2, 1, 0, 0], [0, 0, 0, 0, 0, 2]])
    cm = frame_confusion(pred, labels, 3)
    assert cm.tolist() == [[10, 1, 1], [1, 2, 0], [1, 1, 1]]
    gesture, mean_class = frame_class_scores(cm)
    assert gesture == pytest.approx(3 / 6)
    assert mean_class == pytest.approx((10 / 12 + 2 / 3 + 1 / 3) / 3)
    # a class with no true frames is left out of the mean; padding (-1) is ignored
    only = frame_confusion(torch.tensor([[0, 2, 2]]), torch.tensor([[0, 2, -1]]), 3)
    assert only.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert frame_class_scores(only) == (1.0, 1.0)
    assert frame_class_scores(torch.zeros(3, 3, dtype=torch.long))[0] != 0  # nan: no frames
    with pytest.raises(ShapeError):
        frame_confusion(pred, labels[:1], 3)
    with pytest.raises(ShapeError, match="0, 3"):
        frame_confusion(pred + 1, labels, 3)


# -- model ------------------------------------------------------------------------------------------
def _built(head: str, **kw) -> tuple[SequenceLabelingTask, MovingDigitsGestureDataModule]:
    dm = _dm()
    dm.setup("fit")
    task = _task(head, **kw)
    task.setup_spec(dm.spec())
    return task, dm


@pytest.mark.parametrize("head", HEADS)
def test_shapes_and_loss_equals_the_layer_functions(head: str) -> None:
    torch.manual_seed(0)
    task, dm = _built(head)
    batch = next(iter(dm.train_dataloader()))
    net = task.net
    unary = net(batch[VIDEO])
    states = {"softmax": 7, "chain_crf": 7, "hcrf": 2, "ldcrf": 14}[head]
    assert unary.shape == (8, 10, states)
    assert net.features(batch[VIDEO]).shape == (8, 10, 8)
    y, yf = batch[LABEL], batch[FRAME_LABELS]
    loss = net.loss(unary, y, yf)
    h = net.head
    want = {
        "softmax": lambda: F.cross_entropy(unary.reshape(-1, 7), yf.reshape(-1)),
        "chain_crf": lambda: chain_crf_nll(unary, yf, h.transitions, h.start, h.end) / 10,
        "hcrf": lambda: hidden_crf_nll(unary, y, h.transitions, h.label_state, h.allowed),
        "ldcrf": lambda: latent_dynamic_crf_nll(unary, yf, h.transitions, h.state_label) / 10,
    }[head]()
    torch.testing.assert_close(loss, want)
    frames, seq = net.decode(unary)
    assert seq.shape == (8,) and seq.min() >= -1 and seq.max() < 6
    if head == "hcrf":
        assert frames is None
    else:
        assert frames.shape == (8, 10) and int(frames.min()) >= 0 and int(frames.max()) < 7
        assert torch.equal(seq, majority_gesture(frames, 6))


@pytest.mark.parametrize("head", HEADS)
def test_every_head_trains(head: str) -> None:
    torch.manual_seed(0)
    task, dm = _built(head)
    batch = next(iter(dm.train_dataloader()))
    net = task.net.train()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    losses = []
    for _ in range(40):
        loss = net.loss(net(batch[VIDEO]), batch[LABEL], batch[FRAME_LABELS])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


# -- task: freezing, init_weights, checkpoints -----------------------------------------------------
def _encoder_state(task: SequenceLabelingTask) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in task.net.encoder.state_dict().items()}


def test_init_weights_and_freeze_encoder(tmp_path: Path) -> None:
    L.seed_everything(0)
    source = _task("softmax")
    trainer = _trainer(tmp_path)
    trainer.fit(source, _dm())
    ckpt = tmp_path / "softmax.ckpt"
    trainer.save_checkpoint(ckpt)
    learnt = _encoder_state(source)

    crf = _task("chain_crf", init_weights=str(ckpt), freeze_encoder=True)
    dm = _dm()
    dm.setup("fit")
    crf.setup_spec(dm.spec())
    fresh = _encoder_state(crf)
    unary0 = crf.net.unary.weight.detach().clone()
    assert any(not torch.equal(fresh[k], learnt[k]) for k in learnt if k.endswith("weight"))
    _trainer(tmp_path, epochs=2).fit(crf, dm)
    after = _encoder_state(crf)
    # the encoder is the softmax run's, unchanged by training (weights and BN statistics)
    assert after.keys() == learnt.keys()
    for k in learnt:
        assert torch.equal(after[k], learnt[k]), k
    assert not torch.equal(crf.net.unary.weight, unary0)
    assert all(not p.requires_grad for p in crf.net.encoder.parameters())
    crf.net.train()
    assert not crf.net.encoder.training and crf.net.unary.training

    # the run reads back once the file it started from is gone (its encoder is in the checkpoint)
    run_ckpt = tmp_path / "crf" / "checkpoints" / "last.ckpt"
    trainer = _trainer(tmp_path)
    trainer.fit(_task("chain_crf", init_weights=str(ckpt), freeze_encoder=True), dm)
    trainer.save_checkpoint(run_ckpt)
    ckpt.unlink()
    saved = read_task_checkpoint(run_ckpt)
    assert saved.init_args["init_weights"] is None and saved.init_args["freeze_encoder"]
    loaded = saved.build()
    x = next(iter(dm.val_dataloader()))[VIDEO]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trainer.lightning_module.eval()(x))
    with pytest.raises(ConfigError, match="init_weights"):  # a user's new fit: told at once
        _task("chain_crf", init_weights=str(ckpt), freeze_encoder=True)
    # ... and `visrep test` on it (the data named on the command line: no config.yaml here)
    from visrep.cli import main

    data = ["--data", "visrep.data.MovingDigitsGestureDataModule", "--data.num_frames", "10"]
    data += ["--data.image_size", "[16, 16]", "--data.digit_size", "8", "--data.test_clips", "8"]
    data += ["--data.part_frames", "[2, 3]", "--trainer.enable_progress_bar", "false"]
    assert main(["test", "--ckpt_path", str(run_ckpt), *data]) == 0


def test_frozen_encoder_needs_all_of_init_weights(tmp_path: Path) -> None:
    L.seed_everything(0)
    with pytest.raises(ConfigError, match=r"freeze_encoder needs --model\.init_weights"):
        _trainer(tmp_path).fit(_task("chain_crf", freeze_encoder=True), _dm())
    task, _ = _built("softmax")
    enc = task.net.encoder.state_dict()
    partial = {k: v for k, v in list(enc.items())[1:]}  # all but the first tensor
    torch.save(partial, tmp_path / "partial.pt")
    frozen = _task("chain_crf", init_weights=str(tmp_path / "partial.pt"), freeze_encoder=True)
    with pytest.raises(ConfigError, match=f"1 of the frozen encoder's {len(enc)} tensors"):
        _trainer(tmp_path).fit(frozen, _dm())
    # not frozen: a partial match initialises what it can (the rest trains)
    free = _task("chain_crf", init_weights=str(tmp_path / "partial.pt"))
    dm = _dm()
    dm.setup("fit")
    free.setup_spec(dm.spec())
    _trainer(tmp_path).fit(free, dm)


def test_unfrozen_encoder_trains(tmp_path: Path) -> None:
    L.seed_everything(0)
    task = _task("ldcrf")
    dm = _dm()
    dm.setup("fit")
    task.setup_spec(dm.spec())
    before = _encoder_state(task)
    _trainer(tmp_path).fit(task, dm)
    after = _encoder_state(task)
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("head", ["hcrf", "chain_crf"])
def test_checkpoint_round_trip_and_test_artifacts(head: str, tmp_path: Path) -> None:
    from visrep.runs import RunDir
    from visrep.trainer.callbacks import RunArtifacts

    L.seed_everything(0)
    task, dm = _task(head), _dm()
    run = RunDir(tmp_path / "run")
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=run.root,
        callbacks=[
            L.pytorch.callbacks.ModelCheckpoint(dirpath=run.checkpoints, filename="last"),
            RunArtifacts(run.root),
        ],
    )
    trainer.fit(task, dm)
    val = set(trainer.callback_metrics)
    results = trainer.test(task, dm, verbose=False)[0]
    assert 0 <= results["test/seq_acc"] <= 1
    for name in ("frame_acc", "frame_acc_gesture", "frame_acc_mean_class"):
        assert (f"test/{name}" in results) == (head != "hcrf"), name
        assert (f"val/{name}" in val) == (head != "hcrf"), name
    assert (run.plots / "test_predictions.png").is_file()
    rows = (run.root / "confusion_matrix.csv").read_text().splitlines()
    assert rows[0].split(",")[1] == "none" and len(rows) == 1 + 7
    saved = read_task_checkpoint(run.checkpoints / "last.ckpt")
    assert saved.task_class is SequenceLabelingTask and saved.init_args["head"] == head
    loaded = saved.build()
    x = next(iter(dm.test_dataloader()))[VIDEO]
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), task(x))
        assert torch.equal(loaded.net.decode(loaded(x))[1], task.net.decode(task(x))[1])


# -- bad input --------------------------------------------------------------------------------------
def test_bad_options_and_data(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.head"):
        SequenceLabelingTask(head="crf")
    with pytest.raises(ConfigError, match=r"model\.frame_input"):
        SequenceLabelingTask(frame_input="triple")
    with pytest.raises(ConfigError, match="hidden_per_label"):
        SequenceLabelingTask(hidden_per_label=0)
    with pytest.raises(ConfigError, match="init_weights"):
        SequenceLabelingTask(init_weights=str(tmp_path / "missing.ckpt"))
    motion = DataSpec(
        family="video",
        keys=(VIDEO, LABEL),
        in_chans=1,
        image_size=(16, 16),
        num_frames=10,
        num_classes=3,
        class_names=("a", "b", "c"),
        mean=(0.1,),
        std=(0.2,),
    )
    with pytest.raises(ConfigError, match="frame_labels"):
        _task().setup_spec(motion)
    task, dm = _built("softmax")
    batch = next(iter(dm.train_dataloader()))
    batch[FRAME_LABELS] = batch[FRAME_LABELS][:, :5]
    with pytest.raises(ShapeError, match="frame_labels"):
        task.training_step(batch, 0)


# -- configs and the command line -------------------------------------------------------------------
GESTURE_CONFIGS = [f"gesture_{h}" for h in HEADS]


def test_gesture_configs_resolve(capsys: pytest.CaptureFixture[str]) -> None:
    from visrep.cli import main

    for name in GESTURE_CONFIGS:
        with pytest.raises(SystemExit) as e:
            main(["fit", "--config", name, "--print_config"])
        assert e.value.code in (0, None), name
        assert "class_path: visrep.tasks.SequenceLabelingTask" in capsys.readouterr().out, name


@pytest.mark.slow
def test_softmax_then_frozen_crf_from_the_cli(tmp_path: Path) -> None:
    """The configs' header commands: a softmax run, then a chain CRF on its frozen encoder."""
    import json

    from visrep.cli import main

    tiny = ["--data.train_clips", "16", "--data.val_clips", "8", "--data.test_clips", "8"]
    tiny += ["--data.num_frames", "10", "--data.image_size", "[16, 16]", "--data.digit_size", "8"]
    tiny += ["--data.part_frames", "[2, 3]", "--trainer.max_epochs", "1"]
    tiny += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    small = ["--model.backbone.channels", "[4, 8]"]
    first, second = tmp_path / "softmax", tmp_path / "crf"
    assert main(["fit", "--config", "gesture_softmax", "--run_dir", str(first), *tiny, *small]) == 0
    argv = ["fit", "--config", "gesture_chain_crf", "--run_dir", str(second), *tiny, *small]
    assert main([*argv, "--model.init_args.init_weights", str(first)]) == 0
    metrics = json.loads((second / "metrics.json").read_text())
    assert {"test/seq_acc", "test/frame_acc", "val/seq_acc", "test/seq_acc_per_class"} <= set(
        metrics
    )
    a = read_task_checkpoint(first / "checkpoints" / "last.ckpt").state_dict
    b = read_task_checkpoint(second / "checkpoints" / "last.ckpt").state_dict
    enc = [k for k in a if k.startswith("net.encoder.")]
    assert enc and all(torch.equal(a[k], b[k]) for k in enc)
