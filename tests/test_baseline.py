"""The shallow-baseline core (visrep.analysis.baseline, baseline_features): k-NN parity with
scikit-learn, the linear classifier, scores, polar features, cached encoders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from visrep.analysis.baseline import (
    SplitInputs,
    classification_scores,
    fit_classifier,
    knn_predict,
    pixel_features,
    polar_features,
    subsample_split,
)
from visrep.analysis.baseline_features import FeatureOptions, make_featurizer
from visrep.errors import ConfigError, ShapeError
from visrep.plots.baseline import decision_grid, plot_decision_boundary, plot_decision_function


@pytest.mark.parametrize("k", [1, 3, 4, 7])
def test_knn_equals_scikit_learn(k: int) -> None:
    g = torch.Generator().manual_seed(k)
    x = torch.randn(300, 12, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (300,), generator=g)
    q = torch.randn(157, 12, generator=g, dtype=torch.float64)
    ref = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(x.numpy(), y.numpy())
    ours = knn_predict(x, y, q, k=k, num_classes=5, chunk=40)  # several chunks
    assert torch.equal(ours, torch.from_numpy(ref.predict(q.numpy())))


def test_knn_vote_ties_go_to_the_smallest_class() -> None:
    x = torch.tensor([[0.0], [1.0], [-1.5], [2.0]])
    y = torch.tensor([3, 1, 1, 3])
    # k=2 from 0.4: neighbours 0.0 (class 3) and 1.0 (class 1): a tie -> class 1
    assert knn_predict(x, y, torch.tensor([[0.4]]), k=2).tolist() == [1]
    with pytest.raises(ConfigError, match="--k must be in"):
        knn_predict(x, y, torch.tensor([[0.4]]), k=5)


@pytest.mark.parametrize("loss", ["hinge", "log"])
def test_linear_separates_separable_data_and_picks_alpha_on_val(loss: str) -> None:
    g = torch.Generator().manual_seed(0)
    # binary: a random hyperplane with a margin; 3 classes: blobs far apart (one-vs-rest
    # separable, as SGDClassifier needs)
    w = torch.randn(6, generator=g)
    x2 = torch.randn(800, 6, generator=g)
    x2 = x2[(x2 @ w).abs() > 0.5]
    y2 = (x2 @ w > 0).long()
    centres = 6 * torch.eye(3, 6)
    y3 = torch.arange(600) % 3
    x3 = centres[y3] + torch.randn(600, 6, generator=g)
    for x, y, n in ((x2, y2, 2), (x3, y3, 3)):
        tr, va, te = slice(0, 300), slice(300, 400), slice(400, None)
        f = fit_classifier("linear", x[tr], y[tr], x[va], y[va], n, loss=loss, alphas=[1e-4, 10.0])
        assert f.chosen == {"alpha": 1e-4, "loss": loss} and set(f.grid) == {"0.0001", "10"}
        assert f.grid["10"] < 1.0  # too much regularisation: a worse val accuracy, not chosen
        assert f.val_acc == 1.0 and torch.equal(f.model.predict(x[te]), y[te])


def test_scores_by_hand() -> None:
    s = classification_scores(torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 2, 0]), 4)
    assert s["confusion_matrix"] == [[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    assert s["acc"] == pytest.approx(4 / 6)
    assert s["acc_per_class"][:3] == [0.5, 0.5, 1.0] and math.isnan(s["acc_per_class"][3])
    assert s["acc_mean_class"] == pytest.approx(2 / 3)  # class 3 is never true: not counted


def test_polar_and_pixel_features() -> None:
    pts = torch.tensor([[3.0, 4.0], [0.0, -2.0], [-1.0, -1e-9]])
    p = polar_features(pts[:, :, None, None])  # 2-channel 1 x 1 images, as RingsDataModule
    assert torch.allclose(p[:, 0], torch.tensor([5.0, 2.0, 1.0]))
    assert torch.allclose(p[:, 1], torch.tensor([math.atan2(4, 3), -math.pi / 2, -math.pi]))
    with pytest.raises(ShapeError, match="--features polar needs 2-D point"):
        polar_features(torch.zeros(4, 1, 8, 8))
    assert pixel_features(torch.rand(5, 3, 4, 4)).shape == (5, 48)


def test_subsample_is_seeded_and_stratified() -> None:
    s = SplitInputs(torch.arange(100.0)[:, None], torch.arange(100) % 4, "point")
    a, b = subsample_split(s, 20, seed=1), subsample_split(s, 20, seed=1)
    assert torch.equal(a.inputs, b.inputs) and (torch.bincount(a.labels) == 5).all()
    assert not torch.equal(a.inputs, subsample_split(s, 20, seed=2).inputs)
    assert subsample_split(s, 500) is s


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 5 EM steps
def test_sift_encoders_are_cached_by_options_and_data(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    train = SplitInputs(torch.rand(12, 1, 24, 24, generator=g), torch.arange(12) % 2, "image")
    opts = FeatureOptions(words=6, components=3, pca_dim=8, gmm_iter=5, step=8)
    for kind, dim in (("bovw", 6), ("fisher", 2 * 8 * 3)):
        first = make_featurizer(kind, opts).fit(train, tmp_path)
        assert first.cached is False and first.cache_file.is_file()
        z = first.transform(train.inputs[:5])
        again = make_featurizer(kind, opts).fit(train, tmp_path)
        assert again.cached is True and again.fit_time_s == 0.0
        assert z.shape == (5, dim) and torch.allclose(again.transform(train.inputs[:5]), z)
        other = make_featurizer(kind, FeatureOptions(**{**vars(opts), "seed": 1}))
        assert other.fit(train, tmp_path).cached is False  # other options: refitted
        batch = make_featurizer(kind, FeatureOptions(**{**vars(opts), "batch_size": 3}))
        assert batch.fit(train, tmp_path).cached is True  # the batch size changes no fit
        moved = SplitInputs(train.inputs.flip(-1), train.labels, "image")
        assert make_featurizer(kind, opts).fit(moved, tmp_path).cached is False  # other data
    assert len(list(tmp_path.glob("*.npz"))) == 6
    with pytest.raises(ShapeError, match="--features bovw needs grey or RGB images"):
        make_featurizer("bovw", opts).fit(
            SplitInputs(torch.rand(4, 2, 1, 1), train.labels[:4], "image")
        )


def test_bad_feature_options() -> None:
    with pytest.raises(ConfigError, match="--features must be"):
        make_featurizer("hog")
    with pytest.raises(ConfigError, match="--words must be >= 1"):
        FeatureOptions(words=0)
    with pytest.raises(ConfigError, match="--classifier must be knn or linear"):
        fit_classifier(
            "svm", torch.zeros(2, 1), torch.zeros(2), torch.zeros(1, 1), torch.zeros(1), 2
        )  # type: ignore[arg-type]


def test_decision_grid_and_plot(tmp_path) -> None:
    pts = np.array([[-1.0, 0.0], [1.0, 2.0]])
    xs, ys, grid = decision_grid(pts, steps=5, margin=0.0)
    assert xs.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0] and ys.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert (
        grid.shape == (25, 2) and grid[1].tolist() == [-0.5, 0.0] and grid[5].tolist() == [-1, 0.5]
    )
    seen = []

    def predict(p: np.ndarray) -> np.ndarray:
        seen.append(p)
        return (p[:, 0] > 0).astype(int)

    path = plot_decision_function(
        predict, pts, np.array([0, 1]), ["a", "b"], tmp_path / "b.png", steps=7
    )
    assert path.stat().st_size > 1000 and seen[0].shape == (49, 2)
    with pytest.raises(ShapeError):
        regions = np.zeros((2, 5), int)
        plot_decision_boundary(xs, ys, regions, pts, [0, 1], "ab", tmp_path / "c.png")  # fmt: skip
