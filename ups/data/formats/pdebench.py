"""The `pdebench` format: PDEBench's HDF5 layouts, which ups's own generated files also use.

Legend: N trajectories (steady data: samples), T frames, C channels, X (and Y) points per grid axis.

The layout is told by what the file holds (`pdebench2d.layout_of`):

- 1D trajectories: `tensor` (N, T, X), `x-coordinate` (X,), `t-coordinate` (T or T + 1 entries), attributes such
  as `Nu`; per-trajectory parameters as extra datasets of shape (N,) (KS's `L`).
- 1D steady data (ups's): `tensor` (N, 1, X) solutions, the inputs as datasets named by the attribute `inputs`
  (`a,f`: coefficient and forcing, each (N, X)).
- 2D `tensor` (N, T, X, Y) with a `y-coordinate` (Y,) too: ups's own 2D files (steady ones name their (N, X, Y)
  inputs in `inputs`, like 1D) and single-tensor PDEBench-like files.
- PDEBench's 2D compressible CFD (`density`, `Vx`, `Vy`, `pressure`, (N, T, X, Y) each), per-sample groups
  (diffusion–reaction, shallow water: `0000/data` (T, X, Y, C), ...) and Darcy flow (`nu` (N, X, Y) with
  `tensor` (N, 1, X, Y)): `ups.data.formats.pdebench2d`, which settles their parameters and family itself.

For 1D and 2D `tensor` files the family comes from the file: its `equation` attribute (ups's files), else a
family of as many grid axes whose name pattern matches the file name (PDEBench's `1D_Burgers_Sols_Nu0.01.hdf5`),
else none. Parameters come from the attributes and the file name as the family's row says (`Nu`,
`..._Nu0.01.hdf5`). Options (`data.options`): `allow_legacy` (accept PDEBench's older Burgers release on
x ∈ (−1, 1)).

Returned at native resolution, read lazily: `states` reads only the trajectories asked for.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ups import catalog
from ups.data.formats import pdebench2d
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
    read, order = pdebench2d.selection(key, len(dataset))
    block = dataset[read]
    return block if order is None else block[order]


def family_of(path: Path, attrs: dict, spatial_dims: int = 1) -> str | None:
    """The family a file of `spatial_dims` grid axes says it holds: its `equation` attribute, else a family whose
    pattern matches its name; only families of as many grid axes."""
    families = {
        name: row
        for name, row in catalog.rows("families").items()
        if getattr(row, "spatial_dims", 1) == spatial_dims
    }
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
    layout = pdebench2d.layout_of(file)
    if layout is None:
        traj = _read_1d(file, allow_legacy=bool(cfg.get("allow_legacy", False)))
    elif layout == "tensor":
        traj = pdebench2d.read_tensor(file)
    else:
        return pdebench2d.READERS[layout](file)
    family = family_of(file, traj.attrs, spatial_dims=len(traj.coords))
    return replace(traj, family=family, params=_family_params(file, traj.attrs, family))


def _family_params(file: Path, attrs: dict, family: str | None) -> dict[str, Any]:
    """The family's parameters the file gives: per-trajectory ones as (N,) datasets, shared ones from the
    attributes or the file name."""
    if family is None:
        return {}
    params: dict[str, Any] = {}
    with h5py.File(file, "r") as f:
        for param in catalog.get("families", family).params:
            if param.per_trajectory:
                if isinstance(f.get(param.name), h5py.Dataset):
                    params[param.name] = np.asarray(f[param.name][...], dtype=np.float64)
                continue
            value = _param_from_file(param, attrs, file)
            if value is not None:
                params[param.name] = value
    return params


def _read_1d(file: Path, *, allow_legacy: bool) -> Trajectories:
    """1D trajectories and ups's 1D steady files: states (N, T, 1, X), steady inputs (N, C_in, X)."""
    reader = PDEBenchFile(file, allow_legacy=allow_legacy)
    attrs = reader.attrs
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
        inputs=inputs,
        attrs=attrs,
    )
