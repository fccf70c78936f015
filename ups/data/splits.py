"""Trajectory-level train/val/test assignment that never moves a trajectory between splits.

A trajectory's split depends only on (its index, `data.split_seed`): changing `seed`, `num_trajectories` or
the order of loading cannot move a test member into train.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


def split_of(index: int, *, split_seed: int, val_fraction: float, test_fraction: float) -> str:
    digest = hashlib.sha256(f"ups-split:{split_seed}:{index}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64  # uniform in [0, 1)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def assign_splits(
    num_trajectories: int, *, split_seed: int, val_fraction: float, test_fraction: float
) -> dict[str, np.ndarray]:
    """Indices of each split (sorted). Raises ValueError if a split comes out empty."""
    labels = [
        split_of(i, split_seed=split_seed, val_fraction=val_fraction, test_fraction=test_fraction)
        for i in range(num_trajectories)
    ]
    splits = {
        name: np.array([i for i, s in enumerate(labels) if s == name], dtype=np.int64) for name in SPLIT_NAMES
    }
    empty = [name for name, idx in splits.items() if len(idx) == 0]
    if empty:
        raise ValueError(
            f"split(s) {empty} are empty with num_trajectories={num_trajectories}, "
            f"val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
    return splits
