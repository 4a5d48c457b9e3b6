"""``visrep video info|show`` (visrep.commands.video), in-process."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visrep.data.video.io import seek_points, write_video


def _lines(out: str) -> dict[str, str]:
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.strip().splitlines() if line)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames 32x24 at 15 fps, a keyframe every 10: frame i is grey level 8 * i."""
    x = (torch.arange(30, dtype=torch.uint8) * 8).view(30, 1, 1, 1).expand(30, 24, 32, 3)
    return write_video(tmp_path_factory.mktemp("cli") / "ramp.mp4", x.contiguous(), 15.0, gop=10)


def test_info(cli, clip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((5, 7, 3), 40 * i, np.uint8)).save(folder / f"{i}.jpg")
    code, out, _ = cli("video", "info", clip, folder, "--check", "true")
    assert code == 0
    video, frames = out.strip().split("\n\n")
    v = _lines(video)
    assert v["codec"] == "h264" and v["size"] == "32 x 24 (W x H)" and v["fps"] == "15"
    assert v["frames"] == "30" and v["duration"] == "2.000 s" and v["check"] == "30 frames decoded"
    keys = seek_points(clip)  # gop 10, plus any scene-cut keyframes x264 adds
    stretch = max(np.diff([*keys, 30]))
    assert len(keys) >= 3 and v["keyframes"] == f"{len(keys)} (longest stretch {stretch} frames)"
    f = _lines(frames)
    assert f["format"] == "frame folder" and f["frames"] == "3 (0.jpg .. 2.jpg)"
    assert f["size"] == "7 x 5 (W x H)" and f["check"].startswith("all 3 frames decoded")


def test_show_strip_and_gif(cli, clip: Path, tmp_path: Path) -> None:
    code, out, _ = cli("video", "show", clip, "-o", tmp_path / "s.png", "--start", "4", "--frames", "5", "--stride", "3")  # fmt: skip
    assert code == 0 and out.strip() == f"{tmp_path / 's.png'}: 5 frames 4..16"
    with Image.open(tmp_path / "s.png") as im:
        assert im.format == "PNG" and im.size[0] > 300
    code, out, _ = cli("video", "show", clip, "-o", tmp_path / "c.gif", "--frames", "6", "--stride", "2")  # fmt: skip
    assert code == 0 and "6 frames 0..10 at 7.5 fps" in out
    with Image.open(tmp_path / "c.gif") as im:
        assert im.n_frames == 6 and im.info["duration"] == 130  # 1000 / 7.5 ms, in GIF centiseconds
        levels = []
        for k in range(6):
            im.seek(k)
            levels.append(int(np.asarray(im.convert("L")).mean()))
    assert np.allclose(levels, [16 * k for k in range(6)], atol=4)  # frames 0, 2, .., 10


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["show", "{clip}", "-o", "{jpg}"], ["error: -o", "expected a .png (frame strip) or .gif"]),
        (["show", "{clip}", "-o", "{png}", "--start", "25", "--frames", "4", "--stride", "2"],
         ["frames 25..31", "go past the last frame 29"]),
        (["show", "{clip}", "-o", "{png}", "--frames", "0"], ["error: --frames must be >= 1"]),
        (["info", "{missing}"], ["error: ", "missing.mp4: no such file or frame folder"]),
        (["info", "{junk}"], ["error: ", "junk.mp4: not a readable video file"]),
        (["info", "{empty}"], ["error: ", "holds no"]),
    ],
)  # fmt: skip
def test_errors_are_one_line(cli, clip: Path, tmp_path: Path, args: list[str], words: list[str]) -> None:  # fmt: skip
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01" * 300)
    (tmp_path / "empty").mkdir()
    names = {"clip": clip, "jpg": tmp_path / "o.jpg", "png": tmp_path / "o.png",
             "missing": tmp_path / "missing.mp4", "junk": junk, "empty": tmp_path / "empty"}  # fmt: skip
    code, out, err = cli("video", *[a.format(**names) for a in args])
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]
    assert not (tmp_path / "o.png").exists()


def test_listed_in_help(cli) -> None:
    code, out, _ = cli("--help")
    assert code == 0 and re.search(r"\n\s+video\s+video files: info, show", out)
