"""Moving digits: the closed-form motion, the renderer, the motion classes and their data module."""

from __future__ import annotations

import dataclasses
import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
import yaml
from scipy import stats

from visrep.data.samples import FLOW, LABEL, META, VIDEO
from visrep.data.video import moving_digits
from visrep.data.video.motion import MovingDigitsDataModule, MovingDigitsForecastDataModule
from visrep.data.video.moving_digits import (
    GeneratedClips,
    load_digit_pool,
    motion_classes,
    render_digits,
    sample_seed,
    trajectories,
)
from visrep.errors import ConfigError, DataError


def _stepwise(p0: float, v: float, L: float, n: int, bounce: bool) -> list[float]:
    """A reference simulation: one step at a time, reflecting at the walls or wrapping."""
    if bounce and p0 >= L:  # the unfolded coordinate's second half runs backwards
        x, v = 2 * L - p0, -v
    else:
        x = p0
    out = [x]
    for _ in range(n - 1):
        x += v
        if bounce:
            if x > L:
                x, v = 2 * L - x, -v
            elif x < 0:
                x, v = -x, -v
        else:
            x %= L
        out.append(x)
    return out


@pytest.mark.parametrize("bounce", [True, False])
def test_trajectories_match_a_stepwise_simulation(bounce: bool) -> None:
    g = torch.Generator().manual_seed(0)
    L = torch.tensor([18.0, 11.0], dtype=torch.float64)
    start = torch.rand(20, 2, generator=g, dtype=torch.float64) * L * (2 if bounce else 1)
    velocity = (torch.rand(20, 2, generator=g, dtype=torch.float64) - 0.5) * 8
    pos = trajectories(start, velocity, 30, L, bounce)
    assert pos.shape == (20, 30, 2)
    for i in range(20):
        for a in range(2):
            ref = _stepwise(float(start[i, a]), float(velocity[i, a]), float(L[a]), 30, bounce)
            np.testing.assert_allclose(pos[i, :, a].numpy(), ref, atol=1e-9)


def test_render_pastes_rotates_and_overlaps_by_max() -> None:
    sprite = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    pos = torch.tensor([[[[3.0, 5.0]]]])
    frame = render_digits(sprite, pos, None, (16, 20))[0, 0]
    assert frame.shape == (16, 20)
    torch.testing.assert_close(frame[5:11, 3:9], sprite[0, 0])
    assert frame.sum() == pytest.approx(float(sprite.sum()), rel=1e-5)  # nothing else drawn
    for quarter in (1, 2, 3):  # theta > 0 turns counter-clockwise on screen, like rot90
        ang = torch.full((1, 1, 1), quarter * math.pi / 2)
        rot = render_digits(sprite, pos, ang, (16, 20))[0, 0, 5:11, 3:9]
        torch.testing.assert_close(rot, torch.rot90(sprite[0, 0], quarter), atol=1e-5, rtol=0)
    two = torch.rand(1, 2, 6, 6, generator=torch.Generator().manual_seed(2))
    both = render_digits(two, torch.tensor([[[[0.0, 0.0]], [[2.0, 1.0]]]]), None, (10, 10))[0, 0]
    a = torch.zeros(10, 10)
    b = torch.zeros(10, 10)
    a[0:6, 0:6], b[1:7, 2:8] = two[0, 0], two[0, 1]
    torch.testing.assert_close(both, torch.maximum(a, b))


def test_render_is_batched_over_clips() -> None:
    g = torch.Generator().manual_seed(3)
    sprites = torch.rand(3, 2, 8, 8, generator=g)
    pos = torch.rand(3, 2, 5, 2, generator=g) * 20
    ang = torch.rand(3, 2, 5, generator=g) * 6
    all_at_once = render_digits(sprites, pos, ang, (28, 30))
    for i in range(3):
        torch.testing.assert_close(
            all_at_once[i],
            render_digits(sprites[i : i + 1], pos[i : i + 1], ang[i : i + 1], (28, 30))[0],
        )


