"""Gesture clips (visrep.data.video.gesture): frame labels match the rendered motion, seeds,
held-out digits, caches, the spec and bad options."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from visrep.data import MovingDigitsGestureDataModule
from visrep.data.samples import FRAME_LABELS, LABEL, VIDEO
from visrep.data.video.gesture import (
    DEFAULT_GESTURES,
    PART_DIRECTIONS,
    frame_class_names,
    gesture_name,
)
from visrep.data.video.moving_digits import load_digit_pool
from visrep.errors import ConfigError


def _dm(**kw) -> MovingDigitsGestureDataModule:
    args = dict(train_clips=24, val_clips=6, test_clips=12, seed=3)
    args.update(kw)
    dm = MovingDigitsGestureDataModule(**args)
    dm.setup("fit")
    return dm


def _centroids(video: torch.Tensor) -> torch.Tensor:
    """``(T, 1, H, W) -> (T, 2)`` intensity-weighted (x, y) centroids."""
    x = video[:, 0].double()
    h, w = x.shape[-2:]
    mass = x.sum((-2, -1))
    cx = (x * torch.arange(w, dtype=torch.float64)).sum((-2, -1)) / mass
    cy = (x * torch.arange(h, dtype=torch.float64)[:, None]).sum((-2, -1)) / mass
    return torch.stack((cx, cy), -1)


@pytest.mark.parametrize("jitter", [0.0, 0.25])
def test_frame_labels_match_the_rendered_motion(jitter: float) -> None:
    dm = _dm(jitter=jitter)
    free = torch.tensor([32 - 14, 32 - 14], dtype=torch.float64)  # the wrap period per axis
    gestures = dm.gestures
    moving = resting = 0
    for i in range(len(dm.test_set)):
        s = dm.test_set[i]
        labels, parts = s[FRAME_LABELS], torch.tensor(s["meta"]["frame_parts"])
        assert labels.dtype == torch.int64 and labels.shape == (32,)
        assert labels[0] == 0 and labels[-1] == 0  # rest before and after
        assert set(labels.tolist()) == {0, s[LABEL] + 1}
        assert torch.equal(labels > 0, parts >= 0)
        d = _centroids(s[VIDEO]).diff(dim=0)  # step into frame t = 1 .. T-1
        d = d - free * torch.round(d / free)  # undo the wraps
        lab, part = labels[1:], parts[1:]
        on = lab > 0
        step = d.norm(dim=-1)
        # background: the digit stays (within the jitter and 8-bit rounding)
        assert float(step[~on].max()) < 2 * jitter + 0.15
        # gesture frames: it moves by the clip's speed in the labelled part's direction
        dirs = torch.tensor(
            [PART_DIRECTIONS[gestures[s[LABEL]][k]] for k in part[on].tolist()],
            dtype=torch.float64,
        )
        cos = (d[on] * dirs).sum(-1) / step[on]
        assert float(cos.min()) > 0.9
        assert float(step[on].min()) > 1.5 - 2 * jitter - 0.15
        assert float(step[on].max()) < 2.5 + 2 * jitter + 0.15
        moving += int(on.sum())
        resting += int((~on).sum())
    assert moving > 50 and resting > 50


def test_part_lengths_onset_and_order() -> None:
    dm = _dm(part_frames=(3, 5))
    for i in range(len(dm.train_set)):
        s = dm.train_set.dataset[i]
        parts = s["meta"]["frame_parts"]
        run = [k for k, _ in itertools.groupby(p for p in parts if p >= 0)]
        assert run == list(range(len(dm.gestures[s[LABEL]])))  # the parts, in order, once each
        lengths = [len(list(g)) for k, g in itertools.groupby(parts) if k >= 0]
        assert all(3 <= n <= 5 for n in lengths)
        assert parts.index(0) == s["meta"]["onset"] >= 1
        assert s[LABEL] == i % 6


def test_deterministic_by_seed_and_cache(tmp_path) -> None:
    a, b, c = _dm(), _dm(), _dm(seed=4)
    for split in ("train_set", "val_set", "test_set"):
        sa, sb = getattr(a, split)[1], getattr(b, split)[1]
        assert torch.equal(sa[VIDEO], sb[VIDEO])
        assert torch.equal(sa[FRAME_LABELS], sb[FRAME_LABELS])
    assert not torch.equal(a.test_set[1][VIDEO], c.test_set[1][VIDEO])
    cached = _dm(cache_dir=str(tmp_path))
    assert len(list(tmp_path.glob("*.npy"))) == 3
    for i in (0, 5):
        assert torch.equal(cached.test_set[i][VIDEO], a.test_set[i][VIDEO])
        assert torch.equal(cached.test_set[i][FRAME_LABELS], a.test_set[i][FRAME_LABELS])


def test_test_clips_use_held_out_digits() -> None:
    dm = _dm()
    train_pool, test_pool = dm.train_set.dataset.pool, dm.test_set.pool
    assert dm.val_set.pool is not test_pool
    a = train_pool.images.flatten(1).numpy()
    b = test_pool.images.flatten(1).numpy()
    shared = {r.tobytes() for r in a} & {r.tobytes() for r in b}
    assert len(shared) <= 2  # a couple of identical 8x8 digits exist in scikit-learn's set
    assert torch.equal(test_pool.images, load_digit_pool("sklearn", "test", 14).images)
    assert torch.equal(dm.val_set.pool.images, train_pool.images)


def test_spec_and_frame_classes() -> None:
    dm = _dm()
    spec = dm.spec()
    assert spec.family == "video" and FRAME_LABELS in spec.keys
    assert spec.num_classes == 6 and spec.num_frames == 32
    assert spec.class_names[0] == "right>down" == gesture_name(["right", "down"])
    assert frame_class_names(spec.class_names)[0] == "background"
    assert len(frame_class_names(spec.class_names)) == 7
    batch = next(iter(dm.train_dataloader()))
    assert batch[FRAME_LABELS].shape == (len(batch[LABEL]), 32)


def test_default_vocabulary_needs_the_order() -> None:
    # no single part tells the gesture, nor does the set of parts: only their order
    parts = {p for g in DEFAULT_GESTURES for p in g}
    for p in parts:
        assert sum(p in g for g in DEFAULT_GESTURES) >= 2
    sets = [frozenset(g) for g in DEFAULT_GESTURES]
    assert all(sets.count(s) == 2 for s in sets)


def test_custom_vocabulary() -> None:
    dm = _dm(gestures=[["up"], ["left", "up-left", "up"]], num_frames=24)
    assert dm.spec().class_names == ("up", "left>up-left>up")
    s = dm.train_set.dataset[1]
    assert np.unique(np.array(s["meta"]["frame_parts"])).tolist() == [-1, 0, 1, 2]


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        (dict(gestures=[["right", "sideways"], ["down"]]), "sideways"),
        (dict(gestures=[["right"]]), "at least 2"),
        (dict(gestures=[["right"], ["right"]]), "distinct"),
        (dict(num_frames=12), "num_frames"),
        (dict(jitter=0.9), "jitter"),
        (dict(speed=(0.0, 1.0)), "speed"),
        (dict(part_frames=(0, 3)), "part_frames"),
        (dict(digit_size=32), "digit_size"),
        (dict(test_clips=0), "test_clips"),
    ],
)
def test_bad_options(kw: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        MovingDigitsGestureDataModule(**kw)
