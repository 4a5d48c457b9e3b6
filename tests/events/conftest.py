"""Fixtures for the event tests: real sample files (skipped when absent) and small streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from visrep.events import EventStream

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "event-samples"


def sample(relative: str) -> Path:
    """Path of a real sample under ``shared/data/event-samples``; skip the test when absent."""
    path = SAMPLES / relative
    if not path.is_file():
        pytest.skip(f"event sample {relative} not available")
    return path


NMNIST = "tonic/test/test_data/sample_nmnist.bin"
NCARS = "tonic/test/test_data/sample_ncars.dat"
AEDAT4_TONIC = "tonic/test/test_data/sample.aedat4"
AEDAT4_DAVIS = "aedat-sdist-2.3.0/tests/data/test_data.aedat4"
EVT2 = "expelliarmus/tests/sample-files/evt2_sample.raw"
EVT2_FAERY = "faery/tests/data/evt2.raw"
EVT3 = "expelliarmus/tests/sample-files/evt3_sample.raw"
EVT3_REF = "expelliarmus/tests/sample-files/evt3_sample.npy"
ES_DVS = "faery/tests/data/dvs.es"
ES_COLOR = "faery/tests/data/color.es"
ES_GENERIC = "faery/tests/data/generic.es"


def random_stream(
    n: int, sensor_size: tuple[int, int] = (16, 12), seed: int = 0, span: int = 10_000
) -> EventStream:
    """``n`` uniformly random events, sorted in time (with some equal timestamps)."""
    rng = np.random.default_rng(seed)
    w, h = sensor_size
    return EventStream(
        x=rng.integers(0, w, n),
        y=rng.integers(0, h, n),
        t=np.sort(rng.integers(0, span, n)),
        p=rng.integers(0, 2, n),
        sensor_size=sensor_size,
    )


@pytest.fixture
def streams() -> list[EventStream]:
    """Three random streams of different lengths, one of them empty."""
    return [random_stream(200, seed=1), EventStream.empty((16, 12)), random_stream(57, seed=2)]


@pytest.fixture(autouse=True)
def _single_thread():
    """The tensors here are tiny: one intra-op thread avoids OpenMP contention on shared CPUs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
