"""Event cameras: the stream and batch types, file readers, representations, the simulator,
transforms and the classification data modules.

>>> from visrep.events import EventBatch, EventStream, to_event_count
>>> s = EventStream(x=[1], y=[0], t=[0], p=[1], sensor_size=(2, 1))
>>> to_event_count(EventBatch.from_streams([s, s])).shape
torch.Size([2, 2, 1, 2])
"""

from __future__ import annotations

import importlib
from typing import Any

from visrep.events.datasets import (
    EventFileDataset,
    EventStreamDataset,
    find_layout,
)
from visrep.events.io import read_events, write_events
from visrep.events.representations import (
    HATS,
    EventCount,
    LastTimestamp,
    TimeSurface,
    VoxelGrid,
    to_event_count,
    to_hats,
    to_last_timestamp,
    to_time_surface,
    to_voxel_grid,
)
from visrep.events.representations.registry import create_representation, list_representations
from visrep.events.simulate import saccade_events, saccade_frames, simulate_batch, simulate_events
from visrep.events.types import EventBatch, EventStream, collate_events

__all__ = [
    "HATS",
    "DigitsEventsDataModule",
    "EventBatch",
    "EventCount",
    "EventDataModule",
    "EventFileDataset",
    "EventFolderDataModule",
    "EventStream",
    "EventStreamDataset",
    "LastTimestamp",
    "NCaltech101DataModule",
    "NCarsDataModule",
    "NMNISTDataModule",
    "TimeSurface",
    "VoxelGrid",
    "collate_events",
    "create_representation",
    "find_layout",
    "list_representations",
    "read_events",
    "saccade_events",
    "saccade_frames",
    "simulate_batch",
    "simulate_events",
    "to_event_count",
    "to_hats",
    "to_last_timestamp",
    "to_time_surface",
    "to_voxel_grid",
    "write_events",
]

# The data modules need Lightning and scikit-learn: imported on first use, so that reading an
# event file does not pay for them.
_LAZY = {
    name: "visrep.events.datamodule"
    for name in (
        "DigitsEventsDataModule",
        "EventDataModule",
        "EventFolderDataModule",
        "NCaltech101DataModule",
        "NCarsDataModule",
        "NMNISTDataModule",
    )
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'visrep.events' has no attribute {name!r}")
