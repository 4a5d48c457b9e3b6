"""Video data: decoding with seeking (PyAV), clip sampling, transforms, folders, optical flow."""

from visrep.data.video.clips import clip_indices, clip_span, resample_indices
from visrep.data.video.flow import FlowCache, compute_flow, flow_between
from visrep.data.video.io import (
    VideoInfo,
    list_frames,
    read_frame_folder,
    read_video_frames,
    to_clip,
    video_info,
)

__all__ = [
    "FlowCache",
    "VideoInfo",
    "clip_indices",
    "clip_span",
    "compute_flow",
    "flow_between",
    "list_frames",
    "read_frame_folder",
    "read_video_frames",
    "resample_indices",
    "to_clip",
    "video_info",
]
