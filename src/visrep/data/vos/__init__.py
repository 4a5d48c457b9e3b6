"""One-shot video object segmentation data: DAVIS-style sequences, episodes, whole sequences."""

from visrep.data.samples import OBJECT_MASKS
from visrep.data.vos.davis import (
    DavisVosDataModule,
    VosEpisodes,
    VosFrames,
    VosSequence,
    VosSequences,
    find_vos_sequences,
    read_object_mask,
)
from visrep.data.vos.static import StaticEpisodes, deform_episode

__all__ = [
    "OBJECT_MASKS",
    "DavisVosDataModule",
    "StaticEpisodes",
    "VosEpisodes",
    "VosFrames",
    "VosSequence",
    "VosSequences",
    "deform_episode",
    "find_vos_sequences",
    "read_object_mask",
]
