from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.events.conftest import random_stream
from visrep.errors import DataError, VisrepError
from visrep.events import EventBatch, EventStream, collate_events


def test_stream_normalises_dtypes_and_is_read_only() -> None:
    s = EventStream(x=[1, 2], y=[0, 3], t=[5, 7], p=[True, False], sensor_size=(4, 4))
    assert (s.x.dtype, s.y.dtype, s.t.dtype, s.p.dtype) == (np.int16, np.int16, np.int64, np.int8)
    assert len(s) == 2 and s.duration == 2 and s.sensor_size == (4, 4)
    with pytest.raises(ValueError):
        s.x[0] = 3
    with pytest.raises(AttributeError):
        s.x = np.zeros(2)  # type: ignore[misc]


def test_stream_does_not_freeze_caller_arrays() -> None:
    x = np.array([1, 2], dtype=np.int16)
    EventStream(x=x, y=x, t=[0, 1], p=[0, 1], sensor_size=(4, 4))
    x[0] = 0  # still writable


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x": [4]}, "x must lie in"),
        ({"y": [-1]}, "y must lie in"),
        ({"p": [2]}, "p must be 0 or 1"),
        ({"t": [3, 1], "x": [0, 0], "y": [0, 0], "p": [0, 0]}, "non-decreasing"),
        ({"x": [0.5]}, "integer"),
        ({"x": [0, 1]}, "one length"),
        ({"x": [[0]]}, "1-D"),
        ({"sensor_size": (0, 3)}, "sensor_size"),
        ({"sensor_size": "big"}, "sensor_size"),
    ],
)
def test_stream_validation(kwargs: dict, match: str) -> None:
    args = {"x": [0], "y": [0], "t": [0], "p": [1], "sensor_size": (4, 3)} | kwargs
    with pytest.raises(DataError, match=match):
        EventStream(**args)
    assert issubclass(DataError, VisrepError)


def test_time_slice_is_half_open() -> None:
    s = EventStream(x=[0] * 5, y=[0] * 5, t=[0, 10, 10, 20, 30], p=[1] * 5, sensor_size=(1, 1))
    assert s.time_slice(10, 30).t.tolist() == [10, 10, 20]
    assert s.time_slice(None, 10).t.tolist() == [0]
    assert len(s.time_slice(40, None)) == 0 and len(s.time_slice(30, 0)) == 0


def test_to_torch_copies() -> None:
    s = random_stream(10)
    d = s.to_torch()
    assert d["t"].dtype == torch.int64 and d["p"].dtype == torch.int8
    d["x"][0] = 99
    assert s.x[0] != 99


def test_batch_from_streams(streams: list[EventStream]) -> None:
    b = EventBatch.from_streams(streams)
    assert len(b) == 3 and b.num_events == 257
    assert b.offsets.tolist() == [0, 200, 200, 257]
    idx = b.batch_index()
    assert idx.tolist() == [0] * 200 + [2] * 57
    assert b.x.dtype == torch.int32 and b.t.dtype == torch.int64 and b.p.dtype == torch.int8
    for i, s in enumerate(streams):
        back = b.stream(i)
        assert np.array_equal(back.t, s.t) and np.array_equal(back.x, s.x)


def test_batch_errors() -> None:
    with pytest.raises(DataError, match="at least one"):
        EventBatch.from_streams([])
    with pytest.raises(DataError, match="share sensor_size"):
        EventBatch.from_streams([random_stream(3), random_stream(3, sensor_size=(5, 5))])
    z = torch.zeros(3, dtype=torch.int64)
    with pytest.raises(DataError, match="offsets"):
        EventBatch(z, z, z, z, torch.tensor([0, 2]), (4, 4))
    with pytest.raises(DataError, match=r"EventBatch\.y"):
        EventBatch(z, z[:2], z, z, torch.tensor([0, 3]), (4, 4))


def test_batch_to_device_and_pin() -> None:
    b = EventBatch.from_streams([random_stream(5)]).to("cpu")
    assert b.device.type == "cpu" and b.sensor_size == (16, 12)


def test_collate_in_dataloader() -> None:
    data = [{"events": random_stream(10 + i, seed=i), "label": i % 2} for i in range(6)]
    loader = DataLoader(data, batch_size=4, collate_fn=collate_events)
    out = next(iter(loader))
    batch, targets = out["events"], out["label"]
    assert isinstance(batch, EventBatch) and len(batch) == 4
    assert targets.tolist() == [0, 1, 0, 1]
    assert batch.counts().tolist() == [10, 11, 12, 13]
    with pytest.raises(DataError):
        collate_events([])
