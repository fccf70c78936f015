"""Micro-batches of the global batch: `train.batch_size` is one optimizer step's batch, split over the processes and
the accumulation steps; `hardware.oom: halve_batch` may shrink the micro-batch mid-epoch (ups.training.oom)."""

from __future__ import annotations

from torch.utils.data import Sampler


def micro_batch_size(train, world: int = 1) -> int:
    """Samples per process per forward pass: `train.batch_size` is the GLOBAL batch of one optimizer step, split
    over the processes and the accumulation steps (spec checks make it divide evenly). `hardware.oom: halve_batch`
    may halve it during training (`MicroBatches`)."""
    return train.batch_size // (world * train.accumulate_grad_batches)


class MicroBatches(Sampler[list[int]]):
    """Batches of `size` indices from `sampler`; `size` may shrink mid-epoch (`halve_batch`)."""

    def __init__(self, sampler: Sampler[int], size: int) -> None:
        self.sampler, self.size = sampler, size

    # Lightning calls `set_epoch` on `batch_sampler.sampler` itself

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.size)

    def __iter__(self):
        batch: list[int] = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) >= self.size:
                yield batch
                batch = []
        if batch:
            yield batch
