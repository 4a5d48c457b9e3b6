"""VideoClassificationTask (clip and video accuracy over K clips a video) and FramePredictionTask
(per-step errors against copy-last-frame)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from visrep.cli import main
from visrep.data.base import LoaderConfig, SplitConfig
from visrep.data.samples import FUTURE, LABEL, VIDEO
from visrep.data.video import (
    MovingDigitsDataModule,
    MovingDigitsForecastDataModule,
    VideoFolderDataModule,
)
from visrep.data.video.io import write_video
from visrep.errors import ConfigError, DataError
from visrep.models.video import average_softmax
from visrep.tasks import FramePredictionTask, VideoClassificationTask
from visrep.tasks.forecast import frame_errors, ssim_frames

_SMALL = {"class_path": "small_cnn", "init_args": {"channels": [4, 8], "convs_per_stage": 1}}


def _trainer() -> L.Trainer:
    return L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )


def _video_tree(root: Path) -> Path:
    """Two classes of 5 short H.264 videos each: a bright square drifting right or left."""
    g = torch.Generator().manual_seed(0)
    for c, (name, step) in enumerate((("right", 2), ("left", -2))):
        for i in range(5):
            frames = torch.zeros(24, 32, 32, 3, dtype=torch.uint8)
            x0 = int(torch.randint(4, 20, (1,), generator=g)) + c
            for t in range(24):  # 24 frames, building test data only
                x = (x0 + step * t // 4) % 24
                frames[t, 12:20, x : x + 8] = 255
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            write_video(folder / f"{name}{i}.mp4", frames, fps=24)
    return root


def test_video_accuracy_averages_the_clips_softmax(tmp_path: Path) -> None:
    """``test/acc`` is the accuracy of the K clips' averaged softmax, ``test/clip_acc`` that of
    single clips, both computed here from the network's own clip scores."""
    L.seed_everything(0)
    root = _video_tree(tmp_path / "videos")
    dm = VideoFolderDataModule(
        str(root), clip_len=4, frame_stride=2, image_size=(16, 16), resize=16,
        test_clips=3, stats_videos=2, loader=LoaderConfig(batch_size=2),
        split=SplitConfig(val_fraction=0.2, test_fraction=0.4),
    )  # fmt: skip
    task = VideoClassificationTask(
        net={"class_path": "single_frame", "init_args": {"backbone": _SMALL}}
    )
    trainer = _trainer()
    trainer.fit(task, dm)
    out = trainer.test(task, dm, verbose=False)[0]
    batches = list(dm.test_dataloader())
    assert batches[0][VIDEO].dim() == 6 and batches[0][VIDEO].shape[1] == 3
    task.eval()
    clip_hits = video_hits = clips = videos = 0
    with torch.no_grad():
        for b in batches:
            logits = task.net(b[VIDEO])  # (B, K, classes)
            y = b[LABEL]
            clip_hits += int((logits.argmax(-1) == y[:, None]).sum())
            video_hits += int((average_softmax(logits, dim=1).argmax(-1) == y).sum())
            clips, videos = clips + logits.shape[0] * logits.shape[1], videos + len(y)
    assert out["test/clip_acc"] == pytest.approx(clip_hits / clips)
    assert out["test/acc"] == pytest.approx(video_hits / videos)
    assert out["test/clips_per_video"] == 3


def test_two_stream_needs_flow() -> None:
    dm = MovingDigitsDataModule(
        num_frames=4, image_size=(16, 16), digit_size=8, train_clips=16, val_clips=8,
        test_clips=8,
    )  # fmt: skip
    dm.setup("fit")
    task = VideoClassificationTask(net="two_stream")
    with pytest.raises(ConfigError, match=r"reads optical flow.*--data.flow true"):
        task.setup_spec(dm.spec())
    with pytest.raises(ConfigError, match="flow_scale"):
        VideoClassificationTask(flow_scale=0)


