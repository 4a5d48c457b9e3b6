"""ArrayImageDataset's batch read (``__getitems__`` -> SampleBatch): the collated batch equals
collating the samples read one by one (uint8 and float arrays, a channels-last view, a shuffled
Subset, through a DataLoader), and as a sequence it gives the same sample dicts, so any collate
function keeps working."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import tv_tensors

from visrep.data.base import EpochShuffleSampler, SplitDataModule
from visrep.data.datasets import ArrayImageDataset, SampleBatch, collate_samples, to_nchw
from visrep.data.samples import IMAGE, LABEL, collate


def _datasets() -> list[ArrayImageDataset]:
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (23, 5, 4, 3), dtype=np.uint8)  # to_nchw: a transposed view
    floats = rng.random((23, 1, 4, 5), dtype=np.float32)
    labels = np.arange(23) % 4
    return [ArrayImageDataset(to_nchw(nhwc, "t"), labels), ArrayImageDataset(floats, labels)]


@pytest.mark.parametrize("which", [0, 1])
def test_batches_equal_the_samples_collated_one_by_one(which):
    ds = _datasets()[which]
    sub = Subset(ds, np.random.default_rng(1).permutation(23)[:19].tolist())
    sampler = EpochShuffleSampler(sub, seed=3)
    fast = DataLoader(sub, batch_size=8, sampler=sampler, collate_fn=collate_samples)
    order = list(sampler)
    batches = list(fast)
    assert [len(b[LABEL]) for b in batches] == [8, 8, 3]
    for k, batch in enumerate(batches):
        want = collate([sub[i] for i in order[8 * k : 8 * k + 8]])
        assert type(batch[IMAGE]) is torch.Tensor and batch[IMAGE].is_contiguous()
        assert batch[IMAGE].dtype == want[IMAGE].dtype == torch.float32
        assert torch.equal(batch[IMAGE], want[IMAGE])  # exactly: the same float32 products
        assert batch[LABEL].dtype == torch.int64 and torch.equal(batch[LABEL], want[LABEL])


def test_a_sample_batch_is_the_sequence_of_its_samples():
    ds = _datasets()[0]
    idx = [5, 0, 22, 5]
    got = ds.__getitems__(idx)
    assert isinstance(got, SampleBatch) and len(got) == 4
    for sample, i in zip([*got, got[-1]], [*idx, idx[-1]], strict=True):
        assert isinstance(sample[IMAGE], tv_tensors.Image) and sample[LABEL] == ds[i][LABEL]
        assert torch.equal(sample[IMAGE], ds[i][IMAGE])
    assert [s[LABEL] for s in got[1:3]] == [ds[0][LABEL], ds[22][LABEL]]
    with pytest.raises(IndexError):
        got[4]
    # a collate function that knows nothing of SampleBatch gets the same batch
    plain = collate(got)
    assert torch.equal(plain[IMAGE], got.batch[IMAGE]) and torch.equal(
        plain[LABEL], got.batch[LABEL]
    )
    # sample dicts do not share memory with the batch
    got[0][IMAGE].zero_()
    assert torch.equal(got.batch[IMAGE][0], ds[5][IMAGE])


def test_data_modules_collate_sample_lists_as_before():
    samples = [{IMAGE: torch.ones(1, 2, 2), LABEL: 1}, {IMAGE: torch.zeros(1, 2, 2), LABEL: 0}]
    assert SplitDataModule.collate_fn is collate_samples
    out = collate_samples(samples)
    assert out[IMAGE].shape == (2, 1, 2, 2) and out[LABEL].tolist() == [1, 0]
