"""The segmentation task end to end through the CLI: the shipped camvid_unet config on a tiny
CamVid-layout tree, then test and predict (palette PNGs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def _camvid_tree(root: Path, n: int = 6) -> Path:
    """``train/``, ``trainannot/``, ``val/``, ``valannot/``: 24x32 images whose left half is class
    3 (road) and right half class 0 (sky), 11 = void on the top row."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            label = np.zeros((24, 32), np.uint8)
            label[:, :16] = 3
            label[0] = 11
            img = rng.integers(0, 40, (24, 32, 3), dtype=np.uint8)
            img[label == 3] += 180
            Image.fromarray(img).save(root / split / f"f{i}.png")
            Image.fromarray(label).save(root / f"{split}annot" / f"f{i}.png")
    return root


def test_camvid_config_fits_tests_and_predicts(tmp_path, cli):
    data, run = _camvid_tree(tmp_path / "camvid"), tmp_path / "run"
    quiet = ["--trainer.enable_progress_bar", "false"]
    code, _, err = cli(
        "fit", "--config", "camvid_unet", "--data.root", data, "--run_dir", run,
        "--data.crop_size", "[16,16]", "--data.loader.batch_size", "4",
        "--model.model.width", "4", "--model.model.depth", "2", "--trainer.max_epochs", "2",
        "--model.crf.window", "2", "--model.crf.normalize", "after", *quiet,
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/miou", "test/miou", "test/pixel_acc", "test/iou_per_class"} <= set(metrics)
    assert len(metrics["test/iou_per_class"]) == 11 and "road" in metrics["test/iou_per_class"]
    for plot in ("class_iou", "confusion_matrix", "test_segmentations", "learning_curves"):
        assert (run / "plots" / f"{plot}.png").is_file(), plot
    code, _, err = cli(
        "predict", "--ckpt_path", run / "checkpoints" / "best.ckpt", "--data.path", data / "val",
        *quiet,
    )  # fmt: skip
    assert code == 0, err
    rows = (run / "predictions.csv").read_text().splitlines()
    assert rows[0] == "file,classes,output" and len(rows) == 7
    mask = Image.open(run / rows[1].split(",")[-1])
    assert mask.mode == "P" and mask.size == (32, 24)  # the input image's own size
    # evaluation-time options on the command line win over the checkpoint's saved ones, one
    # option at a time: the fit's CRF (window 2, normalize after) keeps what is not named
    ckpt = run / "checkpoints" / "best.ckpt"
    plain = ["validate", "--config", "camvid_unet", "--ckpt_path", ckpt, "--data.root", data]
    code, _, err = cli(*plain, *quiet)
    assert code == 0, err
    saved = (run / "config.validate.yaml").read_text()
    assert "window: 2" in saved and "normalize: after" in saved and "iterations: 5" in saved
    code, _, err = cli(*plain, "--model.crf.iterations", "1", *quiet)
    assert code == 0, err
    saved = (run / "config.validate.yaml").read_text()
    assert "window: 2" in saved and "normalize: after" in saved and "iterations: 1" in saved
    # without --config or --data, a run's checkpoint evaluates its own task on the run's data
    # (--data.* options refine it: here the data has moved)
    data.rename(tmp_path / "moved")
    code, _, err = cli(
        "test", "--ckpt_path", ckpt, "--model.crf.window", "3", "--data.root", tmp_path / "moved",
        *quiet,
    )  # fmt: skip
    assert code == 0, err
    saved = (run / "config.test.yaml").read_text()
    assert "PairedFolderDataModule" in saved and "window: 3" in saved and "moved" in saved


def test_crf_post_processing_is_the_dense_crf_of_the_network_scores():
    import torch

    from visrep.data.base import DataSpec
    from visrep.models.layers.crf import dense_crf
    from visrep.tasks import SegmentationTask
    from visrep.tasks.segmentation import CRFConfig

    spec = DataSpec(
        family="segmentation", keys=("image", "mask"), in_chans=3, image_size=(12, 10),
        num_classes=4, mean=(0.5,) * 3, std=(0.25,) * 3, ignore_index=255,
    )  # fmt: skip
    torch.manual_seed(0)
    model = {"class_path": "unet", "init_args": {"depth": 1, "width": 4}}
    task = SegmentationTask(model=model, crf={"window": 3, "iterations": 2})
    assert task.crf == CRFConfig(window=3, iterations=2) and task.hparams["crf"]["window"] == 3
    task.setup_spec(spec)
    task.eval()
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        logits = task.net(x)
        q = dense_crf(-logits.log_softmax(1), x, 2, window=3)
        assert torch.equal(task.predict_mask(x), q.argmax(1))
        task.crf = CRFConfig(w_appearance=0.0, w_smoothness=0.0)  # no pairwise terms
        assert torch.equal(task.predict_mask(x), logits.argmax(1))


def test_isbi_config_fits_on_a_tiny_slice_stack(tmp_path, cli):
    rng = np.random.default_rng(1)
    for sub in ("image", "label"):
        (tmp_path / "isbi" / "train" / sub).mkdir(parents=True)
    for i in range(8):
        label = np.full((20, 20), 255, np.uint8)
        label[::5] = 0  # membranes
        img = (rng.integers(100, 140, (20, 20)) + (label > 0) * 100).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / "isbi" / "train" / "image" / f"{i}.png")
        Image.fromarray(label).save(tmp_path / "isbi" / "train" / "label" / f"{i}.png")
    code, _, err = cli(
        "fit", "--config", "isbi_unet", "--data.root", tmp_path / "isbi",
        "--run_dir", tmp_path / "run", "--data.crop_size", "[16,16]",
        "--model.model.width", "4", "--model.model.depth", "2", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false",
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["test/iou_per_class"]) == {"membrane", "cell"}


