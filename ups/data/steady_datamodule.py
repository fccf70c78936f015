"""Lightning datamodule for steady data: inputs (coefficients, forcing) → solution samples, split by sample like
trajectories are (hash of index and `data.split_seed`), with the baselines precomputed: the mean training solution,
and the family's own cheap classical solve where it has one.

Legend: N samples, C_in input channels, C solution channels, *grid one or two grid axes, P PDE parameters.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from ups import catalog
from ups.data.batches import MicroBatches, micro_batch_size
from ups.data.datamodule import layout_from
from ups.data.params import param_names
from ups.data.source import DataSource, load_source
from ups.data.splits import SPLIT_NAMES, assign_splits
from ups.plugin import ModelIO
from ups.spec.errors import SpecError
from ups.spec.schema import Spec


class SteadyDataModule(L.LightningDataModule):
    """Batches are (inputs (B, C_in, *grid), solution (B, C, *grid), params (B, P), classical solve (B, C, *grid);
    NaN where the family has none)."""

    def __init__(
        self,
        spec: Spec,
        home: Path,
        *,
        layout: tuple[str, ...] | None = None,
        source: DataSource | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        d = spec.data
        if d.tasks:
            raise SpecError("steady data is one data set: no `data.tasks`", key="data.tasks")
        src = source or load_source(d, home)
        if src.inputs is None:
            raise SpecError(
                "the steady_prior stage needs steady data (inputs → solution); this file holds trajectories",
                key="data.path" if d.path else "data.family",
                got=d.path or d.family,
            )
        self.source = src
        splits = assign_splits(
            src.states.shape[0],
            split_seed=d.split_seed,
            val_fraction=d.val_fraction,
            test_fraction=d.test_fraction,
        )
        self.layout = tuple(layout) if layout else layout_from([src], [splits["train"]])
        inputs = src.inputs  # (N, C_in, *grid)
        solution = src.states[:, 0]  # (N, C, *grid)
        params = src.vectors(self.layout)  # (N, P)
        row = catalog.get("families", src.family) if src.family else None
        if row is not None and row.steady_baseline:
            classical = catalog.load(row.steady_baseline)(inputs).astype(np.float32)
            self.baseline_name = "baseline_harmonic_nrmse"
        else:
            classical = np.full_like(solution, np.nan)
            self.baseline_name = None
        self.tensors = {}
        for s in SPLIT_NAMES:
            idx = splits[s]
            self.tensors[s] = tuple(
                torch.from_numpy(np.ascontiguousarray(v[idx])) for v in (inputs, solution, params, classical)
            )
        self.inputs, train_solution = self.tensors["train"][0], self.tensors["train"][1]
        self.train_solutions = train_solution
        self.mean_solution = train_solution.mean(dim=0)  # (C, *grid): the trivial baseline
        self.transforms = tuple(row.input_transforms) if row is not None else ()
        self.fingerprint = src.fingerprint
        grid = tuple(solution.shape[2:])
        self.io = ModelIO(
            spatial_dims=len(grid),
            in_channels=inputs.shape[1],
            out_channels=solution.shape[1],
            num_params=len(self.layout),
            grid=grid,
            channels=tuple(src.channels),
            param_names=param_names(self.layout),
            periodic=(src.periodic,) * len(grid),
        )

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
