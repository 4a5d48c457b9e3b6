"""Video decoding (visrep.data.video.io): frame counts and pixels against OpenCV, seeking, frame
folders, bad files."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import SHARED_DATA
from visrep.data.video.io import (
    count_frames,
    iter_frames,
    iter_video_frames,
    list_frames,
    read_frame_folder,
    read_frames,
    read_video_frames,
    seek_points,
    to_clip,
    video_info,
    write_video,
)
from visrep.errors import DataError, ShapeError

CLIPS = SHARED_DATA / "video-clips"
REAL = {
    "demo.mp4": CLIPS / "mmaction2" / "demo" / "demo.mp4",  # H.264, 4 keyframes
    "test.avi": CLIPS / "mmaction2" / "tests" / "data" / "test.avi",  # MPEG-4, packed B-frames
    "test.mp4": CLIPS / "mmaction2" / "tests" / "data" / "test.mp4",  # H.264, 2 keyframes
    "vtest.avi": CLIPS / "opencv-samples" / "vtest.avi",  # MS-MPEG4v3, 795 frames 768x576
}
DAVIS = SHARED_DATA / "davis2016-subset" / "DAVIS" / "JPEGImages" / "480p" / "blackswan"


def moving_texture(t: int = 48, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8: a random texture sliding 2 px a frame, every frame distinct."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (h, w + 2 * t, 3), generator=g, dtype=torch.uint8)
    return torch.stack([base[:, 2 * i : 2 * i + w] for i in range(t)])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.Tensor]]:
    root = tmp_path_factory.mktemp("videos")
    x = moving_texture()
    out = {}
    for name, codec, b in (("h264.mp4", "libx264", 2), ("mpeg4.avi", "mpeg4", 2),
                           ("msmpeg4.avi", "msmpeg4v3", 0), ("h264.mkv", "libx264", 0)):  # fmt: skip
        out[name] = (write_video(root / name, x, 25.0, codec, gop=8, b_frames=b), x)
    return out


def cv2_frames(path: Path, limit: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < limit:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f[..., ::-1])
    cap.release()
    return frames


def cv2_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


@pytest.mark.parametrize("name", ["h264.mp4", "mpeg4.avi", "msmpeg4.avi", "h264.mkv"])
def test_synthetic_seek_equals_sequential_decode(synthetic, name: str) -> None:
    path, x = synthetic[name]
    info = video_info(path)
    assert (info.num_frames, info.width, info.height, info.fps) == (48, 64, 48, 25.0)
    assert info.duration == pytest.approx(48 / 25)
    full = torch.cat(list(iter_video_frames(path, chunk=10)))
    assert full.shape == (48, 48, 64, 3) and full.dtype == torch.uint8
    assert len(seek_points(path)) >= 2  # several keyframes: seeks really happen
    idx = [47, 3, 17, 17, 0, 25, 8, 9, 7, 40]
    assert torch.equal(read_video_frames(path, idx), full[idx])
    assert torch.equal(read_video_frames(path, torch.tensor([16, 24, 32])), full[[16, 24, 32]])
    assert count_frames(path) == 48 and torch.equal(read_frames(path, [5, 2]), full[[5, 2]])
    assert torch.equal(torch.cat(list(iter_frames(path, chunk=20))), full)
    # decoded frame i is the encoded frame i (lossy, but far closer to it than to any other)
    err = (full.float()[:, None] - x.float()[None]).abs().mean((2, 3, 4))
    assert torch.equal(err.argmin(1), torch.arange(48))
    assert read_video_frames(path, []).shape == (0, 48, 64, 3)


def cv2_count_and_frames(path: Path, wanted: set[int]) -> tuple[int, dict[int, np.ndarray]]:
    """OpenCV's frame count (by grabbing every frame) and its RGB frames at ``wanted``."""
    cap = cv2.VideoCapture(str(path))
    n, got = 0, {}
    while cap.grab():
        if n in wanted:
            got[n] = cap.retrieve()[1][..., ::-1]
        n += 1
    cap.release()
    return n, got


def _real(name: str) -> Path:
    path = REAL[name]
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