# -- CRF-as-RNN and sliding-window inference -----------------------------------------------------
_TINY_UNET = {"class_path": "unet", "init_args": {"depth": 1, "width": 4}}
# a local CRF that a 12x10 image feels (the paper's theta_alpha = 80 would be flat here)
_CRF = {"trainable": True, "window": 2, "iterations": 2, "theta_alpha": 3.0, "theta_beta": 30.0}


def _spec(size=(12, 10)):
    from visrep.data.base import DataSpec

    return DataSpec(
        family="segmentation", keys=("image", "mask"), in_chans=3, image_size=size,
        num_classes=3, class_names=("a", "b", "c"), mean=(0.5,) * 3, std=(0.25,) * 3,
        ignore_index=255, class_weights=(1.0, 2.0, 0.5),
    )  # fmt: skip


def _batch(n=4, size=(12, 10), seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, *size, generator=g)
    mask = x.argmax(1)  # the brightest channel is the class
    mask[:, 0] = 255
    return x, mask


def test_trainable_crf_loss_is_the_nll_of_the_crf_marginals_and_trains_both():
    import torch
    import torch.nn.functional as F

    from visrep.models.layers.crf import dense_crf, potts_compatibility
    from visrep.tasks import SegmentationTask

    torch.manual_seed(0)
    task = SegmentationTask(model=_TINY_UNET, crf=_CRF)
    task.setup_spec(_spec())
    crf = task.net.crf
    assert crf is not None and crf.learnable and crf.num_labels == 3
    assert torch.equal(crf.compatibility.detach(), potts_compatibility(3))
    x, mask = _batch()
    scores = task.net.scores(x)
    q = dense_crf(-scores, x, 2, 3.0, 30.0, 3.0, 10.0, 3.0, potts_compatibility(3), window=2)
    weight = torch.tensor([1.0, 2.0, 0.5])
    expected = F.nll_loss(q.log(), mask, weight=weight, ignore_index=255)
    loss = task._loss(task(x), mask)
    assert torch.isfinite(loss) and torch.allclose(loss, expected, atol=1e-6)
    assert torch.equal(task.predict_mask(x), q.argmax(1))
    loss.backward()
    grads = {n: p.grad for n, p in task.named_parameters()}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), [
        n for n, g in grads.items() if g is None or g.abs().sum() == 0
    ]
    assert {"net.crf.w_appearance", "net.crf.w_smoothness", "net.crf.compatibility"} <= set(grads)
    assert any(n.startswith("net.model.") for n in grads)


