"""Tasks: LightningModules that own a task's loss, metrics and optimisation around a plain model."""

from visrep.tasks.classification import ClassificationTask
from visrep.tasks.event_classification import EventClassificationTask
from visrep.tasks.optim import OptimConfig, build_optimizer, build_scheduler, lr_factor

__all__ = [
    "ClassificationTask",
    "EventClassificationTask",
    "OptimConfig",
    "build_optimizer",
    "build_scheduler",
    "lr_factor",
]
