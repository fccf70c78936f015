"""PDEBench's 2D HDF5 layouts, read by the `pdebench` format (`ups.data.formats.pdebench.read` dispatches here).

Legend: N trajectories (steady data: samples), T frames, C channels, X and Y points along the two grid axes.

- `tensor`: ups's own 2D files and PDEBench-like single-tensor ones: `tensor` (N, T, X, Y), `x-coordinate` (X,),
  `y-coordinate` (Y,), `t-coordinate` (T or T + 1,) → states (N, T, 1, X, Y). Steady files (ups's `darcy2d`,
  T = 1) name their input datasets, (N, X, Y) each, in the attribute `inputs` → inputs (N, C_in, X, Y).
- `cfd`: PDEBench's 2D compressible Navier–Stokes: `density`, `Vx`, `Vy`, `pressure`, (N, T, X, Y) each, with the
  three coordinates → states (N, T, 4, X, Y); M, η, ζ from attributes or the file name
  (`2D_CFD_Rand_M0.1_Eta0.01_Zeta0.01_periodic_128_Train.hdf5`).
- `groups`: PDEBench's per-sample files (diffusion–reaction `2D_diff-react_NA_NA.h5`, shallow water
  `2D_rdb_NA_NA.h5`): groups `0000`, `0001`, … each with `data` (T, X, Y, C), `grid/x` (X,), `grid/y` (Y,),
  `grid/t` (T or T + 1,) → states (N, T, C, X, Y). Only the first and the last group are checked when the file is
  opened; a group of another shape is reported when it is read.
- `darcy`: PDEBench's Darcy flow (steady): `nu` (N, X, Y) coefficient, `tensor` (N, 1, X, Y) solution,
  `x-coordinate` (X,), `y-coordinate` (Y,) → states (N, 1, 1, X, Y), inputs (N, 1, X, Y); the constant forcing β
  from an attribute or the file name (`2D_DarcyFlow_beta1.0_Train.hdf5`).

States (and Darcy's inputs) read lazily: the file is opened only while trajectories are read, so they pickle.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ups import catalog
from ups.data.pdebench import _plain
from ups.plugin import Trajectories
from ups.spec.errors import SpecError

CFD_CHANNELS = ("density", "Vx", "Vy", "pressure")
_COORDS = "`x-coordinate` (X,), `y-coordinate` (Y,), `t-coordinate` (T or T+1,)"
EXPECTED = {
    "tensor": f"`tensor` (N, T, X, Y) with {_COORDS}",
    "steady": f"`tensor` (N, 1, X, Y) with {_COORDS} and the datasets named by the attribute `inputs`, "
    "(N, X, Y) each",
    "cfd": f"`density`, `Vx`, `Vy`, `pressure` (N, T, X, Y) each with {_COORDS}",
    "groups": "groups `0000`, `0001`, ... each with `data` (T, X, Y, C), `grid/x` (X,), `grid/y` (Y,), "
    "`grid/t` (T or T+1,)",
    "darcy": "`nu` (N, X, Y) and `tensor` (N, 1, X, Y) with `x-coordinate` (X,), `y-coordinate` (Y,)",
    "any": "a PDEBench layout: `tensor` (N, T, X) or (N, T, X, Y) with its coordinates; `density`, `Vx`, `Vy`, "
    "`pressure` (N, T, X, Y); groups `0000`, ... with `data` (T, X, Y, C); or `nu` with `tensor` (N, 1, X, Y)",
}
"""The layout each error message says was expected."""
_TOP_AXES = ("x-coordinate", "y-coordinate", "t-coordinate")
_NUMBER = r"(\d*\.?\d+(?:[eE][-+]?\d+)?)"
_GROUP_CHANNELS = {"diff-react": ("u", "v"), "rdb": ("h",)}
"""Per-sample files' channel names by a `_`-separated part of the file name; neither is periodic."""


