"""VideoObjectSegmentationTask (visrep.tasks.vos): the balanced loss and the multi-object rule
on hand cases, every method trains and evaluates end to end, a perfect predictor scores 1,
OSVOS fine-tuning changes a copy only."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from tests.data.test_vos_data import _davis
from visrep.data.samples import META, OBJECT_MASKS, VIDEO
from visrep.data.vos import DavisVosDataModule
from visrep.errors import ConfigError
from visrep.tasks import VideoObjectSegmentationTask
from visrep.tasks.vos import balanced_bce, combine_objects

_SMALL = {"class_path": "small_cnn", "init_args": {"channels": [4, 8], "convs_per_stage": 1}}
_ADAM = {"optimizer": "adam", "lr": 0.01, "weight_decay": 0.0}


def _task(method: str, **kw) -> VideoObjectSegmentationTask:
    rec = (2,) if method == "reconvnet" else ()
    return VideoObjectSegmentationTask(
        method, (4, 8, 8), rec, _SMALL, crop_size=16, optim=_ADAM, **kw
    )


def _dm(root: Path, size: tuple[int, int] = (16, 24)) -> DavisVosDataModule:
    return DavisVosDataModule(str(root), train_sequences=["one"], test_sequences=["two"],
                              size=size, episode_frames=3, episodes_per_epoch=4,
                              static_episodes=2)  # fmt: skip


def test_balanced_bce_hand_case() -> None:
    logits = torch.tensor([[[2.0, -1.0], [0.0, 0.5]]])
    target = torch.tensor([[[1, 0], [0, 0]]])
    sp = torch.nn.functional.softplus
    beta = 3 / 4  # fraction of negatives weighs the positive
    want = (beta * sp(-logits[0, 0, 0]) + (1 - beta) * (sp(logits[0, 0, 1]) + sp(logits[0, 1, 0]) + sp(logits[0, 1, 1]))) / 4  # fmt: skip
    torch.testing.assert_close(balanced_bce(logits, target), want)


def test_combine_objects() -> None:
    probs = torch.zeros(2, 1, 2, 3)
    probs[0, 0, 0] = torch.tensor([0.9, 0.6, 0.2])
    probs[1, 0, 0] = torch.tensor([0.3, 0.7, 0.4])
    out = combine_objects(probs, torch.tensor([4, 7]))
    assert out[0].tolist() == [[4, 7, 0], [0, 0, 0]]


@pytest.mark.parametrize("method", ["reconvnet", "osmn", "osvos"])
def test_every_method_trains_and_evaluates(method: str, tmp_path: Path) -> None:
    L.seed_everything(0)
    task = _task(method, finetune_steps=2)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=tmp_path)  # fmt: skip
    dm = _dm(_davis(tmp_path / "d"))
    trainer.fit(task, dm)
    res = trainer.test(task, dm, verbose=False)[0]
    for key in ("jf_mean", "j_mean", "f_mean", "j_recall", "f_decay", "ms_per_frame"):
        assert f"test/{key}" in res and f"test/copy_first/{key}" in res
    assert 0 <= res["test/jf_mean"] <= 1
    # the test squares: object 1 moves 3 px a frame, object 2 stays: copy-first is perfect on 2
    rows = task._test_rows
    copy2 = next(r for r in rows if r["method"] == "copy_first" and r["object"] == 2)
    assert copy2["j_mean"] == 1.0 and copy2["f_mean"] == 1.0
    assert {r["object"] for r in rows} == {1, 2}


def test_a_perfect_predictor_scores_one(tmp_path: Path) -> None:
    """The evaluation path (objects as a batch, upsampling, the multi-object rule, J and F):
    logits that ARE the truth give J = F = 1 (frames at the annotation's size, so no
    resampling blurs the truth)."""
    dm = _dm(_davis(tmp_path / "d"), size=(32, 48))
    dm.setup("test")
    task = _task("osmn")
    task.setup_spec(dm.spec())
    sample = dm.test_set[0]
    gt = sample[OBJECT_MASKS]
    ids = torch.tensor([1, 2])

    def truth(video: torch.Tensor, first: torch.Tensor, masks=None) -> torch.Tensor:
        small = torch.nn.functional.interpolate(
            (gt[None] == ids[:, None, None, None]).float(), size=video.shape[-2:], mode="area"
        )
        return (small - 0.5) * 40

    task.net.forward = truth
    batch = {VIDEO: sample[VIDEO][None], OBJECT_MASKS: gt[None], META: [sample[META]]}
    task.on_test_epoch_start()
    task._eval_step(batch, "val")
    ((_, _, _, scores),) = task._scores
    assert scores.j_stats["mean"].tolist() == [1.0, 1.0]
    assert scores.f_stats["mean"].tolist() == [1.0, 1.0]


def test_osvos_finetunes_a_copy(tmp_path: Path) -> None:
    dm = _dm(_davis(tmp_path / "d"))
    dm.setup("test")
    task = _task("osvos", finetune_steps=3)
    task.setup_spec(dm.spec())
    before = {k: v.clone() for k, v in task.net.state_dict().items()}
    s = dm.test_set[0]
    task.eval()
    with torch.inference_mode():
        pred, gt, ms, name = task._segment({VIDEO: s[VIDEO][None], OBJECT_MASKS: s[OBJECT_MASKS][None], META: [s[META]]})  # fmt: skip
    assert pred.shape == gt.shape and torch.equal(pred[0], gt[0]) and ms > 0 and name == "two"
    after = task.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the parent is untouched


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match=r"model\.method"):
        VideoObjectSegmentationTask("maskrnn")
    with pytest.raises(ConfigError, match="finetune_steps"):
        VideoObjectSegmentationTask("osvos", finetune_steps=-1)