def test_motion_classes_and_bad_factors() -> None:
    names = [c.name for c in motion_classes(("direction", "speed"))]
    assert names == [f"{d}-{s}px" for d in ("right", "down", "left", "up") for s in ("1", "2.5")]
    c8 = motion_classes(("direction", "boundary"), directions=8, boundaries=("wrap", "bounce"))
    assert sum(c.boundary == "bounce" for c in c8) == 3  # horizontal, vertical, diagonal
    rot = motion_classes(("rotation",), rotations=(-10.0, 0.0, 10.0))
    assert [c.name for c in rot] == ["cw10", "still", "ccw10"]
    with pytest.raises(ConfigError, match=r"data\.factors"):
        motion_classes(("colour",))
    with pytest.raises(ConfigError, match=r"data\.speeds"):
        motion_classes(("direction", "speed"), speeds=(2.0,))
    with pytest.raises(ConfigError, match="bounce hides the sign"):
        motion_classes(("direction",), boundaries=("wrap", "bounce"))


def _com(frames: torch.Tensor) -> torch.Tensor:
    """Centre of mass (x, y) of each frame ``(..., H, W)``."""
    h, w = frames.shape[-2:]
    m = frames.sum((-2, -1)).clamp_min(1e-9)
    x = (frames.sum(-2) * torch.arange(w)).sum(-1) / m
    y = (frames.sum(-1) * torch.arange(h)).sum(-1) / m
    return torch.stack((x, y), -1)


def test_motion_is_the_label() -> None:
    """The centre of mass of the rendered digit moves by the class's velocity every frame."""
    dm = MovingDigitsDataModule(train_clips=64, val_clips=0, test_clips=8)
    ds = dm._dataset("train")
    L = torch.tensor([32.0 - 14, 32.0 - 14])
    for i in range(32):
        c = dm.classes[ds[i][LABEL]]
        com = _com(ds.frames(i)[:, 0].double())
        step = torch.remainder(com.diff(dim=0) + L / 2, L) - L / 2  # a wrap jumps by -L
        expected = torch.tensor(c.direction, dtype=torch.float64) * c.speed
        torch.testing.assert_close(step.median(0).values, expected, atol=0.05, rtol=0)


def test_rotation_sense_is_the_label() -> None:
    dm = MovingDigitsDataModule(
        factors=("rotation",),
        speeds=(0.0,),
        rotations=(-30.0, 30.0),
        num_frames=4,
        train_clips=16,
        val_clips=0,
        test_clips=2,
    )
    ds = dm._dataset("train")
    for i in range(8):
        p = ds.params(i)
        clip = ds.frames(i)[:, 0]
        centre = (p.start[0] + 7).tolist()  # a still digit: its box centre, pixels
        errs = {}
        for sense in (-30.0, 30.0):  # torchvision: a positive angle turns counter-clockwise
            turned = TF.rotate(clip[:1][None], sense, TF.InterpolationMode.BILINEAR, center=centre)
            errs[sense] = float((turned[0, 0] - clip[1]).abs().mean())
        truth = dm.classes[p.label].rotation
        assert errs[truth] < 0.3 * errs[-truth], (truth, errs)


def _frame_stats(dm: MovingDigitsDataModule, n: int, frames: tuple[int, ...], leaky: bool = False):
    """Rendered frames ``frames`` of ``n`` training clips, their centres of mass, the labels.

    ``leaky``: start bouncing digits on ``[0, L)`` in their class direction instead of the
    stationary ``[0, 2L)`` of the unfolded coordinate (a generator that WOULD leak the class).
    """
    ds = dm._dataset("train")
    params = [ds.params(i) for i in range(n)]
    if leaky:
        params = [dataclasses.replace(p, start=torch.remainder(p.start, 18.0)) for p in params]
    clips = torch.cat([ds.render(params[lo : lo + 256]) for lo in range(0, n, 256)])
    chosen = clips[:, list(frames)].double()
    return chosen, _com(chosen), torch.tensor([p.label for p in params])


