"""``visrep features IMAGE`` (visrep.commands.features): LIFT from a run, OpenCV's SIFT / ORB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visrep.cli import main

TINY = [
    "--data.sources", '[{"builtin": "skimage"}]', "--data.pairs_per_photo", "1",
    "--data.pair.image_size", "128", "--data.points_per_pair", "8", "--data.patch_size", "32",
    "--data.loader.batch_size", "16", "--model.crop_size", "20", "--model.det_kernel", "5",
    "--model.dim", "16", "--model.ori_width", "4", "--model.desc_width", "4",
    "--model.stage_epochs", "null", "--model.graf_root", "null",
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
    "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
    "--test_after_fit", "false",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-step lift_graf run (tiny nets, 17 skimage photographs at 128 px)."""
    root = tmp_path_factory.mktemp("lift")
    args = ["fit", "--config", "lift_graf", "--run_dir", str(root / "run"), *TINY]
    assert main(args) == 0
    return root / "run"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import skimage.data

    path = tmp_path_factory.mktemp("img") / "camera.png"
    Image.fromarray(skimage.data.camera()[::4, ::4]).save(path)  # 128 x 128 grey
    return path


def test_lift_features_from_a_run(cli, run, image, tmp_path):
    code, out, err = cli("features", image, "--ckpt", run, "--which", "last", "--num", "50",
                         "--out", tmp_path)  # fmt: skip
    assert code == 0, err
    z = np.load(tmp_path / "camera_lift.npz")
    kp, desc = z["keypoints"], z["descriptors"]
    assert kp.dtype == np.float32 and kp.ndim == 2 and kp.shape[1] == 5
    assert 1 <= len(kp) <= 50 and desc.shape == (len(kp), 16)
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-4)
    assert np.all(np.diff(kp[:, 4]) <= 0)  # strongest first
    assert (kp[:, 0] >= 0).all() and (kp[:, 0] < 128).all() and (kp[:, 2] == 10).all()
    assert str(z["method"]) == "lift" and z["size"].tolist() == [128, 128]
    assert (tmp_path / "camera_lift.png").stat().st_size > 0
    assert "camera_lift.npz (" in out


@pytest.mark.parametrize("method,width", [("sift", 128), ("orb", 32)])
def test_opencv_features_need_no_run(cli, image, tmp_path, method, width):
    code, _, err = cli("features", image, "--method", method, "--num", "40", "-o", tmp_path)
    assert code == 0, err
    z = np.load(tmp_path / f"camera_{method}.npz")
    assert z["keypoints"].shape[1] == 5 and 1 <= len(z["keypoints"]) <= 40
    assert z["descriptors"].shape == (len(z["keypoints"]), width)
    assert (tmp_path / f"camera_{method}.png").is_file()


def test_bad_input_is_one_error_line(cli, image, tmp_path):
    code, _, err = cli("features", image, "-o", tmp_path)
    assert code == 2 and "--method lift needs --ckpt" in err
    code, _, err = cli("features", tmp_path / "none.png", "--method", "sift")
    assert code == 2 and "no such image file" in err
    code, _, err = cli("features", image, "--method", "sift", "--num", "0")
    assert code == 2 and "--num must be >= 1" in err