def selection(key: Any, n: int) -> tuple[slice | list[int], np.ndarray | None]:
    """A trajectory index (an int, a slice, or any array of indices) of N = `n` as what h5py reads (a slice, or
    increasing unique indices), and the order to take the rows read in (None: as read). An int keeps its row."""
    if isinstance(key, slice):
        start, stop, step = key.indices(n)
        if step > 0:
            return slice(start, stop, step), None
        key = np.arange(start, stop, step)
    elif np.isscalar(key):
        key = [int(key) + n if int(key) < 0 else int(key)]
    rows = np.asarray(key, dtype=np.int64).reshape(-1)
    unique, inverse = np.unique(rows, return_inverse=True)
    if unique.size == 0:
        return slice(0, 0), None
    if unique[0] < 0 or unique[-1] >= n:
        raise IndexError(f"trajectory indices must lie in [0, {n})")
    contiguous = unique[-1] - unique[0] + 1 == unique.size
    read = slice(int(unique[0]), int(unique[-1]) + 1) if contiguous else unique.tolist()
    return read, None if np.array_equal(unique, rows) else inverse


class Stacked:
    """Datasets of one shape (N, *rest) read as one float32 array with a new axis `axis` holding them, by
    trajectory: one h5py read per dataset. (N, T, X, Y) datasets with axis 2 give states (N, T, C, X, Y);
    (N, X, Y) inputs with axis 1 give (N, C_in, X, Y)."""

    def __init__(self, path: Path, names: tuple[str, ...], shape: tuple[int, ...], axis: int) -> None:
        self.path, self.names, self.axis = path, names, axis
        self.shape = (*shape[:axis], len(names), *shape[axis:])
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        read, order = selection(key, self.shape[0])
        with h5py.File(self.path, "r") as f:
            parts = [np.asarray(f[name][read], dtype=np.float32) for name in self.names]
        block = np.stack(parts, axis=self.axis)
        return block if order is None else block[order]


class SampleGroups:
    """Per-sample groups, each with `data` (T, X, Y, C), read as (N, T, C, X, Y): reading trajectories opens
    their groups only."""

    def __init__(self, path: Path, groups: tuple[str, ...], sample: tuple[int, int, int, int]) -> None:
        self.path, self.groups, self.sample = path, groups, sample
        frames, x, y, channels = sample
        self.shape = (len(groups), frames, channels, x, y)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        read, order = selection(key, len(self.groups))
        rows = range(len(self.groups))[read] if isinstance(read, slice) else read
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.float32)
        with h5py.File(self.path, "r") as f:
            for i, row in enumerate(rows):
                name = self.groups[row]
                _sample_shape(self.path, f, name, like=self.sample)
                data = np.asarray(f[name]["data"][...], dtype=np.float32)
                out[i] = np.moveaxis(data, -1, 1)  # (T, X, Y, C) → (T, C, X, Y)
        return out if order is None else out[order]


def layout_of(path: Path) -> str | None:
    """The 2D layout the file holds (`tensor`, `cfd`, `groups` or `darcy`), or None: 1D data, or not a readable
    HDF5 file. Raises SpecError for an empty file, 3D CFD and a `tensor` of 5+ axes."""
    try:
        if not (path.is_file() and h5py.is_hdf5(path)):
            return None
        with h5py.File(path, "r") as f:
            names = sorted(f)
            if not names:
                raise _malformed(path, "the file holds no datasets or groups", f, "any")
            if "Vz" in names:
                raise _malformed(path, "3D compressible CFD (`Vz`) is not supported", f, "cfd")
            if set(names) & set(CFD_CHANNELS):
                return "cfd"
            tensor = f.get("tensor")
            if isinstance(tensor, h5py.Dataset):
                if tensor.ndim > 4:
                    raise _malformed(path, f"`tensor` has {tensor.ndim} axes", f, "any")
                if tensor.ndim < 4:
                    return None
                steady = isinstance(_plain(f.attrs.get("inputs")), str)
                return "darcy" if "nu" in names and not steady else "tensor"
            if all(isinstance(f.get(name), h5py.Group) for name in (names[0], names[-1])):
                return "groups"
    except OSError:
        pass  # the 1D reader says why the file cannot be read
    return None


