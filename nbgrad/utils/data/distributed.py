"""``DistributedSampler``: each rank's share of a dataset's indices, as PyTorch deals them.

The index list (shuffled per epoch, or in order) is padded by repeating its start until it
divides evenly (or cut with ``drop_last``), and rank r takes every ``num_replicas``-th index
from position r. With ``shuffle=False`` the lists are PyTorch's exactly. With ``shuffle=True``
the permutation comes from nbgrad's generator seeded with ``seed + epoch``: the same on every
rank and every run, but not the permutation ``torch.randperm`` draws (a different generator).
"""
import math

from ... import distributed as dist
from ...factories import Generator
from .sampler import Sampler

__all__ = ["DistributedSampler"]


class DistributedSampler(Sampler):
    """Indices for rank ``rank`` of ``num_replicas``; call ``set_epoch(epoch)`` before each
    epoch so that the shuffle changes (identically on all ranks)."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None:          # from the process group (an error before init_process_group)
            num_replicas = dist.get_world_size()
        if rank is None:
            rank = dist.get_rank()
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        if self.drop_last and len(self.dataset) % self.num_replicas != 0:
            self.num_samples = math.ceil((len(self.dataset) - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(len(self.dataset) / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.shuffle = shuffle
        self.seed = seed

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            indices = Generator().manual_seed(self.seed + self.epoch)._rng.permutation(n).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            padding_size = self.total_size - len(indices)
            if padding_size <= len(indices):
                indices += indices[:padding_size]
            else:
                indices += (indices * math.ceil(padding_size / len(indices)))[:padding_size]
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        self.epoch = epoch
