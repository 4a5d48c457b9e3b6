"""The static, self-contained HTML report of a run directory."""

from visrep.plots.classification import plot_confusion_matrix, plot_prediction_grid
from visrep.report.html import build_report

# plot_confusion_matrix and plot_prediction_grid live in visrep.plots.classification; they are
# re-exported here only until trainer/callbacks.py imports them from there.
__all__ = ["build_report", "plot_confusion_matrix", "plot_prediction_grid"]
