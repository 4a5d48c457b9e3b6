"""One-shot video object segmentation data: DAVIS-style sequences, episodes, whole sequences."""

from visrep.data.vos.davis import (
    OBJECT_MASKS,
    DavisVosDataModule,
    VosEpisodes,
    VosSequence,
    VosSequences,
    find_vos_sequences,
    read_object_mask,
)

__all__ = [
    "OBJECT_MASKS",
    "DavisVosDataModule",
    "VosEpisodes",
    "VosSequence",
    "VosSequences",
    "find_vos_sequences",
    "read_object_mask",
]
