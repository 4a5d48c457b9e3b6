"""``visrep embed`` (visrep.commands.embed): the .npz of a run's split or of image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tasks.test_embedding import FIT, write_identities
from visrep.cli import main
from visrep.tasks.checkpoint import read_task_checkpoint

QUICK = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
         "--test_after_fit", "false"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-epoch orl_triplet run on 8 synthetic people (4 train, 2 val, 2 test) x 6 images."""
    root = tmp_path_factory.mktemp("embed")
    faces = write_identities(root / "people")
    args = ["fit", "--config", "orl_triplet", "--run_dir", root / "run", "--data.root", faces,
            *FIT, *QUICK]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    return root / "run", faces


def _images(files) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(Image.open(f))) for f in files])[:, None] / 255


def test_embed_the_test_split_into_the_run(cli, run):
    run_dir = run[0]
    code, out, err = cli("embed", run_dir)
    assert code == 0, err
    path = run_dir / "embeddings_test.npz"
    assert f"wrote {path} (12 x 8 embeddings of test)" in out
    z = np.load(path)
    assert z["embeddings"].shape == (12, 8) and z["embeddings"].dtype == np.float32
    assert z["labels"].dtype == np.int64 and len(set(z["labels"].tolist())) == 2
    assert z["indices"].tolist() == list(range(12)) and str(z["split"]) == "test"
    assert z["class_names"].tolist() == [f"p{i}" for i in range(8)]
    files = z["files"].tolist()
    assert all(Path(f).is_file() for f in files)
    # each label is the identity folder of its file, and the embedding is the model's
    assert [z["class_names"][y] for y in z["labels"]] == [Path(f).parent.name for f in files]
    task = read_task_checkpoint(run_dir / "checkpoints" / "best.ckpt").build()
    with torch.no_grad():
        want = task(_images(files)).numpy()
    np.testing.assert_allclose(z["embeddings"], want, atol=1e-5)


def test_embed_train_split_and_image_files(cli, run, tmp_path):
    run_dir, faces = run
    out = tmp_path / "train.npz"
    code, _, err = cli("embed", run_dir, "--split", "train", "-o", out, "--batch_size", "5")
    assert code == 0, err
    z = np.load(out)
    assert z["embeddings"].shape == (24, 8) and (z["labels"] >= 0).all()
    code, _, err = cli("embed", run_dir, "--path", faces / "p0", "-o", tmp_path / "files.npz")
    assert code == 0, err
    z = np.load(tmp_path / "files.npz")
    assert z["embeddings"].shape == (6, 8) and (z["labels"] == -1).all()
    assert str(z["split"]) == "files" and Path(z["files"][0]).name == "1.png"


def test_embed_a_classification_run_gives_its_penultimate_features(cli, tmp_path):
    run_dir = tmp_path / "cls"
    assert main(["fit", "--config", "quickstart", "--run_dir", str(run_dir),
                 "--model.backbone.channels", "[4,8]", *QUICK]) == 0  # fmt: skip
    code, _, err = cli("embed", run_dir, "--split", "val")
    assert code == 0, err
    z = np.load(run_dir / "embeddings_val.npz")
    assert z["embeddings"].shape[1] == 8  # the pooled small_cnn features
    assert (z["files"] == "").all() and len(z["labels"]) == len(z["embeddings"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "x.txt"], "--out must name an .npz file"),
        (["--batch_size", "0"], "--batch_size must be >= 1"),
        (["--split", "holdout"], "--split"),
        (["--path", "/nonexistent/dir"], "does not exist"),
    ],
)
def test_bad_options_are_one_error_line(cli, run, args, message):
    code, _, err = cli("embed", run[0], *args)
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1


def test_not_a_run(cli, tmp_path):
    code, _, err = cli("embed", tmp_path)
    assert code == 2 and "has no checkpoints/best.ckpt" in err


def test_a_task_that_does_not_embed_images_is_refused(cli, run, monkeypatch):
    """The task's ``embeds`` decides, not a ``net.embed`` method (R-CNN has one for crops)."""
    from visrep.tasks import EmbeddingTask

    monkeypatch.setattr(EmbeddingTask, "embeds", False)
    code, _, err = cli("embed", run[0])
    assert code == 2 and err.count("\n") == 1, err
    assert "needs a model with one embedding per image" in err and "EmbeddingTask" in err
