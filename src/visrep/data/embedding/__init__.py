"""Identity and metric-learning data: identity folders split by person, verification pair
lists (LFW ``pairs.txt`` layout) and P x K batch sampling."""

from visrep.data.embedding.sampler import EpochCounter, PKBatchSampler, pk_batches_per_epoch

__all__ = ["EpochCounter", "PKBatchSampler", "pk_batches_per_epoch"]
