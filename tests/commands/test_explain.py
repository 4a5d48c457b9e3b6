"""``visrep explain`` (visrep.commands.explain) on 1-epoch quickstart runs: PNGs in plots/,
embedded in the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

from visrep.cli import main

FIT = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One thread for torch and OpenMP: on a shared 2-core machine sklearn's t-SNE with spinning
    OpenMP threads is ~100x slower (measured 38 s vs 0.4 s for 80 points)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def _fit(root: Path, *extra: str) -> Path:
    assert main(["fit", "--config", "quickstart", "--run_dir", str(root), *FIT, *extra]) == 0
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _fit(tmp_path_factory.mktemp("explain") / "cnn")


def test_explain_writes_every_plot_and_the_report_embeds_them(cli, run):
    code, out, err = cli("explain", run, "--num_images", "4", "--max_points", "80",
                         "--ig_steps", "8", "--k", "3")  # fmt: skip
    assert code == 0, err
    # digits are 8x8: the last feature map of small_cnn is 1x1, so Grad-CAM moves up to 2x2
    assert "Grad-CAM layer: backbone.features.19" in out
    assert "nearest training images share the true class" in out
    names = ["explain_gradcam", "explain_occlusion", "explain_saliency",
             "explain_integrated_gradients", "explain_neighbours", "embedding_tsne", "embedding_pca"]  # fmt: skip
    report = (run / "report.html").read_text()
    for name in names:
        png = run / "plots" / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG", name
        assert f'alt="{name}"' in report, name


def test_explain_a_subset_with_a_named_layer(cli, run):
    code, out, err = cli("explain", run, "--methods", "gradcam", "--layer", "features.3",
                         "--num_images", "2", "--split", "val")  # fmt: skip
    assert code == 0, err
    assert "Grad-CAM layer: features.3" in out and "explain_gradcam.png" in out
    assert "explain_neighbours" not in out


def test_explain_skips_gradcam_for_an_mlp(cli, tmp_path):
    run = _fit(tmp_path / "mlp", "--model.backbone", "mlp")
    code, out, err = cli("explain", run, "--methods", "gradcam,saliency", "--num_images", "2")
    assert code == 0, err
    assert "note: Grad-CAM skipped" in out
    assert not (run / "plots" / "explain_gradcam.png").exists()
    assert (run / "plots" / "explain_saliency.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "gradcam,lime"], "--methods: unknown lime"),
        (["--split", "holdout"], "split"),
        (["--num_images", "0"], "--num_images must be >= 1"),
        (["--methods", "occlusion", "--window", "9"], "window 9x9 must fit the 8x8 image"),
        (["--methods", "gradcam", "--layer", "features.99"], "layer 'features.99'"),
        (["--methods", "neighbours", "--k", "100000"], "--k 100000"),
        (["--device", "tpu9"], "--device 'tpu9' is not a device"),
    ],
)
def test_explain_bad_options_give_one_line_errors(cli, run, args, message):
    code, _, err = cli("explain", run, "--num_images", "2", *args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_explain_missing_run(cli, tmp_path):
    code, _, err = cli("explain", tmp_path / "nope")
    assert code == 2 and "neither a run directory nor a checkpoint" in err


def test_explain_refuses_a_run_another_writer_holds(cli, run):
    from visrep.runs import RunDir

    with RunDir(run).lock():
        code, _, err = cli("explain", run, "--methods", "saliency", "--num_images", "2")
    assert code == 2 and err.count("\n") == 1 and "is in use by" in err, err


def test_methods_take_brackets_and_commas_alike(cli, run):
    for methods in ("[saliency,pca]", "saliency,pca"):
        code, out, err = cli("explain", run, "--methods", methods, "--num_images", "2",
                             "--max_points", "20")  # fmt: skip
        assert code == 0, err
        assert "explain_saliency.png" in out and "embedding_pca.png" in out


def test_explain_an_autoencoder_run_uses_its_codes(cli, tmp_path):
    """A run without class scores (an autoencoder): neighbours, t-SNE and PCA of its codes by
    default; attribution maps, which explain a class score, are refused in one line."""
    run = tmp_path / "ae"
    assert main(["fit", "--config", "digits_ae", "--run_dir", str(run), *FIT,
                 "--data.split.train_samples", "200"]) == 0  # fmt: skip
    code, out, err = cli("explain", run, "--num_images", "2", "--max_points", "40", "--k", "2")
    assert code == 0, err
    assert "nearest training images share the true class" in out
    for name in ("explain_neighbours", "embedding_tsne", "embedding_pca"):
        assert (run / "plots" / f"{name}.png").is_file(), name
    assert not (run / "plots" / "explain_gradcam.png").exists()
    code, out, err = cli("explain", run, "--methods", "gradcam,tsne")
    assert code == 2 and err.count("\n") == 1
    assert "--methods gradcam: attribution maps explain a class score" in err


def test_the_task_hooks_decide_what_explain_runs(cli, run, monkeypatch):
    """``class_scores`` allows attribution maps and ``embeds`` the run at all (R-CNN's net.embed
    reads box crops), whatever methods the net has."""
    from visrep.tasks import ClassificationTask

    monkeypatch.setattr(ClassificationTask, "class_scores", False)
    code, _, err = cli("explain", run, "--methods", "saliency", "--num_images", "2")
    assert code == 2 and err.count("\n") == 1
    assert "--methods saliency: attribution maps explain a class score" in err
    monkeypatch.setattr(ClassificationTask, "embeds", False)
    code, _, err = cli("explain", run, "--methods", "pca", "--num_images", "2")
    assert code == 2 and err.count("\n") == 1
    assert "needs a model with one embedding per image" in err and "ClassificationTask" in err
