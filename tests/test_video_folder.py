"""VideoFolderDataModule (visrep.data.video.folder) and the list readers (visrep.data.video.lists)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from tests.conftest import SHARED_DATA
from visrep.data.base import LoaderConfig, SplitConfig
from visrep.data.samples import collate
from visrep.data.video.folder import (
    ClipSampling,
    VideoClipDataset,
    VideoFolderDataModule,
    grouped_split,
)
from visrep.data.video.io import write_video
from visrep.data.video.lists import read_class_index, read_kinetics_csv, read_ucf_list
from visrep.errors import ConfigError, DataError

CLIPS = SHARED_DATA / "video-clips"


def _frames(t: int, seed: int, h: int = 36, w: int = 48) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8: a random grey texture sliding 1 px a frame to the right."""
    g = torch.Generator().manual_seed(seed)
    # grey: random colour per pixel would not survive YUV 4:2:0 chroma subsampling
    base = torch.randint(0, 256, (h, w + t, 1), generator=g, dtype=torch.uint8).expand(-1, -1, 3)
    return torch.stack([base[:, t - i : t - i + w] for i in range(t)])


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 3 videos: two video files (mp4, avi) and one frame folder each."""
    root = tmp_path_factory.mktemp("ucf")
    for c, name in enumerate(("Archery", "Biking", "Diving")):
        d = root / name
        write_video(d / f"v_{name}_g01_c01.mp4", _frames(20, 10 * c), 25.0, gop=6, quality=8)
        write_video(
            d / f"v_{name}_g02_c01.avi", _frames(24, 10 * c + 1), 25.0, "mpeg4", gop=6, quality=2
        )
        folder = d / f"v_{name}_g03_c01"
        folder.mkdir()
        for i, f in enumerate(_frames(18, 10 * c + 2).numpy()):
            Image.fromarray(f).save(folder / f"{i:05d}.png")
    return root


def _dm(root: Path, **kw) -> VideoFolderDataModule:
    opts = {"clip_len": 8, "frame_stride": 2, "image_size": (24, 32), "test_clips": 3}
    opts["loader"] = LoaderConfig(batch_size=2)
    opts["split"] = SplitConfig(val_fraction=0.2, test_fraction=0.34, seed=0)
    return VideoFolderDataModule(str(root), **{**opts, **kw})


def test_tree_datamodule(tree: Path) -> None:
    dm = _dm(tree)
    dm.setup()
    spec = dm.spec()
    assert spec.family == "video" and spec.keys == ("video", "label")
    assert spec.class_names == ("Archery", "Biking", "Diving") and spec.num_classes == 3
    assert spec.num_frames == 8 and spec.image_size == (24, 32) and spec.in_chans == 3
    assert spec.flow_frames is None and len(spec.mean) == len(spec.std) == 3
    assert 0.4 < spec.mean[0] < 0.6 and 0.1 < spec.std[0] < 0.35  # noise, smoothed by the codec
    sizes = len(dm.train_set), len(dm.val_set), len(dm.test_set)
    assert sum(sizes) == 9 and min(sizes) >= 1
    s = dm.train_set[0]
    assert isinstance(s["video"], tv_tensors.Video) and s["video"].shape == (8, 3, 24, 32)
    assert s["video"].dtype == torch.float32 and 0 <= float(s["video"].min()) <= float(s["video"].max()) <= 1  # fmt: skip
    assert set(s["meta"]) >= {"file", "start", "starts"} and isinstance(s["label"], int)
    t = dm.test_set[0]
    assert t["video"].shape == (3, 8, 3, 24, 32)  # dense test clips
    first = t["meta"]["starts"]
    assert first[0] == 0 and first[-1] == t["meta"]["frames"] - 15  # span 15 at stride 2
    batch = collate([dm.test_set[i] for i in range(len(dm.test_set))])
    assert batch["video"].shape == (len(dm.test_set), 3, 8, 3, 24, 32)
    assert dm.val_set[0]["video"].shape == (8, 3, 24, 32)  # one (centre) validation clip
    loader = dm.train_dataloader()
    b = next(iter(loader))
    assert b["video"].shape == (2, 8, 3, 24, 32) and b["label"].shape == (2,)


def test_wide_crop_fits(tree: Path) -> None:
    """A crop wider than the short-side resize allows: frames are scaled up to fit it."""
    src = tree / "Diving" / "v_Diving_g01_c01.mp4"  # 36 x 48
    for train in (True, False):
        ds = VideoClipDataset(
            [(src, 2)], ClipSampling(clip_len=4, image_size=(24, 60), train=train)
        )
        assert ds[0]["video"].shape == (4, 3, 24, 60)
    assert ds._size(36, 48) == [45, 60] and ds._size(480, 854) == [34, 60]


def test_clip_frames_are_the_decoded_frames(tree: Path) -> None:
    """The sampled clip holds frames ``start, start + stride, ...`` of the file, in order."""
    src = tree / "Biking" / "v_Biking_g02_c01.avi"
    ds = VideoClipDataset(
        [(src, 1)],
        ClipSampling(
            clip_len=5, stride=3, mode="random", image_size=(36, 48), resize=36, train=False
        ),
    )
    x = _frames(24, 11).permute(0, 3, 1, 2).float() / 255
    for _ in range(3):
        s = ds[0]
        start = s["meta"]["start"]
        want = x[start : start + 13 : 3, :, 0:36, 0:48]
        assert (s["video"] - want).abs().mean() < 0.06  # lossy MPEG-4, but these very frames
        other = (
            x[(start + 1) : start + 14 : 3] if start + 13 < 24 else x[start - 1 : start + 12 : 3]
        )
        assert (s["video"] - other).abs().mean() > 0.1


def _varying_speed_folder(root: Path, t: int = 14, h: int = 36, w: int = 48) -> list[int]:
    """A frame folder of a smooth grey texture moving a different distance each frame; returns
    its x position per frame (pixels)."""
    speeds = [1, 2, 0, 1, 3, 0, 2, 1, 0, 2, 1, 0, 2][: t - 1]  # speeds[i] != speeds[i + 2]
    pos = np.concatenate([[0], np.cumsum(speeds)]).tolist()
    g = torch.Generator().manual_seed(5)
    coarse = torch.rand(1, 1, h // 4, (w + pos[-1]) // 4 + 2, generator=g)
    tex = torch.nn.functional.interpolate(coarse, scale_factor=4, mode="bicubic")[0, 0]
    tex = (tex.clamp(0, 1) * 255).round().to(torch.uint8)
    root.mkdir(parents=True)
    for i, x in enumerate(pos):
        frame = tex[:h, pos[-1] - x : pos[-1] - x + w]  # content moves right by pos[i]
        Image.fromarray(frame[..., None].expand(-1, -1, 3).numpy()).save(root / f"{i:05d}.png")
    return pos


def test_flow_cache_equals_flow_of_the_clip(tmp_path: Path) -> None:
    """The cached flow of a clip (indexed from the video's cache) equals the flow computed from
    the clip's own frames, field by field, with the texture moving a different distance each
    frame, at stride 2: a cache read one frame off, or at the wrong gap, fails."""
    src = tmp_path / "cls" / "v_Moving_g01_c01"
    pos = _varying_speed_folder(src)
    for mode, k in (("uniform", 1), ("dense", 3), ("random", 4)):
        sampling = ClipSampling(
            clip_len=4, stride=2, mode=mode, num_clips=k, image_size=(32, 44), resize=36,
            train=False, flow=True,
        )  # fmt: skip
        cached = VideoClipDataset([(src, 0)], replace(sampling, cache_dir=str(tmp_path / "c")))
        plain = VideoClipDataset([(src, 0)], sampling)
        torch.manual_seed(7)
        a = cached[0]
        torch.manual_seed(7)
        b = plain[0]
        assert a["meta"]["starts"] == b["meta"]["starts"]
        fa, fb = a["flow"].reshape(k, 3, 2, 32, 44), b["flow"].reshape(k, 3, 2, 32, 44)
        inner = (slice(None), slice(None), slice(None), slice(6, -6), slice(6, -6))
        assert (fa[inner] - fb[inner]).abs().max() < 0.2
        for j, start in enumerate(a["meta"]["starts"]):  # and both are the true displacement
            true = torch.tensor([pos[start + 2 * i + 2] - pos[start + 2 * i] for i in range(3)])
            dx = fa[j, :, 0, 6:-6, 6:-6].reshape(3, -1).median(-1).values
            assert torch.allclose(dx, true.float(), atol=0.2), (start, dx, true)
            assert fa[j, :, 1, 6:-6, 6:-6].abs().median() < 0.2
    assert len(list((tmp_path / "c").glob("*.npy"))) == 1  # one entry per video and stride


def test_flow_and_cache(tree: Path, tmp_path: Path) -> None:
    dm = _dm(tree, flow=True, cache_dir=str(tmp_path / "flow"), train_clips="uniform", flip=False)
    dm.setup()
    assert dm.spec().keys == ("video", "label", "flow") and dm.spec().flow_frames == 7
    s = dm.train_set[0]
    assert s["flow"].shape == (7, 2, 24, 32) and type(s["flow"]) is torch.Tensor
    # the texture slides +1 px a frame; stride 2 and 36 x 48 frames resized to 27 x 36: 1.5 px
    assert float(s["flow"][:, 0].median()) == pytest.approx(2 * 36 / 48, abs=0.2)
    assert abs(float(s["flow"][:, 1].median())) < 0.2
    assert len(list((tmp_path / "flow").glob("*.npy"))) == 1
    t = dm.test_set[0]
    assert t["flow"].shape == (3, 7, 2, 24, 32)
    assert len(list((tmp_path / "flow").glob("*.npy"))) == 2  # one entry per video


def test_ucf_lists(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "classInd.txt").write_text("1 Archery\n2 Biking\n3 Diving\n")
    (tmp_path / "trainlist01.txt").write_text(
        "".join(f"{c}/v_{c}_g02_c01.avi {i}\n" for i, c in enumerate(("Archery", "Biking", "Diving"), 1))
        + "".join(f"{c}/v_{c}_g03_c01.avi {i}\n" for i, c in enumerate(("Archery", "Biking", "Diving"), 1))
    )  # fmt: skip
    (tmp_path / "testlist01.txt").write_text(
        "".join(f"{c}/v_{c}_g01_c01.mp4\n" for c in ("Archery", "Biking", "Diving"))
    )
    dm = _dm(
        tree,
        train_list=str(tmp_path / "trainlist01.txt"),
        test_list=str(tmp_path / "testlist01.txt"),
    )
    dm.setup()
    assert dm.class_names == ["Archery", "Biking", "Diving"]
    assert len(dm.test_set) == 3 and len(dm.train_set) + len(dm.val_set) == 6
    assert [Path(f).name for f, _ in dm.test_set.entries] == [f"v_{c}_g01_c01.mp4" for c in dm.class_names]  # fmt: skip
    assert [c for _, c in dm.test_set.entries] == [0, 1, 2]
    # the listed v_*_g03_c01.avi files are folders of their extracted frames
    folders = [f for f, _ in dm.train_set.dataset.entries if f.is_dir()]
    assert sorted(f.name for f in folders) == [f"v_{c}_g03_c01" for c in dm.class_names]
    (tmp_path / "bad.txt").write_text(
        "Archery/v_Archery_g09_c01.avi 1\nArchery/v_Archery_g02_c01.avi 1\n"
    )
    with pytest.raises(
        DataError, match=r"1 listed videos are not under .*v_Archery_g09_c01\.avi.*skip_missing"
    ):
        read_ucf_list(tmp_path / "bad.txt", tree, ["Archery"])
    assert len(read_ucf_list(tmp_path / "bad.txt", tree, ["Archery"], skip_missing=True)) == 1
    (tmp_path / "idx.txt").write_text("1 Archery\n3 Biking\n")
    with pytest.raises(DataError, match=r"class indices must be 1\.\.2"):
        read_class_index(tmp_path / "idx.txt")


def test_kinetics_csv(tmp_path: Path) -> None:
    root = tmp_path / "kinetics"
    write_video(root / "train" / "arm wrestling" / "abc_000010_000020.mp4", _frames(12, 0), 30.0)
    write_video(root / "train" / "abseiling" / "xyz_000001_000011.mp4", _frames(12, 1), 30.0)
    csv = tmp_path / "train.csv"
    csv.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "arm wrestling,abc,10,20,train\nabseiling,xyz,1,11,train\nabseiling,gone,5,15,train\n"
    )
    with pytest.raises(DataError, match="1 listed videos are not under"):
        read_kinetics_csv(csv, root)
    names, entries = read_kinetics_csv(csv, root, skip_missing=True)
    assert names == ["abseiling", "arm wrestling"]
    assert [(p.name, c) for p, c in entries] == [("abc_000010_000020.mp4", 1), ("xyz_000001_000011.mp4", 0)]  # fmt: skip
    split = SplitConfig(val_fraction=0.0, test_fraction=0.5)
    dm = _dm(root, clip_len=4, frame_stride=1, train_list=str(csv), skip_missing=True, split=split)
    dm.setup()
    assert dm.class_names == ["abseiling", "arm wrestling"] and len(dm.train_set) == 1
    assert dm.test_set[0]["video"].shape == (3, 4, 3, 24, 32)
    (tmp_path / "bad.csv").write_text("name,id\nx,y\n")
    with pytest.raises(DataError, match="expected a CSV with columns"):
        read_kinetics_csv(tmp_path / "bad.csv", root)


def test_target_fps(tree: Path) -> None:
    src = tree / "Archery" / "v_Archery_g02_c01.avi"  # 24 frames at 25 fps
    s = ClipSampling(clip_len=4, stride=1, target_fps=12.5, mode="uniform", image_size=(24, 32), train=False)  # fmt: skip
    ds = VideoClipDataset([(src, 0)], s)
    sample = ds[0]
    assert sample["meta"]["frames"] == 12 and sample["meta"]["start"] % 2 == 0
    folder = VideoClipDataset([(tree / "Archery" / "v_Archery_g03_c01", 0)], s)
    with pytest.raises(ConfigError, match=r"needs data\.folder_fps"):
        folder[0]


def test_errors(tree: Path, tmp_path: Path) -> None:
    long = _dm(tree, clip_len=10, frame_stride=2)  # span 19: too long for the 18-frame folders
    with pytest.raises(
        DataError,
        match=r"spans 19 frames, but 3 of the 9 videos have fewer: \S+v_Archery_g03_c01 \(18 frames\)",
    ):
        long.setup()  # one error at setup, not one per item in the loader workers
    with pytest.raises(ConfigError, match=r"data\.clip_len must be >= 1"):
        _dm(tree, clip_len=0)
    with pytest.raises(ConfigError, match=r"data\.train_clips"):
        _dm(tree, train_clips="dense")
    with pytest.raises(ConfigError, match=r"data\.test_list needs data\.train_list"):
        _dm(tree, test_list="t.txt")
    if not hasattr(__import__("cv2"), "optflow"):
        with pytest.raises(ConfigError, match="opencv-contrib"):
            _dm(tree, flow=True, flow_method="tvl1")
    with pytest.raises(DataError, match="has no videos"):
        _dm(tmp_path).setup()
    bad = tmp_path / "bad" / "cls"
    bad.mkdir(parents=True)
    (bad / "broken.mp4").write_bytes(b"\x00" * 4096)
    (bad / "ok.mp4").write_bytes((tree / "Archery" / "v_Archery_g01_c01.mp4").read_bytes())
    ds = VideoClipDataset([(bad / "broken.mp4", 0)], ClipSampling(clip_len=2, image_size=(8, 8)))
    with pytest.raises(DataError, match=r"broken\.mp4"):
        ds[0]


def test_real_clips_as_a_tree(tmp_path: Path) -> None:
    files = {"arm": CLIPS / "mmaction2" / "demo" / "demo.mp4", "eyes": CLIPS / "mmaction2" / "tests" / "data" / "test.avi"}  # fmt: skip
    if not all(f.is_file() for f in files.values()):
        pytest.skip("shared video clips not present")
    for c, f in files.items():
        (tmp_path / c).mkdir()
        (tmp_path / c / f.name).symlink_to(f)
    ds = VideoClipDataset(
        [(tmp_path / c / f.name, i) for i, (c, f) in enumerate(files.items())],
        ClipSampling(
            clip_len=16, stride=2, mode="dense", num_clips=2, image_size=(112, 112), train=False
        ),
    )
    for i in range(2):
        s = ds[i]
        assert s["video"].shape == (2, 16, 3, 112, 112) and np.isfinite(s["video"].numpy()).all()


def test_grouped_split_keeps_groups_whole() -> None:
    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(4), 30)  # 4 classes x 6 groups x 5 clips
    groups = np.repeat(np.arange(24), 5)
    perm = rng.permutation(120)
    targets, groups = targets[perm], groups[perm]
    keep, held = grouped_split(targets, groups, 0.2, seed=3)
    assert np.intersect1d(groups[keep], groups[held]).size == 0  # no group on both sides
    assert len(keep) + len(held) == 120 and len(held) == 20  # 6 clips a class: 1 group (5)
    assert np.bincount(targets[held], minlength=4).tolist() == [5, 5, 5, 5]  # stratified
    again = grouped_split(targets, groups, 0.2, seed=3)
    assert np.array_equal(again[1], held) and not np.array_equal(grouped_split(targets, groups, 0.2, 4)[1], held)  # fmt: skip
    # one group per class: held out regardless of class, still whole groups
    keep, held = grouped_split(np.arange(6).repeat(2), np.arange(6).repeat(2), 0.3, seed=0)
    assert len(held) == 4 and np.intersect1d(keep // 2, held // 2).size == 0
    with pytest.raises(
        ConfigError, match=r"data\.split 0\.5 holds out 1 of the 2 samples in 1 recording groups"
    ):
        grouped_split(np.zeros(2, np.int64), np.zeros(2, np.int64), 0.5, 0)


def test_ucf_names_split_by_recording_group(tmp_path: Path) -> None:
    """UCF101 clips ``v_<C>_gNN_cMM`` of one group never straddle train / val / test."""
    for c in ("Archery", "Biking"):
        for g in range(1, 6):
            for k in range(1, 4):
                d = tmp_path / c / f"v_{c}_g{g:02d}_c{k:02d}"
                d.mkdir(parents=True)
                for i in range(3):
                    Image.fromarray(np.full((8, 8, 3), 40 * g + k, np.uint8)).save(d / f"{i}.png")
    dm = _dm(tmp_path, clip_len=2, frame_stride=1, image_size=(8, 8), stats_videos=2,
             split=SplitConfig(val_fraction=0.25, test_fraction=0.2, seed=1))  # fmt: skip
    dm.setup()
    entries = dm.train_set.dataset.entries
    part = {}
    for name, ds in (("train", dm.train_set), ("val", dm.val_set), ("test", dm.test_set)):
        keys = {(entries[i][1], entries[i][0].name.split("_c")[0]) for i in ds.indices}
        part[name] = keys
        assert {c for c, _ in keys} == {0, 1}  # every class on every side
    assert not (part["train"] & part["val"]) and not (part["train"] & part["test"])
    assert not (part["val"] & part["test"])
    assert sum(len(ds) for ds in (dm.train_set, dm.val_set, dm.test_set)) == 30
