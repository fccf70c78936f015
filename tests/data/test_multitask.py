"""Task-balanced sampling: proportions follow the weights, rank shards are disjoint and cover each task."""

from __future__ import annotations

import math

import pytest
import torch

from ups.data.datamodule import TaskBalancedSampler, WindowDataset


def _dataset(sizes=(40, 5, 17), frames=(12, 12, 8)) -> WindowDataset:
    tasks = [(torch.zeros(n, t, 1, 4), torch.zeros(n, 6), 0.1) for n, t in zip(sizes, frames)]
    return WindowDataset(tasks, length=3)


def test_observed_task_proportions_match_the_weights_not_the_sizes():
    ds = _dataset()
    weights = [1.0, 2.0, 1.0]
    n = 40_000
    sampler = TaskBalancedSampler(ds, weights, num_samples=n, seed=0)
    tasks = torch.tensor(
        [int(torch.searchsorted(torch.tensor(ds.offsets), i, right=True)) - 1 for i in sampler]
    )
    counts = torch.bincount(tasks, minlength=3).double()
    expected = torch.tensor(weights, dtype=torch.float64) / sum(weights) * n
    # each count is binomial: stay within 4 standard deviations (false alarm rate < 1e-4)
    sd = torch.sqrt(expected * (1 - expected / n))
    assert torch.all((counts - expected).abs() < 4 * sd), (counts, expected)
    # and a Pearson chi-square test with 2 degrees of freedom at p = 0.001 (critical value 13.8)
    assert float(((counts - expected) ** 2 / expected).sum()) < 13.8


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_rank_shards_are_disjoint_and_cover_every_task(world_size):
    ds = _dataset()
    samplers = [
        TaskBalancedSampler(ds, [1, 1, 1], num_samples=4000, seed=3, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    for k, (states, _, _) in enumerate(ds.tasks):
        shards = [set(s.shard(k)) for s in samplers]
        assert set().union(*shards) == set(range(states.shape[0]))
        assert sum(len(sh) for sh in shards) == states.shape[0]
    # every drawn window belongs to the drawing rank's shard of its task
    for rank, sampler in enumerate(samplers):
        for i in list(sampler)[:500]:
            k = int(torch.searchsorted(torch.tensor(ds.offsets), i, right=True)) - 1
            traj = (i - int(ds.offsets[k])) // ds.per_traj[k]
            assert traj % world_size == rank


def test_draws_depend_only_on_seed_epoch_and_rank():
    ds = _dataset()
    a = TaskBalancedSampler(ds, [1, 1, 1], num_samples=100, seed=1)
    b = TaskBalancedSampler(ds, [1, 1, 1], num_samples=100, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    assert math.isclose(len(a), 100)
