"""Identity and metric-learning data: identity folders split by person, verification pair
lists (LFW ``pairs.txt`` layout) and P x K batch sampling."""

from visrep.data.embedding.identity import (
    IdentityFolderDataModule,
    IdentitySplit,
    scan_identity_folders,
    split_identities,
)
from visrep.data.embedding.pairs import natural_key, read_pairs
from visrep.data.embedding.sampler import EpochCounter, PKBatchSampler, pk_batches_per_epoch

__all__ = [
    "EpochCounter",
    "IdentityFolderDataModule",
    "IdentitySplit",
    "PKBatchSampler",
    "natural_key",
    "pk_batches_per_epoch",
    "read_pairs",
    "scan_identity_folders",
    "split_identities",
]
