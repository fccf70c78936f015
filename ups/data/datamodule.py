"""Lightning datamodule: trajectory-disjoint splits, train-only normalization, windowed training samples,
one or several tasks.

Sampling is ours, not Lightning's (`use_distributed_sampler=False`): the training order is a function of
(seed, epoch, rank) and each rank takes a disjoint shard, so a resumed run sees exactly the batches it would have.
"""

from __future__ import annotations

import math

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ups.data.batches import MicroBatches, micro_batch_size
from ups.data.params import family_params, layout_for, param_names, unscaled_params
from ups.data.source import DataSource
from ups.data.splits import SPLIT_NAMES, assign_splits
from ups.plugin import ModelIO
from ups.spec.errors import SpecError
from ups.spec.schema import Spec


def layout_from(sources: list[DataSource], train: list[np.ndarray]) -> tuple[str, ...]:
    """The conditioning layout of these data sets: their families' one-hot entries and fixed scalings, and every
    other parameter z-scored with the statistics of the training trajectories (`train`: their indices per source)."""
    values: dict[str, list[float]] = {}
    for src, idx in zip(sources, train):
        scaled = {p.name for p in family_params(src.family) if p.feature}
        names = (set(src.params) | set(src.trajectory_params)) - scaled
        names |= set(unscaled_params(src.family))
        for name in names:
            if name in src.trajectory_params:
                values.setdefault(name, []).extend(float(v) for v in src.trajectory_params[name][idx])
            elif name in src.params:
                values.setdefault(name, []).extend([float(src.params[name])] * max(len(idx), 1))
    extra = {}
    for name, vals in values.items():
        arr = np.asarray(vals, dtype=np.float64)
        extra[name] = (float(arr.mean()), float(arr.std()) if arr.std() > 0 else 1.0)
    return layout_for([s.family for s in sources], extra)


class WindowDataset(Dataset):
    """Every (task, trajectory, start) window of `length` frames, tasks one after another:
    ((L, C, *grid) states, (P,) params, dt, task)."""

    def __init__(self, tasks: list[tuple[torch.Tensor, torch.Tensor, float]], length: int) -> None:
        self.tasks, self.length = tasks, length  # each: states (N, T, C, *grid), params (N, P), dt
        self.per_traj = [states.shape[1] - length + 1 for states, _, _ in tasks]
        sizes = [states.shape[0] * n for (states, _, _), n in zip(tasks, self.per_traj)]
        self.offsets = np.cumsum([0, *sizes])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int):
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        states, params, dt = self.tasks[k]
        traj, start = divmod(i - int(self.offsets[k]), self.per_traj[k])
        window = states[traj, start : start + self.length]  # (L, C, *grid)
        return window, params[traj], torch.tensor(dt, dtype=torch.float32), k


class TrajectoryDataset(Dataset):
    """Whole (evaluation-window) trajectories: ((T, C, *grid) states, (P,) params, dt, task)."""

    def __init__(
        self, states: torch.Tensor, params: torch.Tensor, dts: torch.Tensor, tasks: torch.Tensor
    ) -> None:
        self.states, self.params, self.dts, self.tasks = states, params, dts, tasks

    def __len__(self) -> int:
        return self.states.shape[0]

    def __getitem__(self, i: int):
        return self.states[i], self.params[i], self.dts[i], self.tasks[i]


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


