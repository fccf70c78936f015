"""Lightning datamodule: trajectory-disjoint splits, train-only normalization, windowed training samples.

Sampling is ours, not Lightning's (`use_distributed_sampler=False`): the training order is a function of
(seed, epoch) and each rank takes a disjoint shard, so a resumed run sees exactly the batches it would have.
"""

from __future__ import annotations

import math

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ups.data.source import DataSource
from ups.data.splits import assign_splits
from ups.spec.errors import SpecError
from ups.spec.schema import Spec


class WindowDataset(Dataset):
    """Every (trajectory, start) window of `length` consecutive frames: ((L, C, X) states, (P,) params, dt)."""

    def __init__(self, states: torch.Tensor, params: torch.Tensor, dt: float, length: int) -> None:
        self.states, self.params, self.dt, self.length = states, params, dt, length  # states (N, T, C, X)
        self.per_traj = states.shape[1] - length + 1

    def __len__(self) -> int:
        return self.states.shape[0] * self.per_traj

    def __getitem__(self, i: int):
        traj, start = divmod(i, self.per_traj)
        window = self.states[traj, start : start + self.length]  # (L, C, X)
        return window, self.params[traj], torch.tensor(self.dt, dtype=torch.float32)


class TrajectoryDataset(Dataset):
    """Whole trajectories: ((T, C, X) states, (P,) params, dt)."""

    def __init__(self, states: torch.Tensor, params: torch.Tensor, dt: float) -> None:
        self.states, self.params, self.dt = states, params, dt

    def __len__(self) -> int:
        return self.states.shape[0]

    def __getitem__(self, i: int):
        return self.states[i], self.params[i], torch.tensor(self.dt, dtype=torch.float32)


class EpochSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch), sharded by rank (padded so shards are equal)."""

    def __init__(
        self, num_items: int, *, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1
    ) -> None:
        self.num_items, self.seed, self.shuffle = num_items, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.per_rank = math.ceil(num_items / world_size)

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_items, generator=g).tolist()
        else:
            order = list(range(self.num_items))
        order += order[: self.per_rank * self.world_size - len(order)]  # pad to equal shards
        return iter(order[self.rank :: self.world_size])


class PDEDataModule(L.LightningDataModule):
    def __init__(self, spec: Spec, source: DataSource) -> None:
        super().__init__()
        self.spec, self.source = spec, source
        d = spec.data
        try:
            self.splits = assign_splits(
                source.states.shape[0],
                split_seed=d.split_seed,
                val_fraction=d.val_fraction,
                test_fraction=d.test_fraction,
            )
        except ValueError as exc:
            raise SpecError(
                str(exc), key="data.num_trajectories", got=d.num_trajectories, hint="Use more trajectories."
            ) from None
        states = torch.from_numpy(np.ascontiguousarray(source.states)).unsqueeze(2)  # (N, T, C=1, X)
        params = torch.full((states.shape[0], 1), math.log10(source.nu), dtype=torch.float32)  # (N, P)
        self.states = {k: states[torch.from_numpy(v)] for k, v in self.splits.items()}
        self.params = {k: params[torch.from_numpy(v)] for k, v in self.splits.items()}
        train = self.states["train"]
        self.mean = train.mean(dim=(0, 1, 3))  # (C,) from train only
        self.std = train.std(dim=(0, 1, 3))

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        ds = WindowDataset(
            self.states["train"], self.params["train"], self.source.dt, self.spec.train.unroll_steps + 1
        )
        rank, world = self._rank_world()
        sampler = EpochSampler(len(ds), seed=self.spec.seed, shuffle=True, rank=rank, world_size=world)
        return DataLoader(ds, batch_size=self.spec.train.batch_size, sampler=sampler, drop_last=False)

    def _eval_loader(self, split: str) -> DataLoader:
        ds = TrajectoryDataset(self.states[split], self.params[split], self.source.dt)
        rank, world = self._rank_world()
        # no padding for evaluation: shards are disjoint and cover the split exactly
        idx = list(range(rank, len(ds), world))
        return DataLoader(
            torch.utils.data.Subset(ds, idx), batch_size=self.spec.eval.batch_size, shuffle=False
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