def _ks_min_p(com: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Smallest two-sample KS p-value (class k vs the rest) over the two axes."""
    inside, rest = com[labels == k], com[labels != k]
    return min(stats.ks_2samp(inside[:, a].numpy(), rest[:, a].numpy()).pvalue for a in (0, 1))


def test_a_single_frame_carries_no_class_information() -> None:
    """Per class, a frame's digit position (KS, class vs rest) and the mean frame (z scores
    against the pooled spread) agree with the other classes' within sampling error."""
    dm = MovingDigitsDataModule(train_clips=8 * 150, val_clips=0, test_clips=2)
    frames, com, labels = _frame_stats(dm, 8 * 150, (0, 15))
    for j in range(2):
        overall, spread = frames[:, j].mean(0), frames[:, j].std(0)
        for k in range(8):
            assert _ks_min_p(com[:, j], labels, k) > 1e-3, (j, dm.classes[k].name)
            x = frames[labels == k, j]
            z = (x.mean(0) - overall) / (spread / math.sqrt(len(x))).clamp_min(1e-3)
            assert z.abs().max() < 5.0, (j, dm.classes[k].name, float(z.abs().max()))


def test_bounce_vs_wrap_frames_carry_no_class_information_and_the_test_has_power() -> None:
    dm = MovingDigitsDataModule(
        factors=("direction", "boundary"),
        boundaries=("wrap", "bounce"),
        speeds=(2.0,),
        train_clips=1200,
        val_clips=0,
        test_clips=2,
    )
    _, com, labels = _frame_stats(dm, 1200, (7, 15))
    _, leak, _ = _frame_stats(dm, 1200, (7, 15), leaky=True)
    for j in range(2):
        assert min(_ks_min_p(com[:, j], labels, k) for k in range(6)) > 1e-3
        assert min(_ks_min_p(leak[:, j], labels, k) for k in range(6)) < 1e-6


def test_clips_are_a_function_of_seed_split_index() -> None:
    dm = MovingDigitsDataModule(train_clips=20, val_clips=4, test_clips=4)
    a, b = dm._dataset("train"), dm._dataset("train")
    x5 = a.frames(5)
    _ = [b.frames(i) for i in range(10)]  # another access order
    torch.testing.assert_close(b.frames(5), x5, rtol=0, atol=0)
    assert not torch.equal(a.frames(6), x5)
    assert not torch.equal(dm._dataset("val").frames(3), a.frames(3))
    other = MovingDigitsDataModule(train_clips=20, val_clips=4, test_clips=4, seed=1)
    assert not torch.equal(other._dataset("train").frames(5), x5)
    assert sample_seed(0, "test", 5) != sample_seed(0, "train", 5)


def test_data_module_shapes_spec_and_splits() -> None:
    dm = MovingDigitsDataModule(train_clips=48, val_clips=8, test_clips=8)
    dm.setup()
    spec = dm.spec()
    assert (spec.family, spec.keys, spec.in_chans, spec.image_size) == (
        "video",
        (VIDEO, LABEL),
        1,
        (32, 32),
    )
    assert (spec.num_frames, spec.num_classes, spec.flow_frames) == (16, 8, None)
    assert len(spec.mean) == len(spec.std) == 1 and 0 < spec.mean[0] < spec.std[0]
    batch = next(iter(dm.train_dataloader()))
    assert batch[VIDEO].shape == (48, 16, 1, 32, 32) and batch[VIDEO].dtype == torch.float32
    assert set(batch[LABEL].tolist()) == set(range(8))
    assert torch.equal(torch.bincount(batch[LABEL]), torch.full((8,), 6))
    assert batch[VIDEO].min() >= 0 and batch[VIDEO].max() <= 1
    assert len(batch[META]) == 48 and batch[META][0]["split"] == "train"
    # test clips draw from held-out digits
    assert len(dm.test_set.pool) + len(dm.train_set.dataset.pool) == 1797


