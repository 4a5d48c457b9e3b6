"""Evaluation of generated samples (visrep.tasks.gan_metrics): FID / KID with a visrep digits
classifier as the feature map (parity with scipy and a direct MMD, self-distance, monotone in
noise), the real-vs-real floor (held-out images against the rest, checked directly), one-line
errors, and the mode-coverage and neighbour measures on analytic cases."""

from __future__ import annotations

import itertools
import math
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from scipy import linalg
from torchmetrics.image.fid import FrechetInceptionDistance

from visrep.data import DigitsDataModule, LoaderConfig, mixture_modes
from visrep.errors import ConfigError, ShapeError
from visrep.tasks.classification import ClassificationTask
from visrep.tasks.gan_metrics import (
    FeatureExtractor,
    GenerativeMetrics,
    batched,
    class_histogram_metrics,
    holdout_split,
    load_feature_extractor,
    mode_coverage_2d,
    nearest_training_images,
    real_floor,
)
from visrep.tasks.optim import OptimConfig

OPTION = "model.features"


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """A small CNN trained for 2 epochs on scikit-learn's digits (about 2 s on one thread), its
    checkpoint, and the 360 test images (1 x 8 x 8 in [0, 1])."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    L.seed_everything(0)
    dm = DigitsDataModule(loader=LoaderConfig(batch_size=64))
    task = ClassificationTask(
        backbone={"class_path": "small_cnn", "init_args": {"channels": [8, 16]}},
        optim=OptimConfig(optimizer="adam", lr=1e-2, weight_decay=0.0),
    )
    root = tmp_path_factory.mktemp("digits")
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        default_root_dir=root,
    )
    trainer.fit(task, dm)
    ckpt = root / "digits.ckpt"
    trainer.save_checkpoint(ckpt)
    images = torch.cat([b["image"] for b in dm.test_dataloader()])
    yield ckpt, images
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def extractor(digits) -> FeatureExtractor:
    return load_feature_extractor(digits[0], 1, (8, 8))


def _noisy(x: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


def _fid_scipy(fr: np.ndarray, fg: np.ndarray) -> float:
    """FID from its definition (Heusel et al. 2017) with scipy's matrix square root."""
    mu1, mu2 = fr.mean(0), fg.mean(0)
    s1, s2 = np.cov(fr, rowvar=False), np.cov(fg, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Binkowski et al. 2018's unbiased MMD^2 with the kernel (x.y / d + 1)^3, all samples."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    m = len(x)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    off = lambda kk: (kk.sum() - kk.diagonal().sum()) / (m * (m - 1))  # noqa: E731
    return float(off(kxx) + off(kyy) - 2 * kxy.mean())


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(digits, extractor):
    real = digits[1]
    metrics = GenerativeMetrics(extractor, kid_subsets=20, kid_subset_size=300)
    metrics.update_real(real)
    metrics.update_fake(real)
    same = metrics.compute()
    scale = float(extractor(real).var(0).sum())  # Tr(S): the size FID values take here
    assert abs(same["fid"]) < 1e-4 * scale
    # KID of a set with itself is below 0, not 0: its subsets share images, and the unbiased
    # estimator assumes independent sets (the real-vs-real floor uses disjoint halves)
    assert same["kid"] < 0
    fids, kids = [same["fid"]], [same["kid"]]
    for sigma in (0.05, 0.1, 0.2, 0.4):
        metrics.reset()  # forgets the generated images, keeps the real ones
        metrics.update_fake(_noisy(real, sigma))
        out = metrics.compute()
        fids.append(out["fid"])
        kids.append(out["kid"])
    assert all(a < b for a, b in itertools.pairwise(fids)), fids
    assert all(a < b for a, b in itertools.pairwise(kids)), kids
    assert fids[1] > 1e-3 * scale  # a visible change for the smallest noise


def test_fid_and_kid_equal_their_definitions(digits, extractor):
    real, fake = digits[1][:200], _noisy(digits[1][:200], 0.2)
    fr, fg = extractor(real).double(), extractor(fake).double()
    metrics = GenerativeMetrics(extractor, kid_subsets=1, kid_subset_size=200)  # all samples
    metrics.update_real(real[:120])  # in two batches: the sums accumulate
    metrics.update_real(real[120:])
    metrics.update_fake(fake)
    out = metrics.compute()
    assert out["fid"] == pytest.approx(_fid_scipy(fr.numpy(), fg.numpy()), rel=1e-4)
    assert out["kid"] == pytest.approx(_mmd2_unbiased(fr, fg), rel=1e-4)
    assert out["kid_std"] == 0.0


def test_fid_and_kid_match_torch_fidelity(digits, extractor):
    """Parity with torch-fidelity (a test-only reference) on the same features: its FID from
    feature statistics, its KID with one subset of every sample (the unbiased MMD^2 does not
    depend on the order its subset draw gives)."""
    tf_fid = pytest.importorskip("torch_fidelity.metric_fid")
    tf_kid = pytest.importorskip("torch_fidelity.metric_kid")
    real, fake = digits[1][:300], _noisy(digits[1][:300], 0.15, seed=3)
    metrics = GenerativeMetrics(extractor, kid_subsets=1, kid_subset_size=300)
    metrics.update_real(real)
    metrics.update_fake(fake)
    out = metrics.compute()
    fr, fg = extractor(real).double().cpu(), extractor(fake).double().cpu()
    want_fid = tf_fid.fid_statistics_to_metric(
        tf_fid.fid_features_to_statistics(fr), tf_fid.fid_features_to_statistics(fg), False
    )["frechet_inception_distance"]
    want_kid = tf_kid.kid_features_to_metric(
        fr, fg, kid_subsets=1, kid_subset_size=300, kid_degree=3, kid_gamma=None, kid_coef0=1,
        rng_seed=0, verbose=False,
    )["kernel_inception_distance_mean"]  # fmt: skip
    assert out["fid"] == pytest.approx(want_fid, rel=1e-4)
    assert out["kid"] == pytest.approx(want_kid, rel=1e-4)


def test_extractor_is_a_torchmetrics_feature_and_frozen(digits, extractor):
    real, fake = digits[1], _noisy(digits[1], 0.1)
    direct = FrechetInceptionDistance(feature=extractor, normalize=True)
    direct.update(real, real=True)
    direct.update(fake, real=False)
    ours = GenerativeMetrics(extractor, kid_subset_size=50)
    ours.update_real(real)
    ours.update_fake(fake)
    assert float(direct.compute()) == pytest.approx(ours.compute()["fid"], rel=1e-5)
    # frozen and outside the module tree: no weights in a holder's state dict, train() ignored
    assert extractor.num_features == 16 and extractor.num_classes == 10
    assert not list(ours.state_dict()) and not list(ours.parameters())
    ours.train()
    assert not extractor.net.training and not extractor.training
    assert all(not p.requires_grad for p in extractor.net.parameters())
    net_dtype = lambda: next(extractor.net.parameters()).dtype  # noqa: E731
    ours.double()  # .to() / .double() reach the held classifier
    assert net_dtype() == torch.float64
    assert extractor(real[:4]).dtype == torch.float32
    ours.float()
    assert net_dtype() == torch.float32
    assert extractor.classify(real).shape == (360, 10)


def test_classifier_accuracy_makes_it_a_meaningful_extractor(digits, extractor):
    dm = DigitsDataModule()
    dm.setup()
    labels = torch.cat([b["label"] for b in dm.test_dataloader()])
    acc = (extractor.classify(digits[1]).argmax(1) == labels).float().mean()
    assert acc > 0.8  # 2 epochs on digits; chance is 0.1


def test_kid_is_reproducible_and_leaves_the_global_generator_alone(digits, extractor):
    metrics = GenerativeMetrics(extractor, kid_subsets=10, kid_subset_size=50, seed=3)
    metrics.update_real(digits[1][:180])
    metrics.update_fake(_noisy(digits[1][180:], 0.1))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = metrics.compute()
    assert torch.equal(torch.get_rng_state(), state)
    metrics.kid._computed = None  # force a second draw of the subsets
    assert metrics.compute() == a


def test_real_floor_is_between_self_and_noise(digits, extractor):
    real = digits[1]
    floor = real_floor(extractor, real, kid_subsets=10, kid_subset_size=100)
    assert floor == real_floor(extractor, real, kid_subsets=10, kid_subset_size=100)
    metrics = GenerativeMetrics(extractor, kid_subsets=10, kid_subset_size=100)
    metrics.update_real(real[:180])
    metrics.update_fake(_noisy(real[180:], 0.4))
    noisy = metrics.compute()
    assert 0 < floor["fid"] < 0.2 * noisy["fid"]
    # disjoint sets: KID's expectation is 0
    assert floor["kid"] < 0.2 * noisy["kid"] and abs(floor["kid"]) < 2 * floor["kid_std"]
    with pytest.raises(ConfigError, match="the 1 others must both be >= 2"):
        real_floor(extractor, real, n=359)


def test_the_floor_is_the_held_out_images_against_the_rest(digits, extractor):
    """A perfect generator's score at the test's sizes: FID(R, H) for H held-out real images
    and the rest R, from the definition (scipy), and KID of one subset of all of H."""
    real = digits[1]
    held, rest = holdout_split(360, 120, seed=0)
    assert (len(held), len(rest)) == (120, 240)
    assert sorted(held.tolist() + rest.tolist()) == list(range(360))
    assert torch.equal(holdout_split(360, 120, seed=0)[0], held)  # seeded
    assert not torch.equal(holdout_split(360, 120, seed=1)[0], held)
    floor = real_floor(extractor, real, n=120, kid_subsets=1, kid_subset_size=120)
    fr, fh = extractor(real[rest]).double(), extractor(real[held]).double()
    assert floor["fid"] == pytest.approx(_fid_scipy(fr.numpy(), fh.numpy()), rel=1e-4)
    # KID's one subset: all 120 held-out images and the 120 of R that torchmetrics draws first
    # from the seeded global generator (the MMD does not depend on the order within a set)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        first = torch.randperm(240)[:120]
    assert floor["kid"] == pytest.approx(_mmd2_unbiased(fr[first], fh), rel=1e-4)


def test_kid_subset_larger_than_the_samples_is_one_config_error(digits, extractor):
    metrics = GenerativeMetrics(extractor, kid_subset_size=50)
    metrics.update_real(digits[1][:60])
    metrics.update_fake(digits[1][:20])
    with pytest.raises(ConfigError) as e:
        metrics.compute()
    msg = str(e.value)
    assert "model.kid_subset_size 50" in msg and "20 generated images" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="kid_subset_size must be an integer >= 2"):
        GenerativeMetrics(extractor, kid_subset_size=1)
    metrics.reset(real=True)  # forgets the real images too
    assert (metrics.num_real, metrics.num_fake) == (0, 0)
    metrics.update_real(digits[1][:60])
    metrics.update_fake(digits[1][:1])
    with pytest.raises(ConfigError, match="at least 2 real and 2 generated images, got 60 and 1"):
        metrics.compute()


