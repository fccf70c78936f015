import numpy as np
import torch

from ups.data.datamodule import EpochSampler
from ups.data.splits import assign_splits


def test_splits_disjoint_cover_and_roughly_sized():
    s = assign_splits(2000, split_seed=0, val_fraction=0.1, test_fraction=0.1)
    all_idx = np.concatenate(list(s.values()))
    assert len(all_idx) == 2000 and len(np.unique(all_idx)) == 2000
    assert 150 < len(s["test"]) < 250 and 150 < len(s["val"]) < 250


def test_membership_stable_when_num_trajectories_changes():
    small = assign_splits(500, split_seed=3, val_fraction=0.1, test_fraction=0.1)
    large = assign_splits(5000, split_seed=3, val_fraction=0.1, test_fraction=0.1)
    for name in small:
        assert set(small[name]) == {i for i in large[name] if i < 500}


def test_split_seed_changes_membership():
    a = assign_splits(500, split_seed=0, val_fraction=0.1, test_fraction=0.1)
    b = assign_splits(500, split_seed=1, val_fraction=0.1, test_fraction=0.1)
    assert set(a["test"]) != set(b["test"])


def test_epoch_sampler_depends_only_on_seed_and_epoch_and_shards_disjointly():
    a, b = EpochSampler(103, seed=5, shuffle=True), EpochSampler(103, seed=5, shuffle=True)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)
    shards = [EpochSampler(103, seed=5, shuffle=True, rank=r, world_size=4) for r in range(4)]
    for s in shards:
        s.set_epoch(3)
    items = [i for s in shards for i in s]
    assert len({len(list(s)) for s in shards}) == 1  # equal shard sizes (padded)
    assert set(items) == set(range(103))
    assert torch.tensor(items).numel() == 104  # 1 padded duplicate
