"""Event cameras: the stream and batch types, file readers and representations.

>>> from visrep.events import EventBatch, EventStream, to_event_count
>>> s = EventStream(x=[1], y=[0], t=[0], p=[1], sensor_size=(2, 1))
>>> to_event_count(EventBatch.from_streams([s, s])).shape
torch.Size([2, 2, 1, 2])
"""

from __future__ import annotations

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
from visrep.events.types import EventBatch, EventStream, collate_events

__all__ = [
    "HATS",
    "EventBatch",
    "EventCount",
    "EventStream",
    "LastTimestamp",
    "TimeSurface",
    "VoxelGrid",
    "collate_events",
    "read_events",
    "to_event_count",
    "to_hats",
    "to_last_timestamp",
    "to_time_surface",
    "to_voxel_grid",
    "write_events",
]