class TaskBalancedSampler(Sampler[int]):
    """Draws a task by its weight (not by its size), then a window of one of this rank's trajectories of it.

    Each task's trajectories are partitioned across ranks (`shard`): disjoint shards that together cover the task,
    so DDP needs no second sharding. The draws depend only on (seed, epoch, rank).
    """

    def __init__(
        self,
        dataset: WindowDataset,
        weights: list[float],
        *,
        num_samples: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.dataset, self.num_samples, self.seed = dataset, num_samples, seed
        self.rank, self.world_size = rank, world_size
        self.weights = torch.tensor(weights, dtype=torch.float64)
        self.epoch = 0

    def shard(self, task: int, rank: int | None = None) -> list[int]:
        num_traj = self.dataset.tasks[task][0].shape[0]
        return list(range(self.rank if rank is None else rank, num_traj, self.world_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_009 + self.rank)
        tasks = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g).tolist()
        shards = [self.shard(k) for k in range(len(self.dataset.tasks))]
        for k in tasks:
            traj = shards[k][int(torch.randint(len(shards[k]), (1,), generator=g))]
            start = int(torch.randint(self.dataset.per_traj[k], (1,), generator=g))
            yield int(self.dataset.offsets[k]) + traj * self.dataset.per_traj[k] + start


class PDEDataModule(L.LightningDataModule):
    def __init__(
        self, spec: Spec, sources: list[DataSource], *, layout: tuple[str, ...] | None = None
    ) -> None:
        """`layout`: the PDE-parameter layout of the model being trained or evaluated (default: the spec's)."""
        super().__init__()
        self.spec, self.sources = spec, sources
        self.task_names = spec.data.task_names()
        self.weights = [t.weight for t in spec.data.tasks] or [1.0]
        configs = spec.data.sources()
        eval_len = spec.eval.context_frames + spec.eval.horizon
        splits_of = []
        for k, (cfg, src) in enumerate(zip(configs, sources)):
            key = f"data.tasks.{k}." if self.task_names else "data."
            try:
                splits_of.append(
                    assign_splits(
                        src.states.shape[0],
                        split_seed=cfg.split_seed,
                        val_fraction=cfg.val_fraction,
                        test_fraction=cfg.test_fraction,
                    )
                )
            except ValueError as exc:
                raise SpecError(
                    str(exc),
                    key=f"{key}num_trajectories",
                    got=cfg.num_trajectories,
                    hint="Use more trajectories.",
                ) from None
        self.layout = tuple(layout) if layout else layout_from(sources, [sp["train"] for sp in splits_of])
        self.train: list[tuple[torch.Tensor, torch.Tensor, float]] = []
        per_split: dict[str, list] = {s: [] for s in SPLIT_NAMES}
        for k, (cfg, src, splits) in enumerate(zip(configs, sources, splits_of)):
            states = torch.from_numpy(np.ascontiguousarray(src.states))  # (N, T, C, *grid)
            params = torch.from_numpy(src.vectors(self.layout))  # (N, P)
            idx = {s: torch.from_numpy(v) for s, v in splits.items()}
            train_frames = cfg.train_frames or states.shape[1]
            self.train.append((states[idx["train"], :train_frames], params[idx["train"]], src.dt))
            for s in SPLIT_NAMES:
                n = len(idx[s])
                per_split[s].append(
                    (states[idx[s], :eval_len], params[idx[s]], torch.full((n,), src.dt), torch.full((n,), k))
                )
        # evaluation windows of every task, concatenated: (N, E, C, *grid) and per-sample params, dt, task
        self.states = {s: torch.cat([p[0] for p in parts]) for s, parts in per_split.items()}
        self.params = {s: torch.cat([p[1] for p in parts]) for s, parts in per_split.items()}
        self.dts = {s: torch.cat([p[2] for p in parts]) for s, parts in per_split.items()}
        self.tasks = {s: torch.cat([p[3] for p in parts]).long() for s, parts in per_split.items()}
        pooled = torch.cat([t[0].flatten(0, 1) for t in self.train])  # (N·T, C, *grid), train only
        dims = (0, *range(2, pooled.ndim))
        self.mean = pooled.mean(dim=dims)  # (C,)
        self.std = pooled.std(dim=dims)
        first = sources[0]
        self.io = ModelIO(
            spatial_dims=len(first.grid),
            in_channels=len(first.channels),
            out_channels=len(first.channels),
            num_params=len(self.layout),
            grid=first.grid,
            channels=tuple(first.channels),
            param_names=param_names(self.layout),
            periodic=(first.periodic,) * len(first.grid),
        )

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataset(self) -> WindowDataset:
        return WindowDataset(self.train, self.spec.train.unroll_steps + 1)

    def micro_batch_size(self, world: int = 1) -> int:
        return micro_batch_size(self.spec.train, world)

    def train_dataloader(self) -> DataLoader:
        ds = self.train_dataset()
        rank, world = self._rank_world()
        t = self.spec.train
        micro = self.micro_batch_size(world)
        if self.task_names:
            n = t.batches_per_epoch * micro if t.batches_per_epoch else math.ceil(len(ds) / world)
            sampler: Sampler = TaskBalancedSampler(
                ds, self.weights, num_samples=n, seed=self.spec.seed, rank=rank, world_size=world
            )
        else:
            sampler = EpochSampler(len(ds), seed=self.spec.seed, shuffle=True, rank=rank, world_size=world)
        return DataLoader(ds, batch_sampler=MicroBatches(sampler, micro))

    def _eval_loader(self, split: str) -> DataLoader:
        ds = TrajectoryDataset(self.states[split], self.params[split], self.dts[split], self.tasks[split])
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
