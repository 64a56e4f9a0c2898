"""Token-budget batching: training batches filled to a token count instead of a fixed number of examples.

Review groups vary from a few hundred to 4096 source tokens. With a fixed batch size, the batch has to be
small enough for the longest examples, and short examples waste the GPU. Here each batch holds as many
examples as fit `max_tokens` once padded (rows x padded length), so short examples travel in large batches.
"""

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


def _round_up(n: int, multiple: int | None) -> int:
    return n if not multiple else -(-n // multiple) * multiple


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Batches of example indices whose padded size (rows x longest, rounded up to `pad_to_multiple_of`)
    stays within `max_tokens`.

    Examples are shuffled, cut into pools of `pool_size` batches' worth, sorted by length inside each pool
    (similar lengths share a batch, so little padding), packed greedily, and the batches shuffled again:
    seeded by `seed` and the epoch, so every process and restart sees the same batches. With several
    processes, each takes every `num_replicas`-th batch of the same list (trimmed to an equal count).
    """

    def __init__(self, lengths: Sequence[int], max_tokens: int, pad_to_multiple_of: int | None = None,
                 max_batch_size: int | None = None, shuffle: bool = True, seed: int = 0, pool_size: int = 100,
                 num_replicas: int = 1, rank: int = 0):
        longest = _round_up(max(lengths), pad_to_multiple_of)
        if longest > max_tokens:
            raise ValueError(f"max_tokens={max_tokens} is below the longest example ({longest} tokens padded)")
        self.lengths = list(lengths)
        self.max_tokens, self.pad_to_multiple_of, self.max_batch_size = max_tokens, pad_to_multiple_of, max_batch_size
        self.shuffle, self.seed, self.pool_size = shuffle, seed, pool_size
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it at every epoch
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(f"{self.seed}:{self.epoch}")
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        # a pool's worth of examples: enough for sorting to pay, few enough to keep batches varied
        typical_rows = max(1, self.max_tokens // max(1, _round_up(max(self.lengths), self.pad_to_multiple_of)))
        pool = max(1, self.pool_size * typical_rows)
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start:start + pool], key=self.lengths.__getitem__, reverse=True)
            batch: list[int] = []
            longest = 0
            for index in chunk:
                padded = _round_up(max(longest, self.lengths[index]), self.pad_to_multiple_of)
                full = self.max_batch_size is not None and len(batch) >= self.max_batch_size
                if batch and (padded * (len(batch) + 1) > self.max_tokens or full):
                    batches.append(batch)
                    batch, padded = [], _round_up(self.lengths[index], self.pad_to_multiple_of)
                batch.append(index)
                longest = padded
            if batch:
                batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        if self.num_replicas > 1:
            per_replica = len(batches) // self.num_replicas
            batches = batches[self.rank:per_replica * self.num_replicas:self.num_replicas]
        return batches

    def _epoch_batches(self) -> list[list[int]]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._batches())
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._epoch_batches())

    def __len__(self) -> int:
        return len(self._epoch_batches())
