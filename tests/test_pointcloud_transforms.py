"""Point-cloud transforms and farthest-point sampling: invariants, determinism, a brute-force
FPS reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from visrep.data.pointcloud.sampling import farthest_point_sample, gather_points
from visrep.data.pointcloud.transforms import (
    ComposePoints,
    FixedSize,
    Jitter,
    NormalizeUnitSphere,
    PointDropout,
    RandomRotateUp,
    RandomScale,
    RandomTranslate,
)
from visrep.errors import ConfigError, ShapeError


def _sample(n: int = 200, d: int = 5, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(n, d, generator=g) * 3 + 2
    return {"points": pts, "point_labels": torch.arange(n), "label": 4, "meta": {"file": "x"}}


def _gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


RANDOM = [
    RandomRotateUp(),
    Jitter(),
    RandomScale(),
    RandomTranslate(),
    PointDropout(),
    FixedSize(64),
    FixedSize(300),
]


def test_normalize_unit_sphere_centroid_and_radius():
    s = _sample()
    out = NormalizeUnitSphere()(s)
    xyz = out["points"][:, :3].double()
    assert torch.allclose(xyz.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-6)
    assert xyz.norm(dim=1).max().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(out["points"][:, 3:], s["points"][:, 3:])
    # one point, or all points coinciding: only centred
    one = NormalizeUnitSphere()({"points": torch.tensor([[1.0, 2.0, 3.0]])})
    assert one["points"].tolist() == [[0.0, 0.0, 0.0]]
    # the transform is the batched function on one cloud; an empty cloud stays empty
    from visrep.data.pointcloud.modelnet import normalize_unit_sphere

    assert torch.equal(out["points"], normalize_unit_sphere(s["points"][None])[0])
    empty = NormalizeUnitSphere()({"points": torch.zeros(0, 4)})["points"]
    assert empty.shape == (0, 4)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_rotate_up_is_a_proper_rotation_about_the_axis(axis):
    s = _sample()
    out = RandomRotateUp(axis=axis)(s, _gen())
    a, b = s["points"][:, :3].double(), out["points"][:, :3].double()
    assert torch.allclose(a.norm(dim=1), b.norm(dim=1), atol=1e-5)
    assert torch.equal(out["points"][:, axis], s["points"][:, axis])
    assert torch.equal(out["points"][:, 3:], s["points"][:, 3:])
    # recover the linear map by least squares: orthogonal, determinant +1, not the identity
    rot = torch.linalg.lstsq(a, b).solution.T
    assert torch.allclose(rot @ rot.T, torch.eye(3, dtype=torch.float64), atol=1e-5)
    assert torch.linalg.det(rot).item() == pytest.approx(1.0, abs=1e-5)
    assert not torch.allclose(rot, torch.eye(3, dtype=torch.float64), atol=1e-3)


def test_rotate_up_angles_are_uniform():
    s = {"points": torch.tensor([[1.0, 0.0, 0.0]])}
    g = _gen(3)
    angles = [
        math.atan2(*RandomRotateUp(axis=2)(s, g)["points"][0, [1, 0]].tolist()) for _ in range(2000)
    ]
    hist, _ = np.histogram(np.mod(angles, 2 * np.pi), bins=8, range=(0, 2 * np.pi))
    assert hist.min() > 180 and hist.max() < 320  # 250 expected per bin


def test_jitter_is_clipped_and_has_sigma():
    s = {"points": torch.zeros(20000, 4)}
    out = Jitter(sigma=0.01, clip=0.05)(s, _gen())["points"]
    assert out[:, :3].abs().max().item() <= 0.05 + 1e-7
    assert out[:, :3].std().item() == pytest.approx(0.01, rel=0.03)
    assert torch.equal(out[:, 3], s["points"][:, 3])
    wide = Jitter(sigma=1.0, clip=0.05)(s, _gen())["points"][:, :3]
    assert wide.abs().max().item() == pytest.approx(0.05)
    assert (wide.abs() == 0.05).float().mean().item() > 0.9


def test_scale_and_translate_ranges():
    s = {"points": torch.ones(10, 3)}
    for seed in range(20):
        sc = RandomScale(0.8, 1.25)(s, _gen(seed))["points"]
        assert ((sc >= 0.8) & (sc < 1.25)).all()
        assert torch.equal(sc, sc[:1].expand_as(sc))  # one factor per axis for all points
        iso = RandomScale(0.8, 1.25, anisotropic=False)(s, _gen(seed))["points"]
        assert torch.allclose(iso, iso[0, 0].expand_as(iso))
        tr = RandomTranslate(0.1)(s, _gen(seed))["points"] - 1
        assert (tr.abs() <= 0.1 + 1e-7).all() and torch.equal(tr, tr[:1].expand_as(tr))
    aniso = RandomScale(0.8, 1.25)(s, _gen(0))["points"][0]
    assert len(set(aniso.tolist())) == 3


def test_point_dropout_replaces_with_first_point_and_keeps_labels_aligned():
    s = _sample(500)
    out = PointDropout(max_ratio=0.875)(s, _gen(2))
    p, lab = out["points"], out["point_labels"]
    assert p.shape == s["points"].shape
    assert torch.equal(p, s["points"][lab])  # labels index the rows that were kept
    dropped = lab != torch.arange(500)
    assert dropped.any() and (lab[dropped] == 0).all()
    assert torch.equal(PointDropout(0.0)(s, _gen())["points"], s["points"])


def test_fixed_size_subsample_and_pad():
    s = _sample(100)
    sub = FixedSize(40)(s, _gen())
    lab = sub["point_labels"]
    assert sub["points"].shape == (40, 5) and len(set(lab.tolist())) == 40
    assert torch.equal(sub["points"], s["points"][lab])
    pad = FixedSize(250)(s, _gen())
    lab = pad["point_labels"]
    assert pad["points"].shape == (250, 5)
    assert torch.equal(lab[:100], torch.arange(100)) and torch.equal(
        pad["points"], s["points"][lab]
    )
    fps = FixedSize(30, method="fps")(s, _gen())
    assert torch.equal(fps["point_labels"], farthest_point_sample(s["points"], 30))


@pytest.mark.parametrize("t", RANDOM, ids=lambda t: type(t).__name__)
def test_same_seed_same_output_and_input_untouched(t):
    s = _sample()
    before = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
    a, b = t(s, _gen(5)), t(s, _gen(5))
    assert torch.equal(a["points"], b["points"]) and torch.equal(
        a["point_labels"], b["point_labels"]
    )
    assert a is not s and a["label"] == 4 and a["meta"] == {"file": "x"}
    assert torch.equal(s["points"], before["points"]) and torch.equal(
        s["point_labels"], before["point_labels"]
    )
    c = t(s, _gen(6))
    assert not torch.equal(a["points"], c["points"])
    torch.manual_seed(9)
    d = t(s)  # None: the global generator
    torch.manual_seed(9)
    assert torch.equal(d["points"], t(s)["points"])


def test_compose_applies_in_order_with_one_generator():
    s = _sample()
    ts = (NormalizeUnitSphere(), RandomRotateUp(), Jitter(), FixedSize(50))
    g1, g2 = _gen(7), _gen(7)
    ref = s
    for t in ts:
        ref = t(ref, g1)
    out = ComposePoints(ts)(s, g2)
    assert torch.equal(out["points"], ref["points"]) and torch.equal(
        out["point_labels"], ref["point_labels"]
    )
    assert ComposePoints([Jitter()]).transforms == (Jitter(),)


@pytest.mark.parametrize(
    ("make", "word"),
    [
        (lambda: RandomRotateUp(axis=3), "axis"),
        (lambda: Jitter(sigma=-1), "sigma"),
        (lambda: Jitter(clip=float("nan")), "clip"),
        (lambda: RandomScale(low=1.5, high=1.0), "low <= high"),
        (lambda: RandomScale(low=0.0), "low"),
        (lambda: RandomTranslate(max_shift=-0.1), "max_shift"),
        (lambda: PointDropout(max_ratio=1.0), "max_ratio"),
        (lambda: FixedSize(0), "num_points"),
        (lambda: FixedSize(10, method="grid"), "method"),
        (lambda: ComposePoints((1,)), "callables"),
    ],
)
def test_bad_options_raise_config_error(make, word):
    with pytest.raises(ConfigError, match=word) as e:
        make()
    assert "\n" not in str(e.value)


def test_bad_samples_raise():
    with pytest.raises(ShapeError, match="points"):
        Jitter()({"points": torch.zeros(5, 2)})
    with pytest.raises(ShapeError, match="points"):
        Jitter()({"image": torch.zeros(5, 3)})
    with pytest.raises(ShapeError, match="point_labels"):
        FixedSize(3)({"points": torch.zeros(5, 3), "point_labels": torch.zeros(4)})
    with pytest.raises(ConfigError, match="generator"):
        Jitter()({"points": torch.zeros(5, 3)}, np.random.default_rng(0))


# -- farthest-point sampling ---------------------------------------------------------------------
def _fps_reference(xyz: np.ndarray, k: int, start: int = 0) -> list[int]:
    """Brute force from the definition: each pick maximises the distance to the nearest pick."""
    chosen = [start]
    for _ in range(k - 1):
        best, best_d = -1, -1.0
        for i in range(len(xyz)):
            if i in chosen:
                continue
            d = min(float(((xyz[i] - xyz[c]) ** 2).sum()) for c in chosen)
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


def test_fps_matches_brute_force_reference():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(4, 60, 3, generator=g, dtype=torch.float64)
    starts = torch.tensor([0, 5, 17, 59])
    idx = farthest_point_sample(pts, 20, start=starts)
    assert idx.dtype == torch.int64 and idx.shape == (4, 20)
    for b in range(4):
        assert idx[b].tolist() == _fps_reference(pts[b].numpy(), 20, int(starts[b]))
        assert idx[b, 0] == starts[b] and len(set(idx[b].tolist())) == 20


def test_fps_batched_equals_per_sample_and_uses_xyz_only():
    pts = torch.rand(3, 100, 6, generator=_gen(1))
    idx = farthest_point_sample(pts, 32)
    for b in range(3):
        assert torch.equal(idx[b], farthest_point_sample(pts[b], 32))
        assert torch.equal(idx[b], farthest_point_sample(pts[b, :, :3], 32))
    assert torch.equal(gather_points(pts, idx)[1], pts[1][idx[1]])


def test_fps_distinct_with_duplicates_and_k_equals_n():
    pts = torch.zeros(10, 3)
    pts[5:] = 1.0
    idx = farthest_point_sample(pts, 10, start=3)
    assert sorted(idx.tolist()) == list(range(10)) and idx[0] == 3 and idx[1] == 5


def test_fps_covers_space_better_than_random():
    pts = torch.rand(2000, 3, generator=_gen(2))
    sel = pts[farthest_point_sample(pts, 64)]
    rnd = pts[torch.randperm(2000, generator=_gen(3))[:64]]

    def coverage(s):  # largest distance from any point to its nearest selected point
        return torch.cdist(pts, s).min(dim=1).values.max().item()

    assert coverage(sel) < 0.75 * coverage(rnd)


def test_fps_bad_input():
    with pytest.raises(ShapeError):
        farthest_point_sample(torch.zeros(5, 2), 2)
    with pytest.raises(ConfigError, match="k must be"):
        farthest_point_sample(torch.zeros(5, 3), 6)
    with pytest.raises(ConfigError, match="start"):
        farthest_point_sample(torch.zeros(2, 5, 3), 2, start=torch.tensor([0, 5]))
    with pytest.raises(ConfigError, match="start"):
        farthest_point_sample(torch.zeros(2, 5, 3), 2, start=torch.tensor([0, 1, 2]))
    assert farthest_point_sample(torch.rand(3, 5, 3), 2, start=4)[:, 0].tolist() == [4, 4, 4]
