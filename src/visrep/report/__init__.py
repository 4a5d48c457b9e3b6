"""Plots and the static HTML report of a run directory."""

from visrep.report.html import build_report
from visrep.report.plots import plot_confusion_matrix, plot_learning_curves, plot_prediction_grid

__all__ = ["build_report", "plot_confusion_matrix", "plot_learning_curves", "plot_prediction_grid"]