def test_flow_comes_with_the_clip() -> None:
    dm = MovingDigitsDataModule(
        factors=("direction",),
        speeds=(1.0,),
        flow=True,
        train_clips=8,
        val_clips=0,
        test_clips=4,
    )
    dm.setup()
    assert dm.spec().flow_frames == 15 and FLOW in dm.spec().keys
    for i in (0, 2):  # class 0 moves right, class 2 left
        s = dm.test_set[i]
        assert s[FLOW].shape == (15, 2, 32, 32)
        ink = s[VIDEO][:-1, 0] > 0.3
        dx = float(s[FLOW][:, 0][ink].mean())
        assert (dx > 0.5) if i == 0 else (dx < -0.5), dx


def test_cache_on_disk_equals_generated(tmp_path) -> None:
    kw = {"train_clips": 300, "val_clips": 4, "test_clips": 4}
    cached = MovingDigitsDataModule(cache_dir=str(tmp_path), **kw)._dataset("train")
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1 and isinstance(cached.array, np.memmap)
    fresh = MovingDigitsDataModule(**kw)._dataset("train")
    for i in (0, 255, 256, 299):
        torch.testing.assert_close(cached.frames(i), fresh.frames(i), rtol=0, atol=0)
    mtime = files[0].stat().st_mtime_ns
    MovingDigitsDataModule(cache_dir=str(tmp_path), **kw)._dataset("train")
    assert files[0].stat().st_mtime_ns == mtime  # read back, not written again


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_digit_sources(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k", 5)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    pool = load_digit_pool(str(tmp_path), "test", 28)
    assert pool.images.shape == (5, 28, 28) and pool.labels.tolist() == [0, 1, 2, 3, 4]
    assert pool.images.max() <= 1 and pool.images.dtype == torch.float32
    np.savez(tmp_path / "x.npz", arr_0=rng.integers(0, 256, (10, 20, 20), dtype=np.uint8))
    train, test = (load_digit_pool(str(tmp_path / "x.npz"), s, 12) for s in ("train", "test"))
    assert (len(train), len(test)) == (8, 2) and train.images.shape[1:] == (12, 12)
    with pytest.raises(DataError, match=r"data\.source"):
        load_digit_pool(str(tmp_path / "nothing"), "train", 14)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"digit_size": 32}, "data.digit_size"),
        ({"num_frames": 1}, "at least 2 frames"),
        ({"num_digits": 0}, "data.num_digits"),
        ({"train_clips": 0}, "data.train_clips"),
        ({"flow_method": "lk"}, "data.flow_method"),
        ({"factors": ("direction", "speed", "speed")}, "data.factors"),
        (
            {"factors": ("boundary",), "boundaries": ("wrap", "bounce"), "speeds": (1.0,)},
            "no bounce or wrap",
        ),
    ],
)
def test_bad_options_raise_config_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        MovingDigitsDataModule(**kwargs)
    assert "\n" not in str(e.value)


def test_flow_cache_equals_computed_flow(tmp_path) -> None:
    kw = {"factors": ("direction",), "speeds": (1.0,), "flow": True, "train_clips": 6}
    cached = MovingDigitsDataModule(cache_dir=str(tmp_path), val_clips=0, test_clips=2, **kw)
    cached.setup()
    assert len(list(tmp_path.glob("*-flow-farneback.npy"))) == 2  # train and test
    fresh = MovingDigitsDataModule(val_clips=0, test_clips=2, **kw)
    fresh.setup()
    for i in range(2):
        a, b = cached.test_set[i][FLOW], fresh.test_set[i][FLOW]
        assert a.dtype == torch.float32 and a.shape == (15, 2, 32, 32)
        torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-3)  # float16 on disk