def test_trainable_crf_fits_and_its_checkpoint_round_trips(tmp_path):
    import lightning as L
    import torch

    from visrep.data.base import LoaderConfig, SplitConfig, SplitDataModule, Splits
    from visrep.tasks import SegmentationTask
    from visrep.tasks.checkpoint import read_task_checkpoint

    class Tiny(SplitDataModule):
        def load(self) -> Splits:
            x, mask = _batch(24)
            return Splits([{"image": a, "mask": m} for a, m in zip(x, mask, strict=True)], None,
                          ["a", "b", "c"])  # fmt: skip

        def spec(self):
            return _spec()

    L.seed_everything(0)
    sliding = {"mode": "sliding", "window": [8, 6], "overlap": 0.5, "blend": "gaussian"}
    task = SegmentationTask(
        model=_TINY_UNET, crf=_CRF, inference=sliding, optim={"optimizer": "adam", "lr": 0.05}
    )
    dm = Tiny(loader=LoaderConfig(batch_size=8), split=SplitConfig(stratify=False))
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="last")],
    )  # fmt: skip
    trainer.fit(task, dm)
    crf = task.net.crf
    assert not torch.isclose(crf.w_appearance.detach(), torch.tensor(10.0))
    assert not torch.isclose(crf.w_smoothness.detach(), torch.tensor(3.0))
    assert not torch.equal(crf.compatibility.detach(), 1 - torch.eye(3))
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and torch.isfinite(metrics["val/loss"])

    saved = read_task_checkpoint(tmp_path / "last.ckpt")
    assert saved.init_args["crf"]["trainable"] and saved.init_args["inference"]["mode"] == "sliding"
    loaded = saved.build()
    assert torch.equal(loaded.net.crf.compatibility, crf.compatibility)
    x, _ = _batch(3, seed=1)
    task.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.logits(x), task.logits(x), atol=1e-6)
        assert torch.equal(loaded.predict_mask(x), task.predict_mask(x))


def test_sliding_inference_in_the_task():
    import torch

    from visrep.models.inference import sliding_window_logits
    from visrep.tasks import SegmentationTask

    torch.manual_seed(0)
    x, _ = _batch(2, size=(13, 11))
    task = SegmentationTask(model=_TINY_UNET, crf=_CRF, inference={"mode": "sliding"})
    task.setup_spec(_spec(size=(13, 11)))  # window None: the training size, here the image's
    task.eval()
    with torch.no_grad():
        assert torch.equal(task.logits(x), task.net(x))
        task.setup_spec(_spec(size=(6, 5)))  # a smaller training crop: tiles of it
        task.eval()
        want = task.net.refine(sliding_window_logits(task.net.scores, x, (6, 5), overlap=0.5), x)
        assert torch.equal(task.logits(x), want)
        # images of different sizes (a list batch): one mask each, at its own size
        images = [torch.rand(3, 13, 11), torch.rand(3, 17, 9)]
        out = task.predict_step({"image": images}, 0)["mask"]
        assert [tuple(m.shape) for m in out] == [(13, 11), (17, 9)]
        assert all(m.dtype == torch.uint8 for m in out)
        assert torch.equal(out[1].long(), task.predict_mask(images[1][None])[0])


def test_inference_options_are_checked():
    import pytest

    from visrep.errors import ConfigError
    from visrep.tasks import SegmentationTask
    from visrep.tasks.segmentation import InferenceConfig

    task = SegmentationTask(inference={"mode": "sliding", "window": [4, 5]})
    assert task.inference == InferenceConfig(mode="sliding", window=(4, 5))
    assert task.hparams["inference"]["window"] == [4, 5]
    for bad, word in (
        ({"mode": "tiles"}, "mode"),
        ({"window": [0, 3]}, "window"),
        ({"window": [3]}, "window"),
        ({"overlap": 1.0}, "overlap"),
        ({"blend": "cosine"}, "blend"),
        ({"batch_size": 0}, "batch_size"),
    ):
        with pytest.raises(ConfigError, match=f"--model.inference.{word}"):
            SegmentationTask(inference=bad)


