"""The seeded train / val / test split of every data module (visrep.data.base)."""

import numpy as np
import pytest

from visrep.data.base import stratified_split
from visrep.errors import ConfigError


def test_split_is_seeded_disjoint_and_stratified():
    targets = np.repeat(np.arange(4), 25)
    keep, held = stratified_split(targets, 0.2, seed=3)
    again = stratified_split(targets, 0.2, seed=3)
    assert np.array_equal(keep, again[0]) and np.array_equal(held, again[1])
    assert len(held) == 20 and not set(keep) & set(held)
    assert np.array_equal(np.sort(np.concatenate([keep, held])), np.arange(100))
    assert np.bincount(targets[held]).tolist() == [5, 5, 5, 5]


def test_holding_out_everything_is_a_config_error_naming_the_option():
    with pytest.raises(ConfigError, match=r"data.split.val_fraction 0.34 holds out 1 of the 1"):
        stratified_split(np.zeros(1, dtype=np.int64), 0.34, 0, "data.split.val_fraction")
    with pytest.raises(ConfigError, match="holds out 3 of the 3"):
        stratified_split(np.zeros(3, dtype=np.int64), 3, 0)
