"""Video networks (seed 004): the registry, frame-fusion CNNs, C3D, inflated 3D CNNs (I3D),
the TCC embedder and two-stream networks; recurrent and forecasting networks."""

from visrep.models.video.nets import (
    VIDEO_NETS,
    VideoClassifier,
    VideoNet,
    VideoNetFactory,
    check_clip,
    check_flow,
    check_video_args,
    fold_frames,
)

__all__ = [
    "VIDEO_NETS",
    "VideoClassifier",
    "VideoNet",
    "VideoNetFactory",
    "check_clip",
    "check_flow",
    "check_video_args",
    "fold_frames",
]

from visrep.models.video.recurrent import cnn_lstm, convlstm  # issue 15, recurrent nets

__all__ += ["cnn_lstm", "convlstm"]