def test_miou_averages_only_the_classes_present_and_crf_options_fail_early():
    import pytest
    import torch

    from visrep.data.base import DataSpec
    from visrep.errors import ConfigError
    from visrep.tasks import SegmentationTask

    spec = DataSpec(
        family="segmentation", keys=("image", "mask"), in_chans=3, image_size=(4, 4),
        num_classes=3, mean=(0.5,) * 3, std=(0.25,) * 3, ignore_index=255,
    )  # fmt: skip
    task = SegmentationTask(model={"class_path": "unet", "init_args": {"depth": 1, "width": 4}})
    task.setup_spec(spec)
    logged = {}
    task.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    truth = torch.tensor([[[0, 0], [1, 1]]])
    pred = torch.tensor([[[0, 1], [1, 1]]])  # class 2 is in neither
    task.val_iou.update(pred, truth)
    task.val_pixacc.update(pred, truth)
    task.val_classacc.update(pred, truth)
    iou = task._log_epoch("val")
    assert iou.tolist() == pytest.approx([0.5, 2 / 3, 0.0])
    assert logged["val/miou"] == pytest.approx((0.5 + 2 / 3) / 2)  # not / 3
    with pytest.raises(ConfigError, match=r"--model.crf: window must be an int >= 1"):
        SegmentationTask(crf={"window": 0})
    with pytest.raises(ConfigError, match=r"--model.crf: w_smoothness must be a finite number"):
        SegmentationTask(crf={"w_smoothness": float("nan")})


def test_init_weights_starts_a_new_fit_from_a_run_with_a_new_crf_layer(tmp_path, cli):
    data, run = _camvid_tree(tmp_path / "camvid"), tmp_path / "run"
    quiet = ["--trainer.enable_progress_bar", "false"]
    small = [
        "--config", "camvid_unet", "--data.root", data, "--data.crop_size", "[16,16]",
        "--data.loader.batch_size", "4", "--model.model.width", "4", "--model.model.depth", "2",
        "--trainer.max_epochs", "1", *quiet,
    ]  # fmt: skip
    code, _, err = cli("fit", *small, "--run_dir", run)
    assert code == 0, err
    code, _, err = cli(
        "fit", *small, "--run_dir", tmp_path / "tuned", "--model.init_weights", run,
        "--model.crf.trainable", "true", "--model.crf.normalize", "after",
        "--model.crf.w_appearance", "1", "--model.crf.w_smoothness", "1",
        "--trainer.limit_train_batches", "1", "--model.optim.lr", "1e-12",
        "--model.optim.warmup_epochs", "0", "--test_after_fit", "false",
    )  # fmt: skip
    assert code == 0, err
    import torch

    from visrep.runs import load_checkpoint

    src = load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    new = load_checkpoint(tmp_path / "tuned" / "checkpoints" / "last.ckpt")["state_dict"]
    # the weights (not BN's running statistics, updated by the one step's forward) are the run's
    shared = [
        k for k in src if k.startswith("net.model.") and "running" not in k and "num_" not in k
    ]
    assert shared and all(torch.allclose(src[k], new[k], atol=1e-8) for k in shared)
    assert "net.crf.compatibility" in new and "net.crf.compatibility" not in src
    # the tuned run reads back and tests once the run it started from is gone (or elsewhere)
    import shutil

    from visrep.tasks.checkpoint import read_task_checkpoint

    shutil.rmtree(run)
    tuned = tmp_path / "tuned" / "checkpoints" / "last.ckpt"
    assert read_task_checkpoint(tuned).build().net.crf is not None
    code, _, err = cli("test", "--ckpt_path", tuned, *quiet)
    assert code == 0, err
    code, _, err = cli("fit", *small, "--run_dir", tmp_path / "x", "--model.init_weights", "nope")
    assert code == 2 and "--model.init_weights 'nope' does not exist" in err