def test_frame_errors_analytic() -> None:
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(2, 3, 1, 16, 16, generator=g)
    same = frame_errors(truth, truth)
    assert same["mse"].abs().max() == 0 and same["psnr"].min() == pytest.approx(100.0)
    assert torch.allclose(same["ssim"], torch.ones(2, 3))
    assert torch.allclose(same["ssim_openstl"], torch.ones(2, 3))
    pred = (truth + 0.1).clamp(0, 1)
    e = frame_errors(pred, truth)
    d = (pred - truth).flatten(2)
    assert torch.allclose(e["mse"], d.square().sum(-1)) and torch.allclose(
        e["mae"], d.abs().sum(-1)
    )
    assert torch.allclose(e["psnr"], -10 * torch.log10(d.square().mean(-1)))


def test_forecast_metrics_per_step_and_copy_last() -> None:
    """The logged copy-last-frame errors equal those computed from the test set directly; the
    per-step lists have one entry per forecast frame."""
    L.seed_everything(0)
    dm = MovingDigitsForecastDataModule(
        input_frames=3, future_frames=2, image_size=(16, 16), digit_size=8, speed=(1.5, 1.5),
        train_sequences=16, val_sequences=8, test_sequences=12, loader=LoaderConfig(batch_size=4),
    )  # fmt: skip
    task = FramePredictionTask(
        net={
            "class_path": "convlstm_forecaster",
            "init_args": {"hidden_dims": [4], "kernel_size": 3, "patch_size": 2},
        },
        loss="bce",
    )
    trainer = _trainer()
    trainer.fit(task, dm)
    out = trainer.test(task, dm, verbose=False)[0]
    errors = [
        frame_errors(b[VIDEO][:, -1:].expand_as(b[FUTURE]), b[FUTURE]) for b in dm.test_dataloader()
    ]
    for name in ("mse", "psnr", "ssim"):
        want = torch.cat([e[name] for e in errors])
        assert out[f"test/copy_last/{name}"] == pytest.approx(float(want.mean()), rel=1e-5)
    results = task._test_results
    assert results["per_step"]["test/mse"].shape == (2,)
    with pytest.raises(ConfigError, match=r"model\.loss"):
        FramePredictionTask(loss="huber")


VIDEO_CONFIGS = [
    *(f"motion_{n}" for n in ("single_frame", "early_fusion", "late_fusion", "slow_fusion")),
    *(f"motion_{n}" for n in ("c3d", "i3d", "tcc", "two_stream", "cnn_lstm", "convlstm")),
    "movingdigits_convlstm",
    "davis_convlstm",
]


def test_video_configs_resolve(capsys) -> None:
    for name in VIDEO_CONFIGS:
        with pytest.raises(SystemExit) as e:
            main(["fit", "--config", name, "--print_config"])
        assert e.value.code in (0, None), name
        assert "class_path: visrep.tasks." in capsys.readouterr().out, name


def test_two_stream_config_trains_from_the_cli(tmp_path: Path) -> None:
    """Flow computed once into the cache, the two streams trained and tested from the CLI."""
    run = tmp_path / "run"
    argv = ["fit", "--config", "motion_two_stream", "--run_dir", str(run)]
    argv += ["--data.train_clips", "32", "--data.val_clips", "8", "--data.test_clips", "8"]
    argv += ["--data.num_frames", "4", "--data.image_size", "[16, 16]", "--data.digit_size", "8"]
    argv += ["--data.cache_dir", str(tmp_path / "cache"), "--trainer.max_epochs", "1"]
    argv += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    assert main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test/acc", "test/clip_acc", "test/acc_mean_class"} <= set(metrics)
    assert (run / "plots" / "test_predictions.png").is_file()
    assert any((tmp_path / "cache").rglob("*.npy"))


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_equals_scikit_image(channels: int) -> None:
    """``ssim`` is scikit-image's ``structural_similarity`` with data range 1, ``ssim_openstl``
    with data range 2 (OpenSTL's float frames under scikit-image < 0.20)."""
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(1)
    truth = torch.rand(3, channels, 13, 17, generator=g, dtype=torch.float64)
    pred = (truth + 0.2 * torch.randn(truth.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    for data_range in (1.0, 2.0):
        got = ssim_frames(pred, truth, data_range)
        want = [
            structural_similarity(p.numpy(), t.numpy(), data_range=data_range, channel_axis=0)
            for p, t in zip(pred, truth, strict=True)
        ]
        assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=1e-12)
    with pytest.raises(DataError, match="H, W >= 7"):
        ssim_frames(pred[..., :6], truth[..., :6])