def test_prepare_data_fills_the_caches_and_setup_only_reads(tmp_path, monkeypatch) -> None:
    # Lightning runs prepare_data on one process; every DDP rank then builds its data module
    # and runs setup, which must only read the files (no rendering, no flow).
    kw = {"factors": ("direction",), "speeds": (1.0,), "flow": True, "train_clips": 6}
    kw |= {"val_clips": 2, "test_clips": 2, "cache_dir": str(tmp_path)}
    MovingDigitsDataModule(**kw).prepare_data()
    files = {f.name: f.stat().st_mtime_ns for f in tmp_path.glob("*.npy")}
    assert len(files) == 6  # frames and flow of train, val, test
    MovingDigitsForecastDataModule(
        train_sequences=2, val_sequences=1, test_sequences=1, cache_dir=str(tmp_path / "f")
    ).prepare_data()
    assert len(list((tmp_path / "f").glob("*.npy"))) == 3

    def no_writing(*args, **kwargs):
        raise AssertionError("setup wrote a cache that prepare_data had written")

    monkeypatch.setattr(GeneratedClips, "render", no_writing)
    monkeypatch.setattr(moving_digits, "compute_flow", no_writing)
    rank = MovingDigitsDataModule(**kw)
    rank.setup()
    s = rank.test_set[1]
    assert s[VIDEO].shape == (16, 1, 32, 32) and s[FLOW].shape == (15, 2, 32, 32)
    assert {f.name: f.stat().st_mtime_ns for f in tmp_path.glob("*.npy")} == files
    MovingDigitsDataModule(**{**kw, "cache_dir": None}).prepare_data()  # nothing to write


def test_an_item_draws_its_clip_parameters_and_renders_once(monkeypatch) -> None:
    kw = {"factors": ("direction",), "speeds": (1.0,), "flow": True, "train_clips": 4}
    ds = MovingDigitsDataModule(**kw, val_clips=0, test_clips=2)._dataset("test")
    calls = {"params": 0, "render": 0}
    params, render = ds.params, ds.render

    def count(name, fn):
        def counted(*args):
            calls[name] += 1
            return fn(*args)

        return counted

    monkeypatch.setattr(ds, "params", count("params", params))
    monkeypatch.setattr(ds, "render", count("render", render))
    s = ds[1]
    assert calls == {"params": 1, "render": 1}  # the flow reads the item's own frames
    torch.testing.assert_close(s[FLOW], moving_digits.compute_flow(s[VIDEO], "farneback"))


CONFIGS = Path(__file__).resolve().parents[1] / "src" / "visrep" / "configs"


def test_motion_configs_share_the_data_and_late_fusion_sees_unwrapped_motion() -> None:
    cfgs = {f.stem: yaml.safe_load(f.read_text()) for f in CONFIGS.glob("motion_*.yaml")}
    assert len(cfgs) >= 10
    extra = {"flow", "flow_method", "cache_dir"}  # what two-stream adds; not the clips
    data = {
        k: {o: v for o, v in c["data"]["init_args"].items() if o not in extra}
        for k, c in cfgs.items()
    }
    assert all(d == data["motion_late_fusion"] for d in data.values())
    assert len({c["trainer"]["max_epochs"] for c in cfgs.values()}) == 1
    # A wrapping digit's position is read mod the free range: the two frames late fusion
    # compares must be close enough for the displacement to be under half of it.
    d = data["motion_late_fusion"]
    free = min(d["image_size"]) - d.get("digit_size", 14)
    gap = cfgs["motion_late_fusion"]["model"]["init_args"]["net"]["init_args"]["frame_gap"]
    assert max(d["speeds"]) * gap < free / 2


KMNIST = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "kmnist"
    / "KMNIST"
    / "kmnist-test-imgs.npz"
)


@pytest.mark.skipif(not KMNIST.is_file(), reason="shared KMNIST absent")
def test_kmnist_npz_as_the_digit_source() -> None:
    train, test = (load_digit_pool(str(KMNIST), s, 20) for s in ("train", "test"))
    assert (len(train), len(test)) == (8000, 2000) and train.images.shape[1:] == (20, 20)
    dm = MovingDigitsDataModule(
        source=str(KMNIST), digit_size=20, train_clips=8, val_clips=0, test_clips=2
    )
    clip = dm._dataset("test")[0][VIDEO]
    assert clip.shape == (16, 1, 32, 32) and float(clip.max()) > 0.5
