"""Video networks (seed 004): the registry, frame-fusion CNNs, C3D, inflated 3D CNNs (I3D),
the TCC embedder and two-stream networks; recurrent and forecasting networks."""

from visrep.models.video.c3d import c3d
from visrep.models.video.embedder import context_windows, tcc_embedder
from visrep.models.video.fusion import early_fusion, late_fusion, single_frame, slow_fusion
from visrep.models.video.inflate import i3d, inflate_backbone, inflate_weight, stack_frames_weight
from visrep.models.video.nets import (
    VIDEO_NETS,
    VideoClassifier,
    VideoNet,
    VideoNetFactory,
    average_softmax,
    build_2d,
    check_clip,
    check_flow,
    check_video_args,
    dry_run,
    fold_frames,
)
from visrep.models.video.two_stream import stack_flow, two_stream

__all__ = [
    "VIDEO_NETS",
    "VideoClassifier",
    "VideoNet",
    "VideoNetFactory",
    "average_softmax",
    "build_2d",
    "c3d",
    "check_clip",
    "check_flow",
    "check_video_args",
    "context_windows",
    "dry_run",
    "early_fusion",
    "fold_frames",
    "i3d",
    "inflate_backbone",
    "inflate_weight",
    "late_fusion",
    "single_frame",
    "slow_fusion",
    "stack_flow",
    "stack_frames_weight",
    "tcc_embedder",
    "two_stream",
]

from visrep.models.video.forecast import (  # issue 15, recurrent and forecasting nets
    FORECAST_NETS,
    ForecastNet,
    ForecastNetFactory,
    convlstm_forecaster,
    depth_to_space,
    space_to_depth,
)
from visrep.models.video.recurrent import cnn_lstm, convlstm

__all__ += [
    "FORECAST_NETS",
    "ForecastNet",
    "ForecastNetFactory",
    "cnn_lstm",
    "convlstm",
    "convlstm_forecaster",
    "depth_to_space",
    "space_to_depth",
]
