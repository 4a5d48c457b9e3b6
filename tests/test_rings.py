"""RingsDataModule (seed 002's polar-coordinates example) and its linear separability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visrep.analysis.baseline import fit_classifier, polar_features, split_inputs
from visrep.data import RingsDataModule
from visrep.data.classification.rings import sample_rings
from visrep.errors import ConfigError


@pytest.fixture(scope="module")
def rings() -> RingsDataModule:
    dm = RingsDataModule(train_size=600, val_size=200, test_size=400, seed=3)
    dm.setup()
    return dm


def test_samples_lie_on_their_ring() -> None:
    x, y = sample_rings(1000, (1.0, 3.0), 0.0, np.random.default_rng(0))
    assert x.dtype == np.float32 and y.dtype == np.int64 and (np.bincount(y) == 500).all()
    assert np.allclose(np.hypot(x[:, 0], x[:, 1]), np.where(y == 0, 1.0, 3.0), atol=1e-5)
    # angles cover the circle (uniform): every quadrant holds about a quarter of each class
    quad = (x[:, 0] > 0) * 2 + (x[:, 1] > 0)
    assert np.bincount(quad, minlength=4).min() > 200


def test_noise_is_radial_with_the_given_std() -> None:
    x, y = sample_rings(20000, (1.0, 2.0), 0.1, np.random.default_rng(1))
    r = np.hypot(x[:, 0], x[:, 1]) - np.where(y == 0, 1.0, 2.0)
    assert abs(r.mean()) < 0.005 and abs(r.std() - 0.1) < 0.005


def test_splits_spec_and_determinism(rings: RingsDataModule) -> None:
    s = rings.spec()
    assert (s.family, s.in_chans, s.image_size, s.point_dim) == ("classification", 2, (1, 1), 2)
    assert s.class_names == ("inner", "outer") and len(s.mean) == 2 == len(s.std)
    assert [len(rings.train_set), len(rings.val_set), len(rings.test_set)] == [600, 200, 400]
    assert rings.train_set[0]["image"].shape == (2, 1, 1)
    again = RingsDataModule(train_size=300, val_size=200, test_size=400, seed=3)
    again.setup()  # val / test do not depend on train_size; another seed gives other points
    a, b = split_inputs(rings.test_set), split_inputs(again.test_set)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    other = RingsDataModule(train_size=300, val_size=200, test_size=400, seed=4)
    other.setup()
    assert not torch.equal(split_inputs(other.test_set).inputs, a.inputs)


def test_linear_fails_on_cartesian_and_succeeds_on_polar(rings: RingsDataModule) -> None:
    tr, va, te = (split_inputs(d) for d in (rings.train_set, rings.val_set, rings.test_set))
    for feats, check in (
        (lambda x: x.reshape(len(x), 2), lambda acc: acc < 0.7),
        (polar_features, lambda acc: acc > 0.95),
    ):
        fitted = fit_classifier(
            "linear", feats(tr.inputs), tr.labels, feats(va.inputs), va.labels, 2
        )
        acc = float((fitted.model.predict(feats(te.inputs)) == te.labels).double().mean())
        assert check(acc), acc


@pytest.mark.parametrize(
    "kwargs",
    [
        {"radii": (2.0, 1.0)},
        {"radii": (1.0, 2.0, 3.0)},
        {"noise": -1.0},
        {"train_size": 1},
        {"test_size": True},
        {"seed": -1},
        {"seed": 1.5},
    ],
)
def test_bad_options(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match=r"data\.(radii|noise|train_size|test_size|seed) "):
        RingsDataModule(**kwargs)


def test_a_fitted_network_draws_its_own_decision_regions(
    rings: RingsDataModule, tmp_path, monkeypatch
) -> None:
    from visrep.runs import RunDir
    from visrep.tasks import ClassificationTask
    from visrep.tasks import classification as module

    task = ClassificationTask(backbone={"class_path": "mlp", "init_args": {"width": 8}})
    task.setup_spec(rings.spec())
    drawn = {}

    def fake_plot(predict, points, labels, names, path, title=""):
        drawn.update(predict=predict, points=points, path=path)
        return path

    monkeypatch.setattr(module, "plot_decision_function", fake_plot)
    points = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, -1.0]])
    task._plot_regions(points, torch.tensor([0, 1, 0]), ["inner", "outer"], RunDir(tmp_path))
    grid = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    with torch.no_grad():
        expected = task.net(torch.from_numpy(grid).reshape(50, 2, 1, 1)).argmax(-1).numpy()
    assert (drawn["predict"](grid) == expected).all()
    assert drawn["path"].name == "decision_boundary.png" and drawn["points"].shape == (3, 2)
