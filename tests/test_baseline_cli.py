"""``visrep baseline`` end to end, in-process, on scikit-learn's digits and on the rings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize(
    "features, classifier, extra, dim",
    [
        ("pixels", "knn", ["--k", "3"], 64),
        ("pixels", "linear", ["--alphas", "1e-4,1e-2"], 64),
        ("pixels", "linear", ["--alphas", "1e-4,1e-2", "--standardize", "false"], 64),
        ("bovw", "linear", ["--words", "20", "--step", "2", "--fit_descriptors", "5000"], 20),
    ],
)
def test_digits_rows(cli, tmp_path: Path, features, classifier, extra, dim) -> None:
    run = tmp_path / "run"
    code, out, err = cli("baseline", "quickstart", "--features", features, "--classifier", classifier, "--run_dir", run, *extra)  # fmt: skip
    assert code == 0, err
    m = _metrics(run)
    assert out.startswith(f"baseline {features} + {classifier} (") and f"-> {run}" in out
    assert f"test acc {m['test/acc']:.4f}" in out
    # quickstart's split of the 1,797 digits: 20% test, then 10% of the rest for val
    assert (m["train_size"], m["val_size"], m["test_size"]) == (1293, 144, 360)
    assert m["feature_dim"] == dim and m["features"] == features and m["classifier"] == classifier
    # chance is 0.1; 20-word histograms, unstandardised since they are L1-normalised: 0.4833
    floor = {"pixels": 0.9, "bovw": 0.4}[features]
    assert m["test/acc"] > floor and 0 < m["val/acc"] <= 1
    per = m["test/acc_per_class"]
    assert sorted(per) == [str(c) for c in range(10)]
    assert m["test/acc_mean_class"] == pytest.approx(sum(per.values()) / 10)
    assert m["fit_time_s"] >= 0 and m["feature_time_s"] >= 0 and m["test_predict_time_s"] >= 0
    if classifier == "knn":
        assert m["chosen"] == {"k": 3} and "alpha_at_grid_edge" not in m
    else:
        assert set(m["chosen"]) == {"alpha", "loss"} and m["chosen"]["loss"] == "hinge"
        grid = m["val/acc_per_alpha"]  # the given grid, extended while its best is at an edge
        assert f"{m['chosen']['alpha']:g}" in grid and len(grid) >= 2
        assert m["alpha_at_grid_edge"] in (None, "low", "high")
        assert f"alpha_at_grid_edge={m['alpha_at_grid_edge'] or 'null'}" in out
        # bovw histograms go in as they are; pixels are standardised unless told otherwise
        assert m["standardized"] is (features != "bovw" and "--standardize" not in extra)
    assert "same_data" not in m  # only for run:PATH features
    cm = (run / "confusion_matrix.csv").read_text().splitlines()
    assert len(cm) == 11 and sum(int(v) for row in cm[1:] for v in row.split(",")[1:]) == 360
    assert (run / "plots" / "confusion_matrix.png").is_file()
    assert not (run / "plots" / "decision_boundary.png").exists()  # images, not 2-D points
    report = (run / "report.html").read_text()
    assert "test/acc" in report and "confusion matrix" in report
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["features"] == features and cfg["data"]["class_path"].endswith("DigitsDataModule")


def test_encoder_cache_reused_then_refitted(cli, tmp_path: Path) -> None:
    run = tmp_path / "bovw"
    args = ["baseline", "quickstart", "--features", "bovw", "--classifier", "knn", "--words", "16", "--run_dir", run]  # fmt: skip
    assert cli(*args)[0] == 0
    first = _metrics(run)
    book = Path(first["encoder_file"])
    assert first["encoder_cached"] is False and first["encoder_fit_time_s"] > 0
    stamp = book.stat().st_mtime_ns
    assert cli(*args)[0] == 0
    second = _metrics(run)
    assert second["encoder_cached"] is True and second["encoder_fit_time_s"] == 0
    assert second["encoder_file"] == str(book) and book.stat().st_mtime_ns == stamp
    assert second["test/acc"] == first["test/acc"]
    # other data (another split seed): another codebook beside the first
    assert cli(*args, "--data", "split.seed=1")[0] == 0
    third = _metrics(run)
    assert third["encoder_cached"] is False and third["encoder_file"] != str(book)
    assert len(list((run / "encoders").glob("*.npz"))) == 2


def test_rings_polar_decision_boundary_and_data_override(cli, tmp_path: Path) -> None:
    run = tmp_path / "polar"
    code, _out, err = cli("baseline", "polar_rings_mlp", "--features", "polar", "--run_dir", run, "--data", "train_size=400,test_size=300,radii=[1.0, 2.5]")  # fmt: skip
    assert code == 0, err
    saved = yaml.safe_load((run / "config.yaml").read_text())["data"]["init_args"]
    assert saved["radii"] == [1.0, 2.5] and saved["train_size"] == 400
    m = _metrics(run)
    assert (m["train_size"], m["test_size"], m["feature_dim"]) == (400, 300, 2)
    assert m["test/acc"] > 0.95
    assert (run / "plots" / "decision_boundary.png").stat().st_size > 5000
    code, _, _ = cli("baseline", "polar_rings_mlp", "--features", "pixels", "--run_dir", tmp_path / "xy", "--data", "train_size=400,test_size=300")  # fmt: skip
    assert code == 0 and _metrics(tmp_path / "xy")["test/acc"] < 0.7


@pytest.mark.slow
def test_run_features_of_a_trained_mlp(cli, tmp_path: Path) -> None:
    fit = tmp_path / "mlp"
    code, _, err = cli("fit", "--config", "polar_rings_mlp", "--run_dir", fit, "--trainer.max_epochs", "10", "--trainer.enable_progress_bar", "false")  # fmt: skip
    assert code == 0, err
    assert (fit / "plots" / "decision_boundary.png").is_file()  # the MLP's own regions
    assert not (fit / "plots" / "test_predictions.png").exists()
    run = tmp_path / "feat"
    code, _out, err = cli("baseline", fit, "--features", f"run:{fit}", "--run_dir", run)
    assert code == 0, err
    m = _metrics(run)
    assert m["feature_dim"] == 32 and m["test/acc"] > 0.95 and m["train_size"] == 2000
    assert (run / "plots" / "decision_boundary.png").is_file() and m["same_data"] is True
    # other data than the run was trained on: refused, unless --allow_other_data
    other = ["baseline", fit, "--features", f"run:{fit}", "--run_dir", tmp_path / "o", "--data", "seed=1"]  # fmt: skip
    code, _, err = cli(*other)
    assert code == 2 and err.count("\n") == 1 and "init_args.seed: 0 vs 1" in err, err
    assert cli(*other, "--allow_other_data", "true")[0] == 0
    assert _metrics(tmp_path / "o")["same_data"] is False


@pytest.mark.parametrize(
    "args, message",
    [
        (["nowhere"], "neither a run directory nor a config"),
        (["quickstart", "--features", "hog"], "--features must be pixels, bovw, fisher, polar"),
        (["quickstart", "--features", "polar"], "--features polar needs 2-D point inputs"),
        (["quickstart", "--classifier", "svm"], "--classifier must be one of knn, linear"),
        (["quickstart", "--k", "0"], "--k must be >= 1"),
        (["quickstart", "--alphas", "0,1"], "--alphas must be numbers > 0"),
        (["quickstart", "--data", "split"], "--data must be key=value items"),
        (["quickstart", "--data", "nosuch=1"], "nosuch"),
        (["quickstart", "--features", "bovw", "--words", "100000"], "num_words=100000 is larger"),
        (
            ["quickstart", "--features", "run:/no/such/run"],
            "neither a run directory nor a checkpoint",
        ),
        (["polar_rings_mlp", "--features", "bovw"], "--features bovw needs grey or RGB images"),
        (
            ["quickstart", "--classifier", "linear", "--train_limit", "1"],
            "--classifier linear needs at least 2 classes in the training split, got 1",
        ),
        (["polar_rings_mlp", "--data", "seed=-1"], "data.seed must be an integer >= 0, got -1"),
    ],
)
def test_bad_input_one_line(cli, tmp_path: Path, args, message) -> None:
    run = tmp_path / "bad"
    code, _out, err = cli("baseline", *args, "--run_dir", run)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not run.exists()  # a failed command leaves no run directory behind


def test_refuses_a_training_run_as_run_dir(cli, tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    code, _, err = cli("baseline", "quickstart", "--run_dir", tmp_path)
    assert code == 2 and "is a training run" in err


def test_run_features_of_other_data_are_refused(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from visrep.commands.baseline import _same_data, data_section
    from visrep.errors import ConfigError
    from visrep.runs import RunDir

    section, _, _ = data_section("polar_rings_mlp")
    saved = {
        "data": {**section, "init_args": {**section["init_args"], "loader": {"batch_size": 7}}}
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    feat = SimpleNamespace(run=RunDir(tmp_path), name=f"run:{tmp_path}")
    assert _same_data(feat, section, False) is True  # the loader does not count
    other, _, _ = data_section("polar_rings_mlp", "seed=1,test_size=10")
    with pytest.raises(ConfigError) as e:
        _same_data(feat, other, False)
    msg = str(e.value)
    assert "\n" not in msg and "init_args.seed: 0 vs 1; init_args.test_size: 1000 vs 10" in msg
    assert "--allow_other_data" in msg
    assert _same_data(feat, other, True) is False
    assert _same_data(SimpleNamespace(name="pixels"), other, False) is None


@pytest.mark.parametrize(
    "features, classifier, extra, dim",
    [
        ("hats", "linear", ["--hats_cell_size", "5", "--hats_radius", "2"], 2 * 16 * 25),
        ("hots", "histogram", ["--hots_prototypes", "4,8", "--hots_radius", "1,2",
                               "--hots_tau", "2e4,2e5", "--hots_fit_events", "3000"], 8),
        ("hots", "knn", ["--hots_prototypes", "4,8", "--hots_radius", "1,2",
                         "--hots_tau", "2e4,2e5", "--hots_learning", "kmeans"], 8),
    ],
)  # fmt: skip
def test_event_features_hats_and_hots(cli, tmp_path: Path, features, classifier, extra, dim):
    run = tmp_path / "run"
    data = "max_samples=120,scale=2"  # 20 x 20 sensor
    code, out, err = cli("baseline", "digits_events", "--data", data, "--features", features, "--classifier", classifier, "--run_dir", run, *extra)  # fmt: skip
    assert code == 0, err
    assert out.startswith(f"baseline {features} + {classifier} (")
    m = _metrics(run)
    assert m["feature_dim"] == dim and m["features"] == features and m["classifier"] == classifier
    assert m["test/acc"] > 0.2  # chance 0.1 (24 test recordings)
    if features == "hots":
        assert len(m["hots_fitted_events"]) == 2
        if classifier == "histogram":
            assert m["chosen"] == {"distance": "bhattacharyya", "reference": "class"}
            assert m["hots_fitted_events"] == [3000, 3000]
            per = m["test/acc_per_distance"]
            assert sorted(per) == ["bhattacharyya", "normalised", "standard"]
            assert per["bhattacharyya"] == m["test/acc"]


def test_image_features_refuse_event_data(cli, tmp_path: Path) -> None:
    code, _, err = cli("baseline", "digits_events", "--data", "max_samples=20", "--features", "pixels", "--run_dir", tmp_path / "r")  # fmt: skip
    assert code == 2 and "needs images" in err