def test_bad_images_are_refused(digits, extractor):
    metrics = GenerativeMetrics(extractor, kid_subset_size=10)
    with pytest.raises(ShapeError, match=r"in \[0, 1\]"):
        metrics.update_fake(digits[1][:4] * 2 - 1)  # a tanh output not mapped back
    with pytest.raises(ShapeError, match=r"\(B, 1, 8, 8\), got \(4, 3, 8, 8\)"):
        metrics.update_fake(digits[1][:4].expand(-1, 3, -1, -1))
    with pytest.raises(ShapeError, match=r"\(B, C, H, W\)"):
        extractor(digits[1][0])


def test_extractor_that_does_not_fit_the_images_is_one_config_error(digits, tmp_path):
    ckpt = digits[0]
    for chans, size, seen in ((3, (8, 8), "3x8x8"), (1, (16, 16), "1x16x16")):
        with pytest.raises(ConfigError) as e:
            load_feature_extractor(ckpt, chans, size)
        msg = str(e.value)
        assert msg.startswith(OPTION) and "reads 1x8x8" in msg and seen in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=f"^{OPTION} .* neither a visrep run directory"):
        load_feature_extractor(tmp_path / "nope", 1, (8, 8))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"no checkpoints/best\.ckpt or last\.ckpt"):
        load_feature_extractor(run, 1, (8, 8))
    shutil.copy(ckpt, run / "checkpoints" / "last.ckpt")  # a run dir: best, else last
    ext = load_feature_extractor(run, 1, (8, 8), option="model.eval.features")
    assert ext.in_chans == 1 and ext.image_size == (8, 8) and "last.ckpt" in ext.source


