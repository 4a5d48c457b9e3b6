"""Readers on real recordings from shared/data/event-samples (skipped when absent).

Counts come from PROVENANCE.txt where it states them; otherwise the readers are checked against
independent decoders (tonic, expelliarmus, the digests shipped with the ``aedat`` package).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tests.events import conftest as c
from visrep.errors import DataError
from visrep.events import EventStream, read_events


def check_sane(s: EventStream) -> None:
    w, h = s.sensor_size
    assert len(s) > 0
    assert s.x.min() >= 0 and s.x.max() < w and s.y.min() >= 0 and s.y.max() < h
    assert (np.diff(s.t) >= 0).all()
    assert set(np.unique(s.p).tolist()) <= {0, 1}


def test_nmnist_bin() -> None:
    s = read_events(c.sample(c.NMNIST), sensor_size=(34, 34))
    assert len(s) == 4325  # PROVENANCE.txt
    check_sane(s)
    tonic_io = pytest.importorskip("tonic.io")
    ref = tonic_io.read_mnist_file(str(c.sample(c.NMNIST)), dtype=tonic_io.events_struct)
    for k in "xytp":
        assert np.array_equal(ref[k].astype(np.int64), getattr(s, k).astype(np.int64)), k


@pytest.mark.parametrize(
    ("name", "encoding", "size"),
    [
        (c.NCARS, "dat", (304, 240)),
        (c.EVT2, "evt2", (640, 480)),
        (c.EVT2_FAERY, "evt2", (640, 480)),
    ],
)
def test_prophesee_against_expelliarmus(name: str, encoding: str, size: tuple[int, int]) -> None:
    s = read_events(c.sample(name))
    check_sane(s)
    assert s.sensor_size == size  # .dat: Gen1 default; .raw: from the Gen3 plugin name
    expelliarmus = pytest.importorskip("expelliarmus")
    ref = expelliarmus.Wizard(encoding=encoding).read(str(c.sample(name)))
    for k in "xytp":
        assert np.array_equal(ref[k].astype(np.int64), getattr(s, k).astype(np.int64)), k


def test_ncars_fits_crop() -> None:
    s = read_events(c.sample(c.NCARS), sensor_size=(120, 100))  # N-Cars samples are 120x100
    check_sane(s)


def test_evt3_against_expelliarmus_reference() -> None:
    s = read_events(c.sample(c.EVT3))
    check_sane(s)
    assert s.sensor_size == (1280, 720)  # from the Gen4.1 plugin name
    ref = np.load(c.sample(c.EVT3_REF))
    assert len(s) == len(ref)
    for k in "xyp":
        assert np.array_equal(ref[k].astype(np.int64), getattr(s, k).astype(np.int64)), k
    # expelliarmus counts a TIME_LOW that goes down as a 4096 us wrap even when a TIME_HIGH
    # already advanced (and on stray TIME_LOW words), so its times drift by whole 4096 us
    # steps; ours follow the TIME_HIGH values (2861..2863 in this file, about 8.8 ms).
    drift = ref["t"].astype(np.int64) - s.t
    assert (drift % 4096 == 0).all() and (np.diff(drift) >= 0).all()
    assert s.t[0] == ref["t"][0] and s.duration < 3 * 4096


@pytest.mark.parametrize(
    ("name", "size", "n"), [(c.AEDAT4_DAVIS, (346, 260), 78830), (c.AEDAT4_TONIC, (320, 240), None)]
)
def test_aedat4(name: str, size: tuple[int, int], n: int | None) -> None:
    pytest.importorskip("aedat")
    s = read_events(c.sample(name))
    check_sane(s)
    assert s.sensor_size == size
    if n is not None:
        assert len(s) == n
        # sha3-224 digests published with the aedat package's test data (its assets.py)
        digests = {
            "t": ("f1e093cad5afb6ecb971dfa2ef7646ab4ae0f467f73a48804e40bb68", np.uint64),
            "x": ("1d8ea97b0febadfde24dd0b9e608682fc6934fc88656823b15f0e7a7", np.uint16),
            "y": ("18f89da35f8f10b24c3407b03aa7f82bdd7c8e6ab5369e2c30f8bad0", np.uint16),
            "p": ("6f99cf01187da8a05e1a032f3782de51b87e51bdc31356669bdd7cb9", np.bool_),
        }
        for k, (digest, dtype) in digests.items():
            data = getattr(s, k).astype(dtype).tobytes()
            assert hashlib.sha3_224(data).hexdigest() == digest, k


def test_event_stream_dvs() -> None:
    s = read_events(c.sample(c.ES_DVS))
    check_sane(s)
    assert s.sensor_size == (320, 240)
    assert len(s) == 473225 and s.t[0] == 0 and s.duration == 999_000


@pytest.mark.parametrize("name", [c.ES_COLOR, c.ES_GENERIC])
def test_event_stream_without_polarity_refused(name: str) -> None:
    with pytest.raises(DataError, match="no polarity"):
        read_events(c.sample(name))
