"""Video data: decoding with seeking (PyAV), clip sampling, transforms, folders, optical flow."""

from visrep.data.video.clips import clip_indices, clip_span, resample_indices
from visrep.data.video.flow import FlowCache, compute_flow, flow_between
from visrep.data.video.folder import ClipSampling, VideoClipDataset, VideoFolderDataModule
from visrep.data.video.io import (
    VideoInfo,
    count_frames,
    iter_frames,
    iter_video_frames,
    list_frames,
    read_frame_folder,
    read_frames,
    read_video_frames,
    to_clip,
    video_info,
)
from visrep.data.video.lists import (
    read_class_index,
    read_kinetics_csv,
    read_ucf_list,
    scan_video_tree,
)
from visrep.data.video.transforms import FlowField, clip_augment, video_transform

__all__ = [
    "ClipSampling",
    "FlowCache",
    "FlowField",
    "VideoClipDataset",
    "VideoFolderDataModule",
    "VideoInfo",
    "clip_augment",
    "clip_indices",
    "clip_span",
    "compute_flow",
    "count_frames",
    "flow_between",
    "iter_frames",
    "iter_video_frames",
    "list_frames",
    "read_class_index",
    "read_frame_folder",
    "read_frames",
    "read_kinetics_csv",
    "read_ucf_list",
    "read_video_frames",
    "resample_indices",
    "scan_video_tree",
    "to_clip",
    "video_info",
    "video_transform",
]

from visrep.data.video.frames_forecast import (  # appended: moving digits, forecasting
    FrameSequence,
    FramesForecastDataModule,
    find_sequences,
    prepare_frames,
)
from visrep.data.video.motion import (
    MotionClipDataset,
    MovingDigitsDataModule,
    MovingDigitsForecastDataModule,
    MovingSequenceDataset,
)
from visrep.data.video.moving_digits import (
    DigitPool,
    MotionClass,
    load_digit_pool,
    motion_classes,
    render_digits,
    trajectories,
)

__all__ += [
    "DigitPool",
    "FrameSequence",
    "FramesForecastDataModule",
    "MotionClass",
    "MotionClipDataset",
    "MovingDigitsDataModule",
    "MovingDigitsForecastDataModule",
    "MovingSequenceDataset",
    "find_sequences",
    "load_digit_pool",
    "motion_classes",
    "prepare_frames",
    "render_digits",
    "trajectories",
]

from visrep.data.video.gesture import (  # noqa: E402 (appended: issue 19, gesture clips)
    GestureClipDataset,
    MovingDigitsGestureDataModule,
    frame_class_names,
)

__all__ += ["GestureClipDataset", "MovingDigitsGestureDataModule", "frame_class_names"]

from visrep.data.video.digit_strings import (  # noqa: E402 (appended: issue 19, digit strings)
    DigitStringDataset,
    DigitStringsDataModule,
)

__all__ += ["DigitStringDataset", "DigitStringsDataModule"]