def test_a_run_that_is_not_a_classifier_is_refused(digits, monkeypatch):
    monkeypatch.setattr(ClassificationTask, "class_scores", False)
    with pytest.raises(ConfigError, match="is a ClassificationTask run, not an image classifier"):
        load_feature_extractor(digits[0], 1, (8, 8))


def test_class_histogram_metrics_by_hand():
    # p_gen = (3/4, 1/4, 0), p_data = (1/2, 1/4, 1/4): KL = 3/4 ln(3/2)
    out = class_histogram_metrics(torch.tensor([0, 0, 0, 1]), torch.tensor([2.0, 1.0, 1.0]))
    assert out["classes_hit"] == 2
    assert out["class_kl"] == pytest.approx(0.75 * math.log(1.5), abs=1e-8)
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 9.0]])  # scores: argmax -> (0, 2)
    out = class_histogram_metrics(logits, torch.tensor([0.25, 0.5, 0.25]))
    assert out["classes_hit"] == 2
    assert out["class_kl"] == pytest.approx(2 * 0.5 * math.log(0.5 / 0.25), abs=1e-8)
    uniform = class_histogram_metrics(torch.arange(10).repeat(3), torch.ones(10))
    assert uniform == {"classes_hit": 10.0, "class_kl": 0.0}
    with pytest.raises(ShapeError, match=r"classes must be in \[0, 3\)"):
        class_histogram_metrics(torch.tensor([3]), torch.ones(3))