def read_tensor(path: Path) -> Trajectories:
    """ups's own 2D files and single-tensor ones: states (N, T, 1, X, Y), steady inputs (N, C_in, X, Y). The
    family and its parameters are left to the caller (as for 1D files)."""
    with h5py.File(path, "r") as f:
        shape = tuple(f["tensor"].shape)
        coords, dt = _axes(path, f, _TOP_AXES, shape[1:], "tensor")
        attrs = _attrs(f)
        inputs = None
        if isinstance(attrs.get("inputs"), str):
            names = tuple(n.strip() for n in attrs["inputs"].split(",") if n.strip())
            sample = (shape[0], *shape[2:])
            for name in names:
                if not isinstance(f.get(name), h5py.Dataset) or f[name].shape != sample:
                    problem = f"the attribute `inputs` names `{name}`, not an (N, X, Y) = {sample} dataset"
                    raise _malformed(path, problem, f, "steady")
            inputs = Stacked(path, names, sample, axis=1)
    return Trajectories(
        states=Stacked(path, ("tensor",), shape, axis=2),
        dt=dt,
        channels=tuple(str(c) for c in attrs.get("channels", "u").split(",")),
        coords=coords,
        inputs=inputs,
        attrs=attrs,
    )


def read_cfd(path: Path) -> Trajectories:
    """PDEBench's 2D compressible CFD: states (N, T, 4, X, Y), shared parameters M, eta, zeta, no family."""
    with h5py.File(path, "r") as f:
        missing = [name for name in CFD_CHANNELS if not isinstance(f.get(name), h5py.Dataset)]
        if missing:
            named = ", ".join(f"`{name}`" for name in missing)
            raise _malformed(path, f"no {named} dataset for 2D compressible CFD", f, "cfd")
        shapes = {tuple(f[name].shape) for name in CFD_CHANNELS}
        shape = shapes.pop()
        if shapes or len(shape) != 4:
            raise _malformed(path, "the four channels must share one (N, T, X, Y) shape", f, "cfd")
        coords, dt = _axes(path, f, _TOP_AXES, shape[1:], "cfd")
        attrs = _attrs(f)
    params = {
        name: value
        for name, prefix in (("M", "M"), ("eta", "Eta"), ("zeta", "Zeta"))
        if (value := _shared_param(attrs, path, prefix)) is not None
    }
    if "periodic" in path.stem.split("_"):
        attrs["periodic"] = True
    return Trajectories(
        states=Stacked(path, CFD_CHANNELS, shape, axis=2),
        dt=dt,
        channels=CFD_CHANNELS,
        coords=coords,
        params=params,
        attrs=attrs,
    )


def read_groups(path: Path) -> Trajectories:
    """PDEBench's per-sample files: states (N, T, C, X, Y), coordinates from the first group, no family."""
    with h5py.File(path, "r") as f:
        groups = tuple(sorted(f))
        sample = _sample_shape(path, f, groups[0])
        _sample_shape(path, f, groups[-1], like=sample)
        coords, dt = _axes(path, f[groups[0]], ("grid/x", "grid/y", "grid/t"), sample[:3], "groups")
        attrs = _attrs(f)
    kind = next((part for part in path.stem.split("_") if part in _GROUP_CHANNELS), None)
    channels = tuple(f"c{i}" for i in range(sample[3]))
    if kind is not None:
        attrs["periodic"] = False  # diffusion–reaction: Neumann walls; shallow water: outflow
        if len(_GROUP_CHANNELS[kind]) == sample[3]:
            channels = _GROUP_CHANNELS[kind]
    return Trajectories(
        states=SampleGroups(path, groups, sample), dt=dt, channels=channels, coords=coords, attrs=attrs
    )


def read_darcy(path: Path) -> Trajectories:
    """PDEBench's Darcy flow: states (N, 1, 1, X, Y), inputs (N, 1, X, Y) from `nu`, params {beta} when known;
    the family is a steady 2D catalogue family whose name pattern matches the file's name (the built-in `darcy2d`,
    −∇·(a∇u) = 1 with u = 0 on the walls, recognizes PDEBench's β = 1 files), else none."""
    with h5py.File(path, "r") as f:
        shape = tuple(f["tensor"].shape)
        nu = f.get("nu")
        if not isinstance(nu, h5py.Dataset) or shape[1] != 1 or nu.shape != (shape[0], *shape[2:]):
            got = getattr(nu, "shape", "(not a dataset)")
            raise _malformed(path, f"`nu` {got} does not fit `tensor` {shape}", f, "darcy")
        inputs = Stacked(path, ("nu",), nu.shape, axis=1)
        coords, _ = _axes(path, f, _TOP_AXES[:2], shape[1:], "darcy")
        attrs = _attrs(f)
    beta = _shared_param(attrs, path, "beta")
    attrs.update(inputs="nu", periodic=False)
    family = next(
        (
            row.name
            for row in catalog.rows("families").values()
            if row.steady and row.spatial_dims == 2 and any(re.search(p, path.name) for p in row.recognize)
        ),
        None,
    )
    return Trajectories(
        states=Stacked(path, ("tensor",), shape, axis=2),
        dt=1.0,
        channels=("u",),
        coords=coords,
        params={} if beta is None else {"beta": beta},
        family=family,
        inputs=inputs,
        attrs=attrs,
    )


