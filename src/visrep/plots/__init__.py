"""Matplotlib figures from plain arrays and tensors, one file per topic, all written by ``save``.

Low in the flow (DESIGN.md): plots import only errors, configs and runs, so tasks, the report,
analysis and the tool commands all draw with them. The backend is headless (Agg).
"""

from visrep.plots._save import save
from visrep.plots.attribution import plot_attributions
from visrep.plots.classification import plot_confusion_matrix, plot_prediction_grid
from visrep.plots.colorization import plot_colorizations
from visrep.plots.detection import draw_detections, plot_detections, plot_pr_curves
from visrep.plots.embedding import plot_embedding, plot_neighbours
from visrep.plots.events import plot_event_frames
from visrep.plots.generation import (
    plot_image_grid,
    plot_interpolations,
    plot_latent_manifold,
    plot_nearest_neighbours,
    plot_points_2d,
    plot_reconstructions,
    plot_translations,
    tile_images,
)
from visrep.plots.robustness import (
    plot_adversarial_examples,
    plot_robustness,
    plot_robustness_comparison,
)
from visrep.plots.stability import plot_depth, plot_noise, plot_spectral, plot_trajectories
from visrep.plots.training import plot_learning_curves
from visrep.plots.verification import plot_distance_histogram, plot_roc

__all__ = [
    "draw_detections",
    "plot_adversarial_examples",
    "plot_attributions",
    "plot_colorizations",
    "plot_confusion_matrix",
    "plot_depth",
    "plot_detections",
    "plot_distance_histogram",
    "plot_embedding",
    "plot_event_frames",
    "plot_image_grid",
    "plot_interpolations",
    "plot_latent_manifold",
    "plot_learning_curves",
    "plot_nearest_neighbours",
    "plot_neighbours",
    "plot_noise",
    "plot_points_2d",
    "plot_pr_curves",
    "plot_prediction_grid",
    "plot_reconstructions",
    "plot_robustness",
    "plot_robustness_comparison",
    "plot_roc",
    "plot_spectral",
    "plot_trajectories",
    "plot_translations",
    "save",
    "tile_images",
]
