"""``visrep events info|show|convert|simulate`` (visrep.commands.events), in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.events.test_datasets import digit_stream
from visrep.events import EventBatch, EventStream, read_events, to_voxel_grid, write_events


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


def test_show_refuses_a_sensor_too_large_to_render(cli, bin_file: Path, tmp_path: Path) -> None:
    # 100000 x 100000 would be a 160 GB dense tensor for a 2-channel representation
    out = tmp_path / "x.png"
    code, _, err = cli("events", "show", bin_file, "--sensor_size", "[100000,100000]", "-o", out)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "100000 x 100000" in err and "--sensor_size" in err
    assert not out.exists()
    code, _, err = cli("events", "show", bin_file, "--sensor_size", "0,34", "-o", out)
    assert code == 2 and "sensor_size must be positive" in err


def test_list_and_tuple_options_take_every_spelling(cli, bin_file: Path) -> None:
    for size in (["34", "34"], ["34,34"], ["[34,34]"]):
        code, out, err = cli("events", "info", bin_file, "--sensor_size", *size)
        assert code == 0 and "34 x 34" in out, (size, err)


def _stepping_stream(
    path: Path, frames: int = 5, size: tuple[int, int] = (20, 12), step: int = 1000
) -> Path:
    """One ON event per window k of ``step`` us at pixel (k, 0) and one OFF event at (k, 1):
    every window holds a different picture."""
    k = np.arange(frames)
    t = np.repeat(k * step + 10, 2) + np.tile([0, 5], frames)
    s = EventStream(
        x=np.repeat(k, 2), y=np.tile([0, 1], frames), t=t, p=np.tile([1, 0], frames),
        sensor_size=size,
    )  # fmt: skip
    write_events(s, path)
    return path


def test_show_gif_frames_size_and_colours(cli, tmp_path: Path) -> None:
    src = _stepping_stream(tmp_path / "s.npz")
    out = tmp_path / "clip.gif"
    code, stdout, err = cli(
        "events", "show", src, "-o", out, "--window_us", "1000", "--fps", "10", "--zoom", "2"
    )
    assert code == 0, err
    assert "5 frames of 1 ms (count) at 10 fps, 40 x 24 px" in stdout
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == 5 and im.size == (40, 24)
        assert im.info["duration"] == 100
        for k in range(5):
            im.seek(k)
            rgb = np.asarray(im.convert("RGB")).astype(int)
            on, off = rgb[0, 2 * k], rgb[2, 2 * k]  # zoom 2: pixel (k, y) at (2k, 2y)
            assert on[0] > on[2] + 100 and off[2] > off[0] + 100, k
            assert (rgb[:, 2 * k + 2 :] == 255).all()  # later columns: empty, white
    # the default zoom enlarges the 20 x 12 sensor to at least 256 pixels wide
    code, stdout, _ = cli("events", "show", src, "-o", out, "--window_us", "1000")
    assert code == 0 and "260 x 156 px" in stdout
    with Image.open(out) as im:
        assert im.size == (260, 156)


def test_show_clip_windows_and_max_frames(cli, tmp_path: Path) -> None:
    src = _stepping_stream(tmp_path / "s.npz", step=100_000)  # t from 10 to 400,015 us
    out = tmp_path / "clip.gif"
    code, stdout, _ = cli(
        "events", "show", src, "-o", out, "--window_us", "100000", "--max_frames", "3"
    )
    assert code == 0 and "3 frames" in stdout and "4 later events left out" in stdout
    with Image.open(out) as im:
        assert im.n_frames == 3
    # default window: 1/30 s, stretched so that the recording fits in --max_frames frames
    code, stdout, _ = cli("events", "show", src, "-o", out)
    assert code == 0 and "13 frames of 33.333 ms" in stdout and "left out" not in stdout
    code, stdout, _ = cli("events", "show", src, "-o", out, "--max_frames", "4")
    assert code == 0 and "4 frames of 100.002 ms" in stdout and "left out" not in stdout
    with Image.open(out) as im:
        assert im.n_frames == 4


def test_show_mp4_reads_back(cli, tmp_path: Path) -> None:
    import av

    src = _stepping_stream(tmp_path / "s.npz", frames=6, size=(21, 13))
    out = tmp_path / "clip.mp4"
    code, stdout, err = cli(
        "events", "show", src, "-o", out, "--window_us", "1000", "--zoom", "1",
        "--repr", "voxel", "--repr_args", '{"bins": 2}',
    )  # fmt: skip
    assert code == 0, err
    assert "6 frames of 1 ms (voxel)" in stdout and "22 x 14 px" in stdout  # padded to even
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (14, 22, 3)
    assert frames[0][8:, 10:].min() > 230  # far from the events: the white centre of 0


def test_show_clip_errors_are_one_line(cli, bin_file: Path, tmp_path: Path) -> None:
    write_events(EventStream.empty((8, 8)), tmp_path / "empty.npz")
    cases = [
        (("-o", tmp_path / "x.avi"), "expected a .png or .npy file, or a .gif or .mp4 clip"),
        (("-o", tmp_path / "x.gif", "--window_us", "0"), "--window_us must be > 0"),
        (("-o", tmp_path / "x.gif", "--fps", "-1"), "--fps must be > 0"),
        (("-o", tmp_path / "x.gif", "--max_frames", "0"), "--max_frames must be >= 1"),
        (("-o", tmp_path / "x.gif", "--percentile", "0"), "--percentile must be in (0, 100]"),
    ]
    for args, needle in cases:
        code, _, err = cli("events", "show", bin_file, "--sensor_size", "34,34", *args)
        assert code == 2 and err.startswith("error:") and needle in err, (args, err)
        assert err.strip().count("\n") == 0
    code, _, err = cli("events", "show", tmp_path / "empty.npz", "-o", tmp_path / "x.mp4")
    assert code == 2 and "no events, nothing to draw" in err and err.count("\n") == 1
    assert not (tmp_path / "x.gif").exists() and not (tmp_path / "x.mp4").exists()