READERS = {"cfd": read_cfd, "groups": read_groups, "darcy": read_darcy}
"""The layouts whose reader also settles the family and parameters (`tensor` leaves them to the caller)."""


def _malformed(path: Path, problem: str, f: h5py.Group, layout: str) -> SpecError:
    """One line: what is wrong, what the file `f` holds at its top, and the layout expected."""
    found = _listing(f.file)
    return SpecError(
        f"{problem}; the file holds {found}, expected {EXPECTED[layout]}", key="data.path", got=str(path)
    )


def _listing(group: h5py.Group, limit: int = 8) -> str:
    """`[name 3x4x16x8, grid/, ...]`: the first `limit` entries, datasets with their shapes, groups with a `/`."""
    names = sorted(group)
    shown = [
        f"{n} {'x'.join(map(str, group[n].shape))}" if isinstance(group.get(n), h5py.Dataset) else f"{n}/"
        for n in names[:limit]
    ]
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return f"[{', '.join(shown)}{more}]"


def _attrs(group: h5py.Group) -> dict[str, Any]:
    return {key: _plain(value) for key, value in group.attrs.items()}


def _axes(
    path: Path, group: h5py.Group, names: tuple[str, ...], shape: tuple[int, ...], layout: str
) -> tuple[tuple[np.ndarray, np.ndarray], float]:
    """The x and y coordinates and the frame spacing (1.0 for one frame, or without a time axis), once the
    datasets `names` (x, y[, t]) fit `shape` (T, X, Y): X and Y entries, and T or T + 1."""
    axes = [
        np.asarray(item[...], dtype=np.float64).reshape(-1)
        if isinstance(item := group.get(n), h5py.Dataset)
        else None
        for n in names
    ]
    frames, (num_x, num_y) = shape[0], shape[1:]
    allowed = ((num_x,), (num_y,), (frames, frames + 1))
    if any(a is None or a.size not in sizes for a, sizes in zip(axes, allowed)):
        said = ", ".join(f"`{n}` {'missing' if a is None else a.size}" for n, a in zip(names, axes))
        raise _malformed(path, f"the coordinates do not fit (T, X, Y) = {shape}: {said}", group, layout)
    dt = 1.0
    if len(axes) == 3 and frames > 1:
        t = axes[2]
        dt = float((t[frames - 1] - t[0]) / (frames - 1))  # the mean spacing: coordinates are float32
        if not dt > 0:
            raise _malformed(path, f"`{names[2]}` does not increase", group, layout)
    return (axes[0], axes[1]), dt


def _sample_shape(
    path: Path, f: h5py.File, name: str, like: tuple[int, ...] | None = None
) -> tuple[int, int, int, int]:
    """The shape (T, X, Y, C) of group `name`'s `data`, once it is 4-D (and `like` the first group's, if given)."""
    group = f.get(name)
    data = group.get("data") if isinstance(group, h5py.Group) else None
    if not isinstance(data, h5py.Dataset) or data.ndim != 4:
        inside = _listing(group) if isinstance(group, h5py.Group) else "no group"
        raise _malformed(path, f"group `{name}` has no 4-D `data` (it holds {inside})", f, "groups")
    if like is not None and data.shape != like:
        problem = f"group `{name}` holds `data` {data.shape}, unlike the first group's {like}"
        raise _malformed(path, problem, f, "groups")
    return data.shape


def _shared_param(attrs: dict[str, Any], path: Path, prefix: str) -> float | None:
    """A parameter from an attribute named `prefix` (any case), else from a `<prefix><number>` part of the file
    name (`_`-separated), else None."""
    lowered = {str(key).lower(): value for key, value in attrs.items()}
    if prefix.lower() in lowered:
        return float(lowered[prefix.lower()])
    for part in path.stem.split("_"):
        if match := re.fullmatch(re.escape(prefix) + _NUMBER, part):
            return float(match.group(1))
    return None
