"""The shallow-baseline core (visrep.analysis.baseline, baseline_features): k-NN parity with
scikit-learn, the linear classifier, scores, polar features, cached encoders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from visrep.analysis.baseline import (
    LinearClassifier,
    SplitInputs,
    classification_scores,
    fit_classifier,
    knn_predict,
    pixel_features,
    polar_features,
    subsample_split,
)
from visrep.analysis.baseline_features import FeatureOptions, data_differences, make_featurizer
from visrep.errors import ConfigError, DataError, ShapeError
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
        f = fit_classifier("linear", x[tr], y[tr], x[va], y[va], n, loss=loss, alphas=[1e-3, 10.0])
        assert f.chosen == {"alpha": 1e-3, "loss": loss} and f.edge is None
        # 1e-3 was the grid's low edge: 1e-4 tried too, and no better (ties: the larger alpha)
        assert set(f.grid) == {"0.0001", "0.001", "10"} and f.grid["0.0001"] == 1.0
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
    with pytest.raises(ConfigError, match="--classifier must be knn, linear or histogram"):
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


def test_knn_distance_ties_go_to_the_lowest_training_index() -> None:
    # integer points: many exactly equal distances, so which of the tied neighbours is kept
    # decides the vote; scikit-learn's brute force keeps the lowest training indices too
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (200, 2), generator=g).double()
    y = torch.randint(0, 4, (200,), generator=g)
    q = torch.randint(0, 3, (60, 2), generator=g).double()
    for k in (1, 2, 3, 5, 8):
        ref = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(x.numpy(), y.numpy())
        assert torch.equal(knn_predict(x, y, q, k, 4, chunk=7), torch.from_numpy(ref.predict(q)))
    # by hand: three training points at distance 1 from 0; k=1 keeps index 0, k=2 indices 0, 1
    xs, ys = torch.tensor([[1.0], [-1.0], [1.0]]), torch.tensor([2, 0, 0])
    assert knn_predict(xs, ys, torch.tensor([[0.0]]), k=1).tolist() == [2]
    ys = torch.tensor([0, 2, 2])  # k=2: indices 0 and 1, a vote tie 0:1 -> class 0; not 2, 2
    assert knn_predict(xs, ys, torch.tensor([[0.0]]), k=2).tolist() == [0]


def _blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(300) % 3
    return 3 * torch.eye(3, 5)[y] + torch.randn(300, 5, generator=g), y


def test_alpha_grid_is_extended_at_its_edge() -> None:
    x, y = _blobs()
    tr, va = slice(0, 200), slice(200, None)
    # val acc: 0.94 at alpha 0.1 and 1, 0.54 at 10: the best of [1, 10] is its low edge, so
    # 0.1 is tried too; it ties with 1 (the larger alpha kept), 1 is no longer at the edge
    f = fit_classifier("linear", x[tr], y[tr], x[va], y[va], 3, alphas=[1.0, 10.0])
    assert list(f.grid) == ["0.1", "1", "10"] and f.grid["0.1"] == f.grid["1"] > f.grid["10"]
    assert f.chosen["alpha"] == 1.0 and f.edge is None
    # a single alpha is a fixed choice: no extension
    one = fit_classifier("linear", x[tr], y[tr], x[va], y[va], 3, alphas=[1e3])
    assert list(one.grid) == ["1000"] and one.edge is None


def test_alpha_at_the_low_edge_after_three_extra_fits(monkeypatch) -> None:
    from visrep.analysis import baseline as module

    class Fake:  # val accuracy rises as alpha falls: the low edge every time
        def __init__(self, loss, alpha, seed, max_iter, standardize) -> None:
            self.share = -math.log10(alpha) / 10

        def fit(self, x, y):
            return self

        def predict(self, x):  # right where x[:, 1] < share, wrong elsewhere
            return torch.where(x[:, 1] < self.share, x[:, 0], 1 - x[:, 0]).long()

    monkeypatch.setattr(module, "LinearClassifier", Fake)
    val = torch.stack([torch.arange(100) % 2, torch.linspace(0, 1, 100)], 1)
    f = fit_classifier("linear", val, val[:, 0].long(), val, val[:, 0].long(), 2,
                       alphas=[1e-2, 1e-1])  # fmt: skip
    assert list(f.grid) == ["1e-05", "0.0001", "0.001", "0.01", "0.1"]
    assert f.chosen["alpha"] == 1e-5 and f.edge == "low" and f.val_acc == f.grid["1e-05"] == 0.5


def test_alpha_at_the_high_edge_after_extension() -> None:
    # labels independent of the features: every alpha gives the same val accuracy (all one
    # class predicted once alpha is large); ties go to the larger alpha, so the best stays at
    # the high edge: 3 extra fits upwards, then reported as "high"
    x = torch.zeros(60, 3)
    y = torch.arange(60) % 2
    f = fit_classifier("linear", x[:40], y[:40], x[40:], y[40:], 2, alphas=[1e-2, 1e-1])
    assert set(f.grid) == {"0.01", "0.1", "1", "10", "100"}
    assert f.chosen["alpha"] == 100 and f.edge == "high"


def test_linear_needs_two_classes() -> None:
    with pytest.raises(DataError, match="needs at least 2 classes in the training split, got 1"):
        fit_classifier(
            "linear", torch.rand(3, 2), torch.ones(3), torch.rand(2, 2), torch.ones(2), 2
        )


def test_linear_standardize_flag_matches_scikit_learn() -> None:
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs(1)
    x = x * torch.tensor([1.0, 100.0, 0.01, 1.0, 5.0]) + 3  # badly scaled columns
    xn = x.float().numpy()
    kw = {"loss": "hinge", "alpha": 1e-3, "max_iter": 50, "tol": 1e-4, "random_state": 0}
    raw = SGDClassifier(**kw).fit(xn, y.numpy())
    scaled = make_pipeline(StandardScaler(), SGDClassifier(**kw)).fit(xn, y.numpy())
    off = LinearClassifier(alpha=1e-3, standardize=False).fit(x, y)
    on = LinearClassifier(alpha=1e-3).fit(x, y)
    assert off.scaler is None and np.array_equal(off.clf.coef_, raw.coef_)
    assert np.array_equal(on.clf.coef_, scaled[-1].coef_)
    assert not np.allclose(off.clf.coef_, on.clf.coef_)
    assert torch.equal(off.predict(x), torch.from_numpy(raw.predict(xn)))


def test_scores_refuse_labels_out_of_range() -> None:
    with pytest.raises(DataError, match=r"target label 3 is outside 0\.\.2"):
        classification_scores(torch.tensor([0, 1]), torch.tensor([0, 3]), 3)
    with pytest.raises(DataError, match=r"pred label -1 is outside 0\.\.2"):
        classification_scores(torch.tensor([0, -1]), torch.tensor([0, 1]), 3)


def test_data_differences_fill_defaults_and_ignore_loader() -> None:
    rings = "visrep.data.RingsDataModule"
    a = {"class_path": rings, "init_args": {"seed": 0, "loader": {"batch_size": 5}}}
    b = {"class_path": rings, "init_args": {"train_size": 2000}}  # the defaults of a
    assert data_differences(a, b) == []
    c = {"class_path": rings, "init_args": {"seed": 1, "radii": [1.0, 3.0]}}
    assert data_differences(a, c) == ["init_args.radii: [1.0, 2.0] vs [1.0, 3.0]",
                                      "init_args.seed: 0 vs 1"]  # fmt: skip


def test_histogram_classifier_nearest_class_signature() -> None:
    from visrep.analysis.baseline import HistogramClassifier

    x = torch.tensor([[8.0, 0.0, 0.0], [6.0, 2.0, 0.0], [0.0, 1.0, 3.0], [0.0, 0.0, 10.0]])
    y = torch.tensor([2, 2, 5, 5])
    q = torch.tensor([[70.0, 10.0, 0.0], [0.0, 0.0, 1.0]])
    for distance in ("standard", "normalised", "bhattacharyya"):
        m = HistogramClassifier(distance, "class").fit(x, y)
        torch.testing.assert_close(
            m.refs, torch.tensor([[7.0, 1, 0], [0, 0.5, 6.5]], dtype=torch.float64)
        )
        if distance != "standard":  # scale-free: the big query still reads as class 2
            assert m.predict(q).tolist() == [2, 5]
    # raw counts: the 80-event query is far from both signatures, nearer class 2's
    assert HistogramClassifier("standard").fit(x, y).predict(q[:1]).tolist() == [2]
    assert HistogramClassifier("normalised", "samples").fit(x, y).predict(q).tolist() == [2, 5]
    with pytest.raises(ConfigError, match="--distance"):
        HistogramClassifier("cosine")  # type: ignore[arg-type]
    fitted = fit_classifier("histogram", x, y, x, y, 6, distance="normalised")
    assert (
        fitted.chosen == {"distance": "normalised", "reference": "class"} and fitted.val_acc == 1.0
    )
