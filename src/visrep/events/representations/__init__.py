"""Event representations: ``EventBatch -> (B, C, H, W)`` tensors, function + ``nn.Module`` pairs.

Every function is the source of truth and processes all events of the batch at once with
scatter / index_add (no loop over samples or events); the module holds its options.

==========================  ==================  ===========================================
function                    module              channels
==========================  ==================  ===========================================
:func:`to_event_count`      :class:`EventCount`     ``2 * bins`` (polarity x time bin)
:func:`to_last_timestamp`   :class:`LastTimestamp`  2
:func:`to_time_surface`     :class:`TimeSurface`    2
:func:`to_voxel_grid`       :class:`VoxelGrid`      ``bins``
:func:`to_hats`             :class:`HATS`           2, on a grid of cells
:func:`to_est`              :class:`EST`            ``2 * bins``, learnable kernel
:func:`to_matrix_lstm`      :class:`MatrixLSTM`     ``bins * hidden``, learnable LSTM
==========================  ==================  ===========================================
"""

from __future__ import annotations

from visrep.events.representations.est import EST, to_est, trilinear_kernel
from visrep.events.representations.frames import (
    EventCount,
    LastTimestamp,
    to_event_count,
    to_last_timestamp,
)
from visrep.events.representations.hats import HATS, to_hats
from visrep.events.representations.matrix_lstm import MatrixLSTM, to_matrix_lstm
from visrep.events.representations.time_surface import TimeSurface, to_time_surface
from visrep.events.representations.voxel_grid import VoxelGrid, to_voxel_grid

__all__ = [
    "EST",
    "HATS",
    "EventCount",
    "LastTimestamp",
    "MatrixLSTM",
    "TimeSurface",
    "VoxelGrid",
    "to_est",
    "to_event_count",
    "to_hats",
    "to_last_timestamp",
    "to_matrix_lstm",
    "to_time_surface",
    "to_voxel_grid",
    "trilinear_kernel",
]
