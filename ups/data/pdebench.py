"""PDEBench's 1D HDF5 layout: `tensor` (N, T, X) float32, `x-coordinate` (X,), `t-coordinate` (T or T+1,),
file attributes such as `Nu`.

Real files are up to 8 GB, so the reader keeps only the coordinates and attributes in memory and reads
trajectories in bounded chunks, already subsampled to the spec's grid and frame spacing.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ups.spec.errors import SpecError

_CHUNK_BYTES = 64 * 2**20  # upper bound on what one h5py read pulls into memory
_LAYOUT = ("tensor", "x-coordinate", "t-coordinate")
_NU_IN_NAME = re.compile(r"Nu(\d*\.?\d+(?:[eE][-+]?\d+)?)")


@dataclass(frozen=True, eq=False)
class GeneratedData:
    """What a generator returns: the contents of a PDEBench-layout file."""

    tensor: np.ndarray  # (N, T, X) or (N, T, X, Y) float32
    x: np.ndarray  # (X,) float32 cell centres
    t: np.ndarray  # (T + 1,) float32, one more entry than frames like PDEBench's files
    attrs: dict = field(default_factory=dict)
    datasets: dict[str, np.ndarray] = field(default_factory=dict)
    """Extra per-trajectory datasets, (N, ...) each, such as KS's domain lengths `L` (N,) or a steady family's
    inputs (named by the attribute `inputs`)."""
    y: np.ndarray | None = None
    """2D data: (Y,) float32 positions along the second axis; None for 1D."""


def write_pdebench(
    path: str | os.PathLike,
    *,
    tensor: np.ndarray,
    x: np.ndarray,
    t: np.ndarray,
    attrs: dict,
    datasets: dict[str, np.ndarray] | None = None,
    y: np.ndarray | None = None,
) -> None:
    """Write a PDEBench-layout file atomically: readers see the old file, or none, or the complete new one.

    1D: `tensor` (N, T, X); 2D: `tensor` (N, T, X, Y) with `y` (the `y-coordinate` dataset). `datasets` are extra
    per-trajectory arrays (N, ...), stored under their names with their own dtypes."""
    path = Path(path)
    tensor = np.asarray(tensor, dtype=np.float32)
    dims = tensor.ndim - 2
    if (
        dims not in (1, 2)
        or (y is None) != (dims == 1)
        or len(x) != tensor.shape[2]
        or (dims == 2 and len(y) != tensor.shape[3])
        or len(t) not in (tensor.shape[1], tensor.shape[1] + 1)
    ):
        raise ValueError(
            f"need tensor (N, T, X) with x (X,), or (N, T, X, Y) with x (X,) and y (Y,), and t (T or T+1,), got "
            f"(tensor={tensor.shape}, x={len(x)}, y={None if y is None else len(y)}, t={len(t)})"
        )
    datasets = {name: np.asarray(value) for name, value in (datasets or {}).items()}
    for name, value in datasets.items():
        if (
            name in (*_LAYOUT, "y-coordinate")
            or not name
            or "/" in name
            or value.ndim < 1
            or len(value) != tensor.shape[0]
        ):
            raise ValueError(
                f"extra datasets must be (N, ...) with a plain name outside the layout, got "
                f"(name={name!r}, shape={value.shape}, N={tensor.shape[0]})"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("tensor", data=tensor)
            f.create_dataset("x-coordinate", data=np.asarray(x, dtype=np.float32))
            if y is not None:
                f.create_dataset("y-coordinate", data=np.asarray(y, dtype=np.float32))
            f.create_dataset("t-coordinate", data=np.asarray(t, dtype=np.float32))
            for name, value in datasets.items():
                f.create_dataset(name, data=value)
            for key, value in attrs.items():
                f.attrs[key] = value
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a data file is as readable as any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_checksum(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(2**20):
            digest.update(piece)
    return digest.hexdigest()


class PDEBenchFile:
    """Lazy reader of a PDEBench-layout file; the file is opened only while reading, so instances pickle."""

    def __init__(
        self, path: str | os.PathLike, *, nu_fallback: float | None = None, allow_legacy: bool = False
    ) -> None:
        self.path = Path(path)
        self.nu_fallback = nu_fallback
        got = str(self.path)
        if not self.path.exists():
            raise SpecError("the file does not exist", key="data.path", got=got)
        if not self.path.is_file():
            raise SpecError("is not a file", key="data.path", got=got)
        if not os.access(self.path, os.R_OK):
            raise SpecError("the file cannot be read (permission denied)", key="data.path", got=got)
        try:
            is_hdf5 = h5py.is_hdf5(self.path)
        except OSError as err:
            raise SpecError(
                f"the file cannot be read ({err.strerror or err})", key="data.path", got=got
            ) from None
        if not is_hdf5:
            raise SpecError("not an HDF5 file", key="data.path", got=got)
        try:
            with h5py.File(self.path, "r") as f:
                names = sorted(f.keys())
                for name in _LAYOUT:
                    if not isinstance(f.get(name), h5py.Dataset):
                        raise SpecError(
                            f"no `{name}` dataset (PDEBench layout); the file holds [{', '.join(names)}]",
                            key="data.path",
                            got=got,
                        )
                self.shape = tuple(f["tensor"].shape)
                self._x = np.asarray(f["x-coordinate"][...], dtype=np.float64).reshape(-1)
                t = np.asarray(f["t-coordinate"][...], dtype=np.float64).reshape(-1)
                self._attrs = {key: _plain(value) for key, value in f.attrs.items()}
                self._extra = [n for n in names if n not in _LAYOUT and isinstance(f[n], h5py.Dataset)]
        except OSError as err:
            raise SpecError(f"the file cannot be read ({err})", key="data.path", got=got) from None
        if len(self.shape) != 3:
            raise SpecError(
                f"`tensor` must be (trajectories, frames, points) for 1D data, got shape {self.shape}",
                key="data.path",
                got=got,
            )
        if self._x.size != self.num_points or t.size < self.num_frames or self.num_frames < 1:
            raise SpecError(
                f"coordinates do not match `tensor` {self.shape}: x-coordinate has {self._x.size} entries, "
                f"t-coordinate {t.size} (need X, and at least T >= 1)",
                key="data.path",
                got=got,
            )
        self._t = t[: self.num_frames]
        if not allow_legacy and _is_legacy(self._x):
            raise SpecError(
                f"x-coordinate spans [{self._x.min():.3g}, {self._x.max():.3g}]: this is PDEBench's older "
                "release, on x in (-1, 1) with a flux twice too large, so it is a different problem",
                key="data.path",
                got=got,
                hint="Download the current release, or set data.allow_legacy=true to use it anyway.",
            )

    @property
    def num_trajectories(self) -> int:
        return self.shape[0]

    @property
    def num_frames(self) -> int:
        return self.shape[1]

    @property
    def num_points(self) -> int:
        return self.shape[2]

    @property
    def x(self) -> np.ndarray:
        return self._x.copy()

    @property
    def t(self) -> np.ndarray:
        """Times of the frames: the first T entries of `t-coordinate`."""
        return self._t.copy()

    @property
    def dt_file(self) -> float:
        if self.num_frames < 2:
            return 1.0  # one frame (steady data): no spacing
        return float(
            (self._t[-1] - self._t[0]) / (self.num_frames - 1)
        )  # the mean spacing: coords are float32

    @property
    def attrs(self) -> dict:
        return dict(self._attrs)

    @property
    def nu(self) -> float:
        """ν from the `Nu` attribute, else from a `Nu<value>` in the file name, else `nu_fallback`."""
        if "Nu" in self._attrs:
            return float(self._attrs["Nu"])
        match = _NU_IN_NAME.search(self.path.name)
        if match:
            return float(match.group(1))
        if self.nu_fallback is not None:
            return float(self.nu_fallback)
        raise SpecError(
            "the viscosity is unknown: the file has no `Nu` attribute, its name has no `Nu<value>` "
            "(like 1D_Burgers_Sols_Nu0.01.hdf5), and data.nu is not set",
            key="data.nu",
            got=None,
            hint=f"Set data.nu to the viscosity {self.path.name} was made with.",
        )

    def has_dataset(self, name: str) -> bool:
        """Whether the file holds the extra per-trajectory dataset `name` (such as KS's `L`)."""
        return name in self._extra

    def read_dataset(self, name: str, indices: np.ndarray) -> np.ndarray:
        """Rows `indices` of the extra per-trajectory dataset `name`: (n, ...) in the file's dtype."""
        if not self.has_dataset(name):
            listed = ", ".join(self._extra) or "none"
            raise SpecError(
                f"{self.path.name} has no `{name}` dataset (its extra datasets: {listed})",
                key="data.path",
                got=str(self.path),
                hint="Regenerate the file with a generator that stores it.",
            )
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        unique, inverse = np.unique(indices, return_inverse=True)
        with h5py.File(self.path, "r") as f:
            dataset = f[name]
            if unique.size and (unique[0] < 0 or unique[-1] >= len(dataset)):
                raise SpecError(
                    f"`{name}` indices must lie in [0, {len(dataset)})",
                    key="data.num_trajectories",
                    got=int(unique[-1] if unique[-1] >= len(dataset) else unique[0]),
                    hint=f"{self.path.name} holds {len(dataset)} trajectories.",
                )
            rows = dataset[unique.tolist()] if unique.size else dataset[:0]  # h5py: increasing, unique
        return rows[inverse]

    def subsampled_x(self, num_points: int) -> np.ndarray:
        return self._x[:: self._space_stride(num_points)].copy()

    def read(self, indices: np.ndarray, *, num_points: int, dt: float, num_frames: int) -> np.ndarray:
        """Trajectories `indices` (n, T, X) float32: every `dt` from the first frame, every (X_file/X)-th point."""
        space = self._space_stride(num_points)
        time = self._time_stride(dt)
        last = (num_frames - 1) * time + 1
        if num_frames < 1 or last > self.num_frames:
            most = (self.num_frames - 1) // time + 1
            raise SpecError(
                f"needs {last} of the file's frames (every {time}th), but it has {self.num_frames}",
                key="data.num_frames",
                got=num_frames,
                hint=f"At data.dt={dt:g} this file gives at most {most} frames.",
            )
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_trajectories):
            raise SpecError(
                f"trajectory indices must lie in [0, {self.num_trajectories})",
                key="data.num_trajectories",
                got=int(indices.max() if indices.max() >= self.num_trajectories else indices.min()),
                hint=f"{self.path.name} holds {self.num_trajectories} trajectories.",
            )
        # h5py wants increasing, unique indices; read those, then put rows back in the order asked for.
        unique, inverse = np.unique(indices, return_inverse=True)
        out = np.empty((unique.size, num_frames, num_points), dtype=np.float32)  # (n, T, X)
        rows_per_read = max(1, _CHUNK_BYTES // (last * self.num_points * 4))
        with h5py.File(self.path, "r") as f:
            tensor = f["tensor"]
            for start in range(0, unique.size, rows_per_read):
                rows = unique[start : start + rows_per_read]
                contiguous = rows[-1] - rows[0] + 1 == rows.size
                selection = slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows.tolist()
                block = tensor[selection, :last, :]  # (b, last, X_file): whole rows read fastest
                out[start : start + rows.size] = block[:, ::time, ::space]
        return out[inverse]

    def _space_stride(self, num_points: int) -> int:
        if num_points < 1 or self.num_points % num_points:
            divisors = [d for d in range(self.num_points, 0, -1) if self.num_points % d == 0][:6]
            raise SpecError(
                f"must divide the file's {self.num_points} points",
                key="data.num_points",
                got=num_points,
                hint=f"Choices include {', '.join(map(str, divisors))}.",
            )
        return self.num_points // num_points

    def _time_stride(self, dt: float) -> int:
        ratio = dt / self.dt_file
        stride = round(ratio)
        if stride < 1 or abs(ratio - stride) > 1e-6 * ratio:
            raise SpecError(
                f"must be a whole multiple of the file's frame spacing {self.dt_file:.6g}",
                key="data.dt",
                got=dt,
            )
        return stride


def _is_legacy(x: np.ndarray) -> bool:
    """PDEBench's older Burgers release lives on (-1, 1); the current one on (0, 1)."""
    length = (x[-1] - x[0]) * x.size / (x.size - 1) if x.size > 1 else 0.0
    return bool(x.min() < 0 or length > 1.5)


def _plain(value: object) -> object:
    """HDF5 attribute → plain Python (str, int, float, bool, list)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