@pytest.mark.parametrize("name", ["demo.mp4", "test.avi", "test.mp4"])
def test_real_clips_match_opencv(name: str) -> None:
    """Frame count (by reading) and pixels of frames reached by seeking, against OpenCV."""
    path = _real(name)
    info = video_info(path)
    n = info.num_frames
    keys = seek_points(path)
    idx = [n - 1, *keys, *(k - 1 for k in keys[1:]), *(k + 2 for k in keys[:-1]), 1, n // 2]
    count, ref = cv2_count_and_frames(path, set(idx))
    assert n == count  # counted by reading, not from the header
    got = read_video_frames(path, idx)
    assert got.shape == (len(idx), info.height, info.width, 3)
    for g, i in zip(got.numpy(), idx, strict=True):
        d = np.abs(g.astype(int) - ref[i].astype(int))
        assert d.mean() < 1.0 and np.percentile(d, 99) <= 4, (name, i)  # YUV->RGB may differ


@pytest.mark.slow
@pytest.mark.parametrize("name", ["demo.mp4", "test.avi", "test.mp4", "vtest.avi"])
def test_real_clips_seek_equals_sequential_decode(name: str) -> None:
    path = _real(name)
    full = torch.cat(list(iter_video_frames(path)))
    n = video_info(path).num_frames
    assert len(full) == n == cv2_count(path)
    keys = seek_points(path)
    idx = [n - 1, *keys, *(k - 1 for k in keys[1:]), *(k + 2 for k in keys[:-1]), 5, 5, n // 2]
    assert torch.equal(read_video_frames(path, idx), full[idx])


def test_real_vtest_counts_and_seeks() -> None:
    """MS-MPEG4v3 AVI: frame count by the packet index vs OpenCV, seeks across its keyframes."""
    path = _real("vtest.avi")
    info = video_info(path)
    assert (info.codec, info.width, info.height, info.fps) == ("msmpeg4", 768, 576, 10.0)
    assert seek_points(path) == [0, 250, 500, 750]
    ref = cv2_frames(path, limit=253)
    got = read_video_frames(path, [252, 249, 250, 0])
    for g, i in zip(got.numpy(), (252, 249, 250, 0), strict=True):
        d = np.abs(g.astype(int) - ref[i].astype(int))
        assert d.mean() < 1.0 and np.percentile(d, 99) <= 4


def test_bad_files(tmp_path: Path, synthetic) -> None:
    with pytest.raises(DataError, match="no such video file"):
        video_info(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 50)
    with pytest.raises(DataError, match=r"junk\.mp4"):
        read_video_frames(junk, [0])
    audio = tmp_path / "tone.wav"
    with av.open(str(audio), "w") as c:
        c.add_stream("pcm_s16le", rate=8000)
    with pytest.raises(DataError, match=r"tone\.wav"):
        video_info(audio)
    path, _ = synthetic["h264.mkv"]
    with pytest.raises(DataError, match=r"indices must be in \[0, 47\].*got 0..48"):
        read_video_frames(path, [0, 48])
    # a truncated file: the index and the decoder see less than the whole; reading past fails
    cut = tmp_path / "cut.avi"
    whole, _ = synthetic["mpeg4.avi"]
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    try:
        n = video_info(cut).num_frames
    except DataError as e:
        assert "cut.avi" in str(e)
    else:
        assert n < 48
        with pytest.raises(DataError, match=r"cut\.avi"):
            read_video_frames(cut, [47])


def test_frame_folder(tmp_path: Path) -> None:
    x = moving_texture(t=12, h=10, w=14)
    for i in range(12):
        Image.fromarray(x[i].numpy()).save(tmp_path / f"frame{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    files = list_frames(tmp_path)
    assert [f.name for f in files[:3]] == ["frame0.png", "frame1.png", "frame2.png"]
    assert files[10].name == "frame10.png"  # natural order, not frame1, frame10, frame11, frame2
    assert torch.equal(read_frame_folder(tmp_path), x)
    assert torch.equal(read_frame_folder(tmp_path, [11, 2, 2]), x[[11, 2, 2]])
    assert count_frames(tmp_path) == 12 and torch.equal(read_frames(tmp_path, [3, 1]), x[[3, 1]])
    assert torch.equal(torch.cat(list(iter_frames(tmp_path, chunk=5))), x)
    Image.fromarray(np.zeros((9, 14, 3), np.uint8)).save(tmp_path / "frame12.png")
    with pytest.raises(DataError, match=r"frame12.png: frame size \(9, 14\) differs"):
        read_frame_folder(tmp_path)
    # frame 12 is alone in the last chunk of 4: the size is carried across chunks
    with pytest.raises(DataError, match=r"frame12.png: frame size \(9, 14\) differs from \(10, 14\) of frame0\.png"):  # fmt: skip
        list(iter_frames(tmp_path, chunk=4))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no"):
        list_frames(tmp_path / "empty")
    with pytest.raises(DataError, match="indices must be in"):
        read_frame_folder(tmp_path, [13])


def test_davis_frame_folder() -> None:
    if not DAVIS.is_dir():
        pytest.skip(f"{DAVIS} not present")
    x = read_frame_folder(DAVIS, [0, 49])
    assert x.shape == (2, 480, 854, 3)
    ref = np.asarray(Image.open(DAVIS / "00049.jpg").convert("RGB"))
    assert np.abs(x[1].numpy().astype(int) - ref.astype(int)).mean() < 1.0  # two JPEG decoders


def test_to_clip() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(2, 2, 3, 3)
    c = to_clip(x.contiguous())
    assert c.shape == (2, 3, 2, 3) and c.dtype == torch.float32
    assert torch.allclose(c[0, :, 0, 1], torch.tensor([0.0, 0.2, 1.0]))
    with pytest.raises(ShapeError, match="uint8"):
        to_clip(torch.zeros(2, 4, 4, 3))
