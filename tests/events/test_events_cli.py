"""``visrep events ...`` and ``visrep fit`` on event configs, through the in-process CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.events.test_datasets import digit_stream, write_list_layout, write_nmnist_folders
from visrep.analysis.runs import load_run
from visrep.events import EventBatch, read_events, to_voxel_grid, write_events
from visrep.tasks import EventClassificationTask


@pytest.fixture
def bin_file(tmp_path: Path) -> Path:
    path = tmp_path / "sample.bin"
    write_events(digit_stream(2, 0), path)
    return path


def test_info(cli, bin_file: Path) -> None:
    s = read_events(bin_file, (34, 34))
    code, out, _ = cli("events", "info", bin_file, "--sensor_size", "[34, 34]")
    assert code == 0
    assert f"events       {len(s):,}" in out and "34 x 34" in out
    assert f"{s.duration / 1e3:.3f} ms" in out and f"{int(s.p.sum()):,} ON" in out


def test_show_png_and_npy(cli, bin_file: Path, tmp_path: Path) -> None:
    code, out, _ = cli(
        "events", "show", bin_file, "--sensor_size", "[34, 34]", "--repr", "voxel",
        "--repr_args", '{"bins": 3}', "-o", tmp_path / "v.npy",
    )  # fmt: skip
    assert code == 0 and "(3, 34, 34)" in out
    s = read_events(bin_file, (34, 34))
    expected = to_voxel_grid(EventBatch.from_streams([s]), 3)[0].numpy()
    assert np.allclose(np.load(tmp_path / "v.npy"), expected)
    code, _, _ = cli("events", "show", bin_file, "--repr", "count", "-o", tmp_path / "c.png")
    assert code == 0
    with Image.open(tmp_path / "c.png") as im:
        assert im.format == "PNG" and im.size[0] > im.size[1]


def test_convert_round_trip(cli, bin_file: Path, tmp_path: Path) -> None:
    code, out, _ = cli(
        "events", "convert", bin_file, tmp_path / "s.npz", "--sensor_size", "[34, 34]"
    )
    assert code == 0 and "sensor 34 x 34" in out
    a, b = read_events(bin_file, (34, 34)), read_events(tmp_path / "s.npz")
    assert b.sensor_size == (34, 34) and all(
        np.array_equal(getattr(a, k), getattr(b, k)) for k in "xytp"
    )


def test_simulate_image_and_frames(cli, tmp_path: Path) -> None:
    img = np.zeros((12, 16), np.uint8)
    img[3:9, 5:11] = 255
    Image.fromarray(img).save(tmp_path / "square.png")
    code, out, _ = cli(
        "events", "simulate", tmp_path / "square.png", tmp_path / "sq.npz", "--seed", "1"
    )
    assert code == 0 and "saccade" in out
    s = read_events(tmp_path / "sq.npz")
    assert s.sensor_size == (22, 18) and len(s) > 100 and 0.2 < s.p.mean() < 0.8
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(4):  # a bright bar moving right by 2 px a frame
        f = np.zeros((10, 20), np.uint8)
        f[3:7, 2 + 2 * k : 6 + 2 * k] = 200
        Image.fromarray(f).save(frames / f"{k:03d}.png")
    code, out, _ = cli("events", "simulate", frames, tmp_path / "bar.npz", "--fps", "100")
    assert code == 0 and "4 frames at 100 fps" in out
    s = read_events(tmp_path / "bar.npz")
    assert s.t.min() > 0 and s.t.max() <= 30_000  # 3 intervals of 10 ms
    on, off = s.x[s.p == 1], s.x[s.p == 0]
    assert on.mean() > off.mean()  # ON at the leading (right) edge, OFF at the trailing one


def test_errors_are_one_line(cli, bin_file: Path, tmp_path: Path) -> None:
    cases = [
        (("events", "info", tmp_path / "missing.bin"), "no such event file"),
        (
            ("events", "show", bin_file, "--repr", "voxels", "-o", tmp_path / "x.png"),
            "did you mean",
        ),
        (
            ("events", "show", bin_file, "--repr_args", "{bins", "-o", tmp_path / "x.png"),
            "not JSON",
        ),
        (("events", "show", bin_file, "-o", tmp_path / "x.jpg"), ".png or .npy"),
        (("events", "convert", bin_file, tmp_path / "x.txt"), "cannot write this format"),
        (("events", "simulate", bin_file, tmp_path / "x.npz"), "expected an image"),
    ]
    for args, needle in cases:
        code, _, err = cli(*args)
        assert code == 2 and err.startswith("error:") and needle in err, (args, err)
        assert err.strip().count("\n") == 0


FIT = ("--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false")


def test_fit_nmnist_count_on_the_list_layout(cli, tmp_path: Path) -> None:
    root = write_list_layout(tmp_path / "data", n_train=40, n_test=9)
    run = tmp_path / "run"
    code, _, err = cli(
        "fit", "--config", "nmnist_count", "--data.root", root, "--run_dir", run, *FIT
    )
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test/acc"] <= 1 and (run / "plots" / "test_predictions.png").is_file()
    loaded = load_run(run)  # weights_only, task class from the checkpoint
    assert isinstance(loaded.task, EventClassificationTask)
    loaded.datamodule.setup()
    events, _ = next(iter(loaded.datamodule.test_dataloader()))
    with torch.no_grad():
        assert loaded.task(events).shape == (len(events), 3)


def test_fit_digits_events(cli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, _, err = cli(
        "fit", "--config", "digits_events", "--data.max_samples", "60",
        "--data.frames_per_saccade", "4", "--run_dir", run, *FIT,
    )  # fmt: skip
    assert code == 0, err
    assert "test/acc" in json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize("repr_", ["timesurface", "voxel", "hats", "est", "matrixlstm"])
def test_fit_every_nmnist_config(cli, tmp_path: Path, repr_: str) -> None:
    root = write_nmnist_folders(tmp_path / "data", classes=3, per_class=8)
    run = tmp_path / "run"
    code, _, err = cli(
        "fit", "--config", f"nmnist_{repr_}", "--data.root", root, "--run_dir", run,
        "--trainer.limit_train_batches", "1", *FIT,
    )  # fmt: skip
    assert code == 0, err
    assert "test/acc" in json.loads((run / "metrics.json").read_text())


def write_ncars_folders(root: Path, per_class: int = 4) -> Path:
    """N-Cars' ``n-cars_{train,test}/{cars,background}/*`` with small 120x100 streams."""
    for k, split in enumerate(("n-cars_train", "n-cars_test")):
        for c, name in enumerate(("background", "cars")):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                s = digit_stream(2 * c, 1000 * k + 100 * c + i, size=(120, 100))
                write_events(s, root / split / name / f"obj_{i:06d}_td.npz")
    return root


@pytest.mark.parametrize(
    ("config", "channels"),
    [("ncars_matrixlstm", 3), ("ncars_matrixlstm_16x2", 32), ("ncars_est", 18)],
)
def test_fit_every_ncars_config(cli, tmp_path: Path, config: str, channels: int) -> None:
    root = write_ncars_folders(tmp_path / "data")
    run = tmp_path / "run"
    code, _, err = cli(
        "fit", "--config", config, "--data.root", root, "--run_dir", run,
        "--data.batch_size", "4", "--trainer.limit_train_batches", "1", *FIT,
    )  # fmt: skip
    assert code == 0, err
    net = load_run(run).task.net  # the paper's channels (bins) of Table 2
    assert net.representation.out_channels == channels
    assert net(EventBatch.from_streams([digit_stream(0, 7, size=(120, 100))])).shape == (1, 2)
    assert "test/acc" in json.loads((run / "metrics.json").read_text())
