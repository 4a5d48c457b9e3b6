import pytest
import torch

from visrep.errors import DataError
from visrep.plots import plot_confusion_matrix, plot_prediction_grid
from visrep.report import build_report
from visrep.runs import RunDir


def test_report_embeds_every_plot_and_metric(tmp_path):
    run = RunDir(tmp_path)
    run.write_epochs(
        [{"epoch": e, "train/loss": 1.0 / (e + 1), "val/acc": 0.5 + 0.1 * e} for e in range(3)]
    )
    run.update_metrics({"test/acc": 0.875})
    plot_confusion_matrix([[3, 1], [0, 4]], ["a", "b"], run.plots / "confusion_matrix.png")
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    plot_prediction_grid(
        torch.rand(3, 1, 5, 5), torch.tensor([0, 1, 1]), probs, ["a", "b"], run.plots / "grid.png"
    )
    (tmp_path / "config.yaml").write_text("model: <x>\n")
    html = build_report(tmp_path).read_text()
    assert html.count("data:image/png;base64,") == 3  # two plots + learning curves redrawn
    assert "0.8750" in html and "&lt;x&gt;" in html  # metrics shown, config escaped
    assert (run.plots / "learning_curves.png").stat().st_size > 1000


def test_report_missing_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_report(tmp_path / "nope")
