"""Lightning datamodule for steady families: (coefficient, forcing) → solution samples, split by sample like
trajectories are (hash of index and `data.split_seed`), with the two classical baselines precomputed.

Legend: N samples, X grid points, P PDE parameters.
"""

from __future__ import annotations

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from ups.data.batches import MicroBatches, micro_batch_size
from ups.data.params import layout_for, param_vector
from ups.data.splits import SPLIT_NAMES, assign_splits
from ups.data.steady import generate_steady, harmonic_baseline
from ups.spec.errors import SpecError
from ups.spec.schema import Spec


class SteadyDataModule(L.LightningDataModule):
    """Batches are (a (B, X), f (B, X), u (B, X), params (B, P), harmonic-mean solve (B, X))."""

    def __init__(self, spec: Spec, *, layout: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.spec = spec
        d = spec.data
        if d.path is not None:
            raise SpecError("steady families are generated, not read from files", key="data.path", got=d.path)
        data = generate_steady(num_samples=d.num_trajectories, num_points=d.num_points, seed=d.generator.seed)
        self.layout = layout or layout_for([d.family])
        params = np.asarray([param_vector(self.layout, d.family, {})], dtype=np.float32)  # (1, P)
        harmonic = harmonic_baseline(data.a.astype(np.float64), data.f.astype(np.float64)).astype(np.float32)
        splits = assign_splits(
            d.num_trajectories,
            split_seed=d.split_seed,
            val_fraction=d.val_fraction,
            test_fraction=d.test_fraction,
        )
        self.tensors = {}
        for s in SPLIT_NAMES:
            idx = splits[s]
            self.tensors[s] = tuple(
                torch.from_numpy(np.ascontiguousarray(v[idx]))
                for v in (
                    data.a,
                    data.f,
                    data.u,
                    np.broadcast_to(params, (d.num_trajectories, params.shape[1])),
                    harmonic,
                )
            )
        a, f, u = self.tensors["train"][:3]
        self.inputs = torch.stack([a.log(), f], dim=1)  # (N, 2, X) for the model's normalization
        self.mean_solution = u.mean(dim=0)  # (X,): the trivial baseline
        self.fingerprint = f"steady-{d.num_trajectories}-{d.num_points}-{d.generator.seed}"

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, split: str, *, shuffle: bool) -> DataLoader:
        rank, world = self._rank_world()
        tensors = tuple(t[rank::world] for t in self.tensors[split])
        data = TensorDataset(*tensors)
        if not shuffle:
            return DataLoader(data, batch_size=self.spec.eval.batch_size, shuffle=False)
        g = torch.Generator().manual_seed(
            self.spec.seed + rank
        )  # as DataLoader(shuffle=True, generator=g) draws
        micro = micro_batch_size(self.spec.train, world)
        sampler = MicroBatches(RandomSampler(data, generator=g), micro)
        return DataLoader(data, batch_sampler=sampler, generator=g)  # workers' base seed from g, as before

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
