"""Tasks: LightningModules that own a task's loss, metrics and optimisation around a plain model.

:class:`~visrep.tasks.base.Task` is the base of every family; one file per family.
"""

from visrep.tasks.autoencoder import AutoencoderTask
from visrep.tasks.base import Task
from visrep.tasks.checkpoint import resolve_task, task_classes
from visrep.tasks.classification import ClassificationTask
from visrep.tasks.colorization import ColorizationTask
from visrep.tasks.cyclegan import CycleGANTask
from visrep.tasks.detection import DetectionTask
from visrep.tasks.embedding import EmbeddingTask
from visrep.tasks.event_classification import EventClassificationTask
from visrep.tasks.gan import GANTask
from visrep.tasks.optim import OptimConfig, build_optimizer, build_scheduler, lr_factor
from visrep.tasks.pointcloud import PointCloudClassificationTask
from visrep.tasks.segmentation import SegmentationTask
from visrep.tasks.vae import VAETask

__all__ = [
    "AutoencoderTask",
    "ClassificationTask",
    "ColorizationTask",
    "CycleGANTask",
    "DetectionTask",
    "EmbeddingTask",
    "EventClassificationTask",
    "GANTask",
    "OptimConfig",
    "PointCloudClassificationTask",
    "SegmentationTask",
    "Task",
    "VAETask",
    "build_optimizer",
    "build_scheduler",
    "lr_factor",
    "resolve_task",
    "task_classes",
]

from visrep.tasks.correspondence import CorrespondenceTask  # appended: issue 17

__all__ += ["CorrespondenceTask"]

from visrep.tasks.pointcloud_seg import PointSegmentationTask  # noqa: E402 (appended: issue 17)

__all__ += ["PointSegmentationTask"]

from visrep.tasks.forecast import FramePredictionTask  # noqa: E402 (appended: issue 15)
from visrep.tasks.video import VideoClassificationTask  # noqa: E402 (appended: issue 15)

__all__ += ["FramePredictionTask", "VideoClassificationTask"]

from visrep.tasks.sequence import SequenceLabelingTask  # noqa: E402 (appended: issue 19)

__all__ += ["SequenceLabelingTask"]

from visrep.tasks.vos import VideoObjectSegmentationTask  # noqa: E402 (appended: issue 16)

__all__ += ["VideoObjectSegmentationTask"]

from visrep.tasks.event_sequence import PhasedLSTMEventTask  # noqa: E402 (appended: issue 20)

__all__ += ["PhasedLSTMEventTask"]

from visrep.tasks.depth import StereoDepthTask  # noqa: E402 (appended: issue 18, item 4)

__all__ += ["StereoDepthTask"]

from visrep.tasks.keypoints import KeypointTask  # noqa: E402 (appended: issue 18, keypoints)

__all__ += ["KeypointTask"]

from visrep.tasks.lift import LiftTask  # noqa: E402 (appended: issue 18, LIFT)

__all__ += ["LiftTask"]