def test_mode_coverage_2d_analytic_cases():
    modes, std = mixture_modes("ring8"), 0.02
    at_modes = modes.repeat(5, 1)
    out = mode_coverage_2d(at_modes, modes, std)
    assert out == {"modes": 8.0, "modes_frequent": 8.0, "high_quality": 1.0, "mode_kl": 0.0}
    far = mode_coverage_2d(modes * 100, modes, std)
    assert far["modes"] == 0 and far["high_quality"] == 0 and far["modes_frequent"] == 0
    half = mode_coverage_2d(modes[:4].repeat(3, 1), modes, std)
    assert half["modes"] == 4 and half["high_quality"] == 1.0
    assert half["mode_kl"] == pytest.approx(math.log(2), abs=1e-8)  # uniform on 4 of 8
    # the high-quality radius is n_std * std: 2.9 std in, 3.1 std out
    direction = modes[0] / modes[0].norm()
    edge = torch.stack([modes[0] + 2.9 * std * direction, modes[0] + 3.1 * std * direction])
    assert mode_coverage_2d(edge, modes, std)["high_quality"] == 0.5
    assert mode_coverage_2d(edge, modes, std, n_std=4.0)["high_quality"] == 1.0
    # a mode with one high-quality sample in 200 is captured but not frequent (1% needed)
    mixed = torch.cat([modes[:1].repeat(199, 1), modes[1:2]])
    out = mode_coverage_2d(mixed, modes, std)
    assert out["modes"] == 2 and out["modes_frequent"] == 1
    grid = mixture_modes("grid25")
    assert mode_coverage_2d(grid, grid, 0.05)["modes"] == 25
    with pytest.raises(ShapeError):
        mode_coverage_2d(torch.zeros(4, 3), modes, std)


def test_mode_coverage_is_vectorised_on_many_samples():
    modes = mixture_modes("grid25")
    g = torch.Generator().manual_seed(0)
    x = modes[torch.randint(25, (200_000,), generator=g)] + 0.05 * torch.randn(
        200_000, 2, generator=g
    )
    out = mode_coverage_2d(x, modes, 0.05)
    # within 3 std in 2-d: P(chi_2 <= 3) = 1 - exp(-9 / 2) = 0.98889
    assert out["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=2e-3)
    assert out["modes"] == 25 and out["mode_kl"] < 1e-3


def test_nearest_training_images_finds_exact_copies(digits, extractor):
    train = digits[1]
    picks = torch.tensor([7, 300, 41, 123])
    idx = nearest_training_images(train[picks], train, k=3)  # pixels
    assert idx.shape == (4, 3) and idx[:, 0].tolist() == picks.tolist()
    idx_f = nearest_training_images(train[picks], train, features=extractor, k=2, batch_size=64)
    feats = batched(extractor, train)
    d = (feats[idx_f[:, 0]] - feats[picks]).norm(dim=1)
    assert torch.allclose(d, torch.zeros(4), atol=1e-4)  # a copy (or a feature twin) first
    with pytest.raises(ShapeError, match="must share"):
        nearest_training_images(train[:2], train.expand(-1, 3, -1, -1), k=1)
