"""The `pdebench` format: PDEBench's HDF5 layouts, which ups's own generated files also use.

- 1D trajectories: `tensor` (N, T, X), `x-coordinate` (X,), `t-coordinate` (T or T + 1 entries), attributes such
  as `Nu`; per-trajectory parameters as extra datasets of shape (N,) (KS's `L`).
- 1D steady data (ups's): `tensor` (N, 1, X) solutions, the inputs as datasets named by the attribute `inputs`
  (`a,f`: coefficient and forcing, each (N, X)).

The family comes from the file: its `equation` attribute (ups's files), else a family whose name pattern matches
the file name (PDEBench's `1D_Burgers_Sols_Nu0.01.hdf5`), else none. Parameters come from the attributes and the
file name as the family's row says (`Nu`, `..._Nu0.01.hdf5`). Options (`data.options`): `allow_legacy` (accept
PDEBench's older Burgers release on x ∈ (−1, 1)).

Returned at native resolution, read lazily: `states` reads only the trajectories asked for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ups import catalog
from ups.data.pdebench import PDEBenchFile
from ups.plugin import Trajectories
from ups.spec.errors import SpecError


class ChannelsLast1D:
    """A (N, T, X) dataset read as (N, T, 1, X), by trajectory."""

    def __init__(self, path: Path, name: str, shape: tuple[int, ...]) -> None:
        self.path, self.name = path, name
        self.shape = (shape[0], shape[1], 1, *shape[2:])
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        with h5py.File(self.path, "r") as f:
            return np.asarray(read_rows(f[self.name], key), dtype=np.float32)[:, :, None]


def read_rows(dataset, key) -> np.ndarray:
    """Rows of an h5py dataset by a slice, an int or any array of indices (h5py wants increasing, unique ones)."""
    if isinstance(key, slice) or np.isscalar(key):
        out = dataset[key]
        return out[None] if np.isscalar(key) else out
    rows = np.asarray(key, dtype=np.int64).reshape(-1)
    unique, inverse = np.unique(rows, return_inverse=True)
    if unique.size and (unique[0] < 0 or unique[-1] >= len(dataset)):
        raise IndexError(f"trajectory indices must lie in [0, {len(dataset)})")
    if unique.size == 0:
        return dataset[:0]
    contiguous = unique[-1] - unique[0] + 1 == unique.size
    block = dataset[int(unique[0]) : int(unique[-1]) + 1] if contiguous else dataset[unique.tolist()]
    return block[inverse]


def family_of(path: Path, attrs: dict) -> str | None:
    """The family a file says it holds: its `equation` attribute, else a family whose pattern matches its name."""
    families = catalog.rows("families")
    named = attrs.get("equation") or attrs.get("family")
    if isinstance(named, str) and named in families:
        return named
    for row in families.values():
        for pattern in getattr(row, "recognize", ()):
            if re.search(pattern, path.name):
                return row.name
    return None


def _param_from_file(param, attrs: dict, path: Path) -> float | None:
    if param.file_attr and param.file_attr in attrs:
        return float(attrs[param.file_attr])
    if param.file_name and (m := re.search(param.file_name, path.name)):
        return float(m.group(1))
    return None


def read(path: str, cfg: dict[str, Any]) -> Trajectories:
    file = Path(path)
    reader = PDEBenchFile(file, allow_legacy=bool(cfg.get("allow_legacy", False)))
    attrs = reader.attrs
    family = family_of(file, attrs)
    params: dict[str, Any] = {}
    if family is not None:
        row = catalog.get("families", family)
        for param in row.params:
            if param.per_trajectory:
                if reader.has_dataset(param.name):
                    params[param.name] = np.asarray(
                        reader.read_dataset(param.name, np.arange(reader.num_trajectories)), dtype=np.float64
                    )
                continue
            value = _param_from_file(param, attrs, file)
            if value is not None:
                params[param.name] = value
    inputs = None
    if isinstance(attrs.get("inputs"), str):  # ups's steady files: the inputs are datasets named in `inputs`
        names = [n.strip() for n in attrs["inputs"].split(",") if n.strip()]
        with h5py.File(file, "r") as f:
            missing = [n for n in names if n not in f]
            if missing:
                raise SpecError(
                    f"the file names inputs {names} but has no {missing[0]!r} dataset",
                    key="data.path",
                    got=str(file),
                )
            inputs = np.stack(
                [np.asarray(f[n][...], dtype=np.float32) for n in names], axis=1
            )  # (N, C_in, X)
    return Trajectories(
        states=ChannelsLast1D(file, "tensor", reader.shape),
        dt=reader.dt_file if reader.num_frames > 1 else 1.0,
        channels=tuple(str(c) for c in attrs.get("channels", "u").split(",")),
        coords=(reader.x,),
        params=params,
        family=family,
        inputs=inputs,
        attrs=attrs,
    )
