"""Pairs with known homographies made from real photographs: the sampler, the rendering, the
labels, SIFT matching, the split by source photograph, the cache, batches and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from visrep.data.correspondence import (
    DEFAULT_OPENCV_SAMPLES,
    INLIERS,
    MATCH_MASK,
    MATCHES,
    HomographyPairsDataModule,
    MatchPair,
    MatchPairDataset,
    PairConfig,
    Photo,
    PhotoSource,
    SiftConfig,
    graf_pair,
    homography_from_corners,
    homography_pair,
    intrinsics_of_size,
    label_inliers,
    load_photo,
    render_pair,
    sample_homography,
    scan_source,
    sift_matches,
    split_photos,
)
from visrep.data.samples import META
from visrep.errors import ConfigError, DataError, ShapeError

cv2 = pytest.importorskip("cv2")
NO_PHOTOMETRY = PairConfig(contrast=0.0, brightness=0.0, gamma=1.0, noise=0.0)


def _apply(H: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = np.concatenate([p, np.ones((len(p), 1))], 1) @ H.T
    return q[:, :2] / q[:, 2:]


@pytest.mark.parametrize("seed", range(5))
def test_the_sampled_homography_maps_the_corners_as_sampled(seed):
    cfg = PairConfig(max_shift=0.2, max_rotation=30.0, scale=(0.7, 1.4))
    H, src, dst = sample_homography(320, 240, cfg, np.random.default_rng(seed))
    assert np.allclose(src, [[0, 0], [320, 0], [320, 240], [0, 240]])
    assert np.allclose(_apply(H, src), dst, atol=1e-9) and H[2, 2] == 1.0
    assert np.allclose(
        H, cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)), atol=1e-4
    )
    # no rotation, no scale: each corner moves by at most max_shift of its side
    plain = PairConfig(max_shift=0.1, max_rotation=0.0, scale=(1.0, 1.0))
    _, src, dst = sample_homography(320, 240, plain, np.random.default_rng(seed))
    assert np.all(np.abs(dst - src) <= [32.0 + 1e-9, 24.0 + 1e-9])


def test_homography_from_corners_is_batched_and_exact():
    g = np.random.default_rng(0)
    src = g.uniform(0, 100, (6, 4, 2))
    dst = src + g.uniform(-10, 10, (6, 4, 2))
    H = homography_from_corners(src, dst)
    assert H.shape == (6, 3, 3)
    for k in range(6):
        assert np.allclose(_apply(H[k], src[k]), dst[k], atol=1e-8)
    with pytest.raises(ShapeError, match=r"must be \(B, 4, 2\)"):
        homography_from_corners(src[:, :3], dst[:, :3])


def test_image2_is_the_photograph_seen_through_h():
    photo = load_photo(Photo("skimage:camera", "g", builtin="skimage", name="camera"))
    im1, im2, H = render_pair(photo, NO_PHOTOMETRY, np.random.default_rng(3))
    assert im1.shape == im2.shape and max(im1.shape) == 320 and im1.dtype == np.uint8
    # pixels of image 2 whose pre-image lies well inside image 1 show the same intensity
    g = np.random.default_rng(0)
    y = g.uniform(0, [im2.shape[1] - 1, im2.shape[0] - 1], (400, 2))
    x = _apply(np.linalg.inv(H), y)
    inside = np.all((x > 2) & (x < [im1.shape[1] - 3, im1.shape[0] - 3]), 1)
    a = cv2.remap(
        im1, x[inside, :1].astype(np.float32), x[inside, 1:].astype(np.float32), cv2.INTER_LINEAR
    )
    b = cv2.remap(
        im2, y[inside, :1].astype(np.float32), y[inside, 1:].astype(np.float32), cv2.INTER_LINEAR
    )
    assert inside.sum() > 100 and np.median(np.abs(a.astype(float) - b.astype(float))) < 4
    # the same generator gives the same pair
    again = render_pair(photo, NO_PHOTOMETRY, np.random.default_rng(3))
    assert np.array_equal(again[1], im2) and np.array_equal(again[2], H)


def test_labels_agree_with_a_direct_computation_and_sift_is_deterministic():
    photo = Photo("skimage:coffee", "g", builtin="skimage", name="coffee")
    pair, _ = homography_pair(
        photo, 0, PairConfig(image_size=200), SiftConfig(max_keypoints=300, ratio=None)
    )
    p = pair.pixels.astype(np.float64)
    direct = (
        np.linalg.norm(
            cv2.perspectiveTransform(p[None, :, :2], pair.geometry)[0] - p[:, 2:], axis=1
        )
        < 3.0
    )
    labels = label_inliers(pair, 3.0, 1e-4)
    assert np.array_equal(labels, direct) and 0 < labels.sum() < len(labels)
    im1, im2, _ = render_pair(
        load_photo(photo), PairConfig(image_size=200), np.random.default_rng(pair.seed)
    )
    m = sift_matches(im1, im2, SiftConfig(max_keypoints=300, ratio=None))
    assert np.array_equal(m, pair.pixels)
    # the ratio test keeps a subset of the nearest-neighbour matches
    r = sift_matches(im1, im2, SiftConfig(max_keypoints=300, ratio=0.8))
    assert 0 < len(r) < len(m) and {tuple(v) for v in r} <= {tuple(v) for v in m}
    # the sample: normalised coordinates, geometry in the same frame
    s = MatchPairDataset([pair])[0]
    K = intrinsics_of_size(*pair.size)
    x = s[MATCHES].double().numpy()
    Hn = s["homography"].double().numpy()
    back = x[:, :2] * K[0, 0] + K[:2, 2]
    assert np.allclose(back, p[:, :2], atol=1e-3) and np.abs(x).max() < 1.6
    err = np.linalg.norm(_apply(Hn, x[:, :2]) - x[:, 2:], axis=1) * K[0, 0]
    assert np.array_equal(
        err[s[INLIERS].numpy()] < 3.0 + 1e-3, np.ones(int(s[INLIERS].sum()), bool)
    )


def _photo_tree(root: Path) -> Path:
    """Two 'sequences' of CamVid-like frames and three single photos (real skimage photos)."""
    names = ["astronaut", "camera", "coffee", "chelsea", "rocket", "brick", "moon"]
    for i, name in enumerate(names):
        img = load_photo(Photo(name, name, builtin="skimage", name=name))
        prefix = "seqA" if i < 2 else "seqB" if i < 4 else f"single{i}"
        folder = root / ("train" if i % 2 else "val")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{prefix}_{i:03d}.png"), img)
    return root


def test_the_split_is_by_source_group_and_seeded(tmp_path):
    root = _photo_tree(tmp_path / "photos")
    photos = scan_source(PhotoSource(root=str(root), pattern="*/*.png", group="prefix", name="cam"))
    assert [p.key for p in photos][:2] == ["cam:train/seqA_001.png", "cam:train/seqB_003.png"]
    groups = {p.key: p.group for p in photos}
    assert groups["cam:val/seqA_000.png"] == groups["cam:train/seqA_001.png"] == "cam:seqA"
    photos += scan_source(PhotoSource(builtin="skimage"))
    split = split_photos(photos, 0.2, 0.2, seed=0)
    assert split == split_photos(photos, 0.2, 0.2, seed=0)
    seen = [{p.group for p in split[s]} for s in ("train", "val", "test")]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert sum(len(v) for v in split.values()) == len(photos)
    assert split != split_photos(photos, 0.2, 0.2, seed=1)
    every = scan_source(PhotoSource(root=str(root), pattern="*/*.png", every=2, limit=3))
    assert len(every) == 3


def test_the_datamodule_yields_padded_batches_and_reads_its_cache(tmp_path, capsys):
    kwargs = dict(
        sources=[PhotoSource(builtin="skimage")],
        pairs_per_photo=1,
        pair=PairConfig(image_size=160),
        sift=SiftConfig(max_keypoints=200),
        cache_dir=str(tmp_path / "cache"),
    )
    dm = HomographyPairsDataModule(**kwargs)
    dm.setup("fit")
    assert "(0 from the cache" in capsys.readouterr().err
    spec = dm.spec()
    assert spec.family == "correspondence" and "homography" in spec.keys and spec.point_dim == 4
    b = next(iter(dm.train_dataloader()))
    B, N = b[MATCH_MASK].shape
    assert b[MATCHES].shape == (B, N, 4) and b[INLIERS].shape == (B, N)
    assert b["homography"].shape == (B, 3, 3) and b["intrinsics"].shape == (B, 2, 3, 3)
    assert len(b[META]) == B and b[MATCH_MASK].any(1).all()
    assert torch.all(b[MATCHES][~b[MATCH_MASK]] == 0) and not b[INLIERS][~b[MATCH_MASK]].any()
    names = dm.sample_names()
    assert len(names) == len(dm.test_set) and all("#0" in n for n in names)
    again = HomographyPairsDataModule(**kwargs)
    again.setup("fit")
    assert "(0 from the cache" not in capsys.readouterr().err
    x, y = dm.test_set[0], again.test_set[0]
    assert torch.equal(x[MATCHES], y[MATCHES]) and torch.equal(x[INLIERS], y[INLIERS])
    im1, im2 = dm.pair_images(0)
    assert max(im1.shape) == 160 and im1.shape == im2.shape


def test_a_truncated_cache_entry_is_regenerated(tmp_path):
    photo = Photo("skimage:coffee", "g", builtin="skimage", name="coffee")
    args = (photo, 0, PairConfig(image_size=128), SiftConfig(max_keypoints=100))
    first, cached = homography_pair(*args, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.npz")
    assert not cached and homography_pair(*args, cache_dir=tmp_path)[1]
    whole = entry.read_bytes()
    entry.write_bytes(whole[: len(whole) // 2])  # a run killed while writing it
    again, cached = homography_pair(*args, cache_dir=tmp_path)
    assert not cached and np.array_equal(again.pixels, first.pixels)
    assert np.array_equal(again.geometry, first.geometry)
    assert entry.read_bytes() == whole and homography_pair(*args, cache_dir=tmp_path)[1]


@pytest.mark.skipif(
    not Path(DEFAULT_OPENCV_SAMPLES, "graf1.png").is_file(), reason="opencv-doc absent"
)
def test_the_real_graf_pair_has_its_true_homography():
    pair = graf_pair(image_size=320, sift=SiftConfig(max_keypoints=500, ratio=0.8))
    assert pair.size == (320, 256) and pair.name == "opencv:graf1-graf3"
    labels = label_inliers(pair, 3.0, 1e-4)
    assert labels.mean() > 0.7  # ratio-test matches of graf1 / graf3 at this size are mostly right
    H, _ = cv2.findHomography(pair.pixels[:, :2], pair.pixels[:, 2:], cv2.RANSAC, 3.0)
    corners = np.array([[0, 0], [319, 0], [319, 255], [0, 255]], np.float64)
    assert np.linalg.norm(_apply(H, corners) - _apply(pair.geometry, corners), axis=1).mean() < 3.0


def test_bad_input_is_one_error_line(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of root or builtin"):
        PhotoSource()
    with pytest.raises(DataError, match=r"photo folder .* does not exist"):
        scan_source(PhotoSource(root=str(tmp_path / "nothing")))
    with pytest.raises(DataError, match="no photographs match"):
        scan_source(PhotoSource(root=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"data.pair.max_shift must be in \[0, 0.5\)"):
        PairConfig(max_shift=0.7)
    with pytest.raises(ConfigError, match=r"data.sift.ratio must be in \(0, 1\]"):
        SiftConfig(ratio=1.5)
    with pytest.raises(ConfigError, match=r"data\.min_matches must be >= 8"):
        HomographyPairsDataModule(min_matches=3)
    K = np.eye(3)
    bad = MatchPair("bad", np.zeros((5, 3), np.float32), np.eye(3), "homography", K, K, (10, 10))
    with pytest.raises(ShapeError, match=r"pair 'bad': matches must be \(N, 4\), got \(5, 3\)"):
        MatchPairDataset([bad])[0]
    with pytest.raises(ShapeError, match="grey uint8"):
        sift_matches(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))


def test_the_motorcycle_pair_is_an_essential_pair_with_its_calibration():
    from visrep.data.correspondence.stereo import motorcycle_pair
    from visrep.models.correspondence.geometry import (
        recover_pose,
        rotation_error_deg,
        translation_error_deg,
        weighted_eight_point,
    )

    pair = motorcycle_pair(SiftConfig(max_keypoints=600, ratio=0.8))
    assert pair.kind == "essential" and pair.size == (741, 500)
    s = MatchPairDataset([pair])[0]
    x, lab = s[MATCHES].double(), s[INLIERS]
    # labelled by the true disparity: on the same image row (normalised y' = y), and fewer than
    # the epipolar test would accept (it takes any match along the row)
    assert 0.5 < lab.float().mean() < 0.9
    assert float((x[lab, 1] - x[lab, 3]).abs().max()) < 2.5 / 994.978
    pair.labels = None
    assert label_inliers(pair, 3.0, 1e-4).sum() > lab.sum()
    # the eight-point algorithm on the labelled inliers gives the calibrated pose: R = I,
    # t = (-1, 0, 0), with every labelled inlier in front of both cameras
    E = weighted_eight_point(x[:, :2], x[:, 2:], lab.double())
    R, t, n = recover_pose(E, x[:, :2], x[:, 2:], lab.double())
    assert float(rotation_error_deg(R, torch.eye(3, dtype=torch.float64))) < 1
    assert float(translation_error_deg(t, torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64))) < 5
    assert int(n) == int(lab.sum())


STEREO = Path(__file__).resolve().parents[2] / "shared" / "data" / "stereo" / "opencv-samples"


@pytest.mark.skipif(not (STEREO / "left01.jpg").is_file(), reason="shared stereo data absent")
def test_the_chessboard_rig_calibration_puts_the_corners_on_their_epipolar_lines():
    from visrep.data.correspondence.stereo import stereo_calibration
    from visrep.models.correspondence.geometry import (
        essential_from_pose,
        symmetric_epipolar_distance,
    )

    cal = stereo_calibration(STEREO)
    assert float(cal["rms"]) < 1.0 and abs(cal["T"][0]) > 10 * np.abs(cal["T"][1:]).max()
    E = essential_from_pose(torch.as_tensor(cal["R"]), torch.as_tensor(cal["T"]))
    im1 = cv2.imread(str(STEREO / "left03.jpg"), cv2.IMREAD_GRAYSCALE)
    im2 = cv2.imread(str(STEREO / "right03.jpg"), cv2.IMREAD_GRAYSCALE)
    c1 = cv2.findChessboardCorners(im1, (9, 6))[1]
    c2 = cv2.findChessboardCorners(im2, (9, 6))[1]
    x1 = cv2.undistortPoints(c1.astype(np.float64), cal["K1"], cal["D1"])[:, 0]
    x2 = cv2.undistortPoints(c2.astype(np.float64), cal["K2"], cal["D2"])[:, 0]
    d = symmetric_epipolar_distance(torch.as_tensor(x1)[None], torch.as_tensor(x2)[None], E)
    # about a pixel in each image (focal ~535 px): 2 (1 / 535)^2 = 7e-6
    assert float(d.median()) < 2e-5


@pytest.mark.skipif(not (STEREO / "left01.jpg").is_file(), reason="shared stereo data absent")
def test_the_chessboard_stereo_pairs_carry_the_calibrated_pose_and_epipolar_labels():
    from visrep.data.correspondence.stereo import chessboard_stereo_pairs, stereo_calibration
    from visrep.models.correspondence.geometry import (
        essential_from_pose,
        recover_pose,
        rotation_error_deg,
        symmetric_epipolar_distance,
        translation_error_deg,
        weighted_eight_point,
    )

    sift = SiftConfig(max_keypoints=400, ratio=0.8)
    cal = stereo_calibration(STEREO)
    assert float(cal["rms"]) < 0.6  # px (measured 0.482)
    pairs = chessboard_stereo_pairs(STEREO, sift)
    assert [p.name for p in pairs][:2] == ["opencv:stereo01", "opencv:stereo02"]
    assert len(pairs) == 13 and all(p.kind == "essential" and p.size == (640, 480) for p in pairs)
    R, T = cal["R"], cal["T"]
    E = essential_from_pose(torch.as_tensor(R), torch.as_tensor(T))
    pair = pairs[2]  # left03 / right03
    assert np.allclose(pair.geometry, (E / E.norm()).numpy(), atol=1e-9)
    # the matches are undistorted: K^-1 pixels = cv2.undistortPoints of the raw SIFT matches
    im1 = cv2.imread(str(STEREO / "left03.jpg"), cv2.IMREAD_GRAYSCALE)
    im2 = cv2.imread(str(STEREO / "right03.jpg"), cv2.IMREAD_GRAYSCALE)
    raw = sift_matches(im1, im2, sift).astype(np.float64)
    s = MatchPairDataset([pair])[0]
    x = s[MATCHES].double()
    for k, K, D in ((0, cal["K1"], cal["D1"]), (2, cal["K2"], cal["D2"])):
        want = cv2.undistortPoints(raw[:, None, k : k + 2], K, D)[:, 0]
        assert np.allclose(x[:, k : k + 2].numpy(), want, atol=1e-5)
    # the labels: squared symmetric epipolar distance under the calibrated E below 1e-4
    d = symmetric_epipolar_distance(x[None, :, :2], x[None, :, 2:], E)[0]
    lab = s[INLIERS]
    assert torch.equal(lab, d < 1e-4) and 0.3 < float(lab.float().mean()) < 1.0
    # the pose key is the calibration's, and the labelled inliers give it back
    pose = s["pose"].double()
    assert torch.allclose(pose[:, :3], torch.as_tensor(R), atol=1e-6)
    assert torch.allclose(pose[:, 3], torch.as_tensor(T / np.linalg.norm(T)), atol=1e-6)
    E8 = weighted_eight_point(x[:, :2], x[:, 2:], lab.double())
    R8, t8, _ = recover_pose(E8, x[:, :2], x[:, 2:], lab.double())
    # (measured 0.42 and 1.51 degrees on this pair)
    assert float(rotation_error_deg(R8, pose[:, :3])) < 1
    assert float(translation_error_deg(t8, pose[:, 3], sign_invariant=True)) < 5
