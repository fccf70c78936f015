"""Where a spec's data comes from: a file read by its format (`data.path`, `data.format`), or the family's cached
generator; subsampled to the spec's grid, frame spacing and frame count.

Legend: N trajectories, T frames, C channels, *grid one or two grid axes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ups import catalog
from ups.data.cache import generated_file
from ups.data.params import param_vector
from ups.data.pdebench import file_checksum
from ups.spec.errors import SpecError

log = logging.getLogger(__name__)

_CHUNK_BYTES = 64 * 2**20
"""Upper bound on what one read of a file's trajectories pulls into memory."""


@dataclass(frozen=True)
class DataSource:
    """One task's data on the spec's grid, in memory, plus what identifies it."""

    states: np.ndarray
    """(N, T, C, *grid) float32; steady data: the solutions, T = 1."""
    coords: tuple[np.ndarray, ...]
    channels: tuple[str, ...]
    family: str | None
    params: dict[str, float]
    """PDE parameters shared by every trajectory."""
    dt: float
    fingerprint: str
    """Hash of the file contents (or generator parameters) and the subsampling: same hash ⇔ same data."""
    description: dict = field(default_factory=dict)
    trajectory_params: dict[str, np.ndarray] = field(default_factory=dict)
    """Parameters that differ per trajectory (KS's domain length `L`), (N,) each."""
    inputs: np.ndarray | None = None
    """Steady data: (N, C_in, *grid) inputs."""
    input_channels: tuple[str, ...] = ()
    periodic: bool = True
    """Whether the domain wraps around (the family says; data without one: the file's `periodic`, else yes)."""

    @property
    def x(self) -> np.ndarray:
        return self.coords[0]

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(self.states.shape[3:])

    @property
    def nu(self) -> float | None:
        return self.params.get("nu")

    def param_values(self, i: int) -> dict[str, float]:
        return {**self.params, **{k: float(v[i]) for k, v in self.trajectory_params.items()}}

    def vectors(self, layout: tuple[str, ...]) -> np.ndarray:
        """The conditioning vector of every trajectory: (N, P) float32."""
        n = self.states.shape[0]
        rows = [
            param_vector(layout, self.family, self.param_values(i))
            for i in range(n if self.trajectory_params else 1)
        ]
        return np.broadcast_to(
            np.asarray(rows, dtype=np.float32).reshape(len(rows), len(layout)), (n, len(layout))
        ).copy()


def generator_params(data, row: catalog.FamilyRow) -> dict:
    """Everything a generated file's numbers depend on (its cache key; the generator's version included)."""
    import importlib

    module = importlib.import_module(row.generator.split(":")[0])
    extra = {k: getattr(data.generator, k) for k in row.generator_keys}
    return {
        **extra,
        "family": row.name,
        **{n: getattr(data, n) for n in row.requires},
        "num_trajectories": data.num_trajectories,
        "num_points": data.num_points,
        "num_frames": data.num_frames,
        "dt": data.dt,
        "solver_points": data.generator.solver_points,
        "seed": data.generator.seed,
        "version": module.GENERATOR_VERSION,
    }


def _cached_checksum(path: Path, home: Path) -> str:
    """sha256 of a (possibly 8 GB) file, remembered by (path, size, mtime) so it is read once."""
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    index = home / "data" / "checksums.json"
    known = json.loads(index.read_text()) if index.is_file() else {}
    if key not in known:
        known[key] = file_checksum(path)
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, index)
    return known[key]


def _generated(data, home: Path, key: str) -> tuple[Path, str, dict]:
    if data.family is None:
        raise SpecError(
            "no data: give a file (data.path) or a family whose generator makes the data",
            key=f"{key}family",
            hint="See `ups-exp catalog families`.",
        )
    row = catalog.get("families", data.family)
    if row.generator is None:
        raise SpecError(
            f"the {row.name} family has no generator: its data comes from files",
            key=f"{key}path",
            hint=f"Set {key}path to a data file.",
        )
    params = generator_params(data, row)
    make = catalog.load(row.generator)
    kwargs = {n: getattr(data, n) for n in row.requires}
    kwargs.update({k: getattr(data.generator, k) for k in row.generator_keys})
    path = generated_file(
        home,
        params,
        make=lambda: make(
            **kwargs,
            num_trajectories=data.num_trajectories,
            num_points=data.num_points,
            num_frames=data.num_frames,
            dt=data.dt,
            solver_points=data.generator.solver_points,
            seed=data.generator.seed,
        ),
    )
    content_id = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    return path, content_id, {"generated": True, **params, "file": str(path)}


def load_source(data, home: Path, *, key: str = "data.") -> DataSource:
    """One data set: the spec's file through its format, or the family's (cached) generated file."""
    if data.path is None:
        path, content_id, description = _generated(data, home, key)
        fmt = "pdebench"
    else:
        path = Path(data.path).expanduser()
        content_id = _cached_checksum(path, home)
        description = {"generated": False, "file": str(path), "sha256": content_id}
        fmt = data.format
    try:
        return _from_file(data, path, fmt, content_id, description, key)
    except SpecError as exc:  # readers name `data.<key>`: a task's error names the task's key
        if key == "data." or not (exc.key or "").startswith("data."):
            raise
        raise SpecError(
            exc.problem, file=exc.file, key=key + exc.key.removeprefix("data."), got=exc.got, hint=exc.hint
        ) from None


def read_trajectories(fmt: str, path: Path, cfg: dict[str, Any], key: str = "data."):
    """A format's `read(path, cfg)`, checked against the contract; its failures name the file and the format."""
    from ups.plugin import Trajectories

    try:
        row = catalog.get("formats", fmt)
        read = catalog.load(row.read)
    except catalog.CatalogError as exc:
        raise SpecError(exc.problem, key=f"{key}format", got=exc.got, hint=exc.hint) from None
    try:
        traj = read(str(path), dict(cfg))
    except SpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's failure, said in one line
        raise SpecError(
            f"the {fmt!r} format cannot read the file ({exc.__class__.__name__}: {' '.join(str(exc).split())[:300]})",
            key=f"{key}path",
            got=str(path),
        ) from None
    if not isinstance(traj, Trajectories):
        raise SpecError(
            f"the {fmt!r} format's read() must return ups.Trajectories", key=f"{key}format", got=fmt
        )
    shape = tuple(getattr(traj.states, "shape", ()))
    dims = len(shape) - 3
    if dims not in (1, 2) or len(traj.coords) != dims or len(traj.channels) != shape[2]:
        raise SpecError(
            f"the {fmt!r} format returned states of shape {shape} with {len(traj.channels)} channel name(s) and "
            f"{len(traj.coords)} coordinate axis(es); expected (N, T, C, *grid) with 1 or 2 grid axes, C names and "
            "one coordinate array per axis",
            key=f"{key}path",
            got=str(path),
        )
    return traj


def _stride(native: int, wanted: int | None, what: str, key: str) -> int:
    if wanted is None:
        return 1
    if wanted < 1 or native % wanted:
        divisors = [d for d in range(native, 0, -1) if native % d == 0][:6]
        raise SpecError(
            f"must divide the file's {native} {what}",
            key=key,
            got=wanted,
            hint=f"Choices include {', '.join(map(str, divisors))}; or null for the file's.",
        )
    return native // wanted


def _from_file(data, path: Path, fmt: str, content_id: str, description: dict, key: str) -> DataSource:
    traj = read_trajectories(fmt, path, {"allow_legacy": data.allow_legacy, **data.options}, key)
    n_file, t_file, _c, *grid_file = traj.states.shape
    if n_file < data.num_trajectories:
        raise SpecError(
            f"the file holds only {n_file} trajectories",
            key=f"{key}num_trajectories",
            got=data.num_trajectories,
            hint=f"Use {key}num_trajectories <= {n_file}.",
        )
    strides = [_stride(n, data.num_points, "points per axis", f"{key}num_points") for n in grid_file]
    steady = traj.inputs is not None
    if steady:
        t_stride, frames = 1, 1
    else:
        ratio = data.dt / traj.dt if data.dt is not None else 1.0
        t_stride = round(ratio)
        if t_stride < 1 or abs(ratio - t_stride) > 1e-6 * max(ratio, 1.0):
            raise SpecError(
                f"must be a whole multiple of the file's frame spacing {traj.dt:.6g}",
                key=f"{key}dt",
                got=data.dt,
            )
        most = (t_file - 1) // t_stride + 1
        frames = data.num_frames if data.num_frames is not None else most
        if frames < 1 or frames > most:
            raise SpecError(
                f"needs {(frames - 1) * t_stride + 1} of the file's frames (every {t_stride}th), but it has {t_file}",
                key=f"{key}num_frames",
                got=data.num_frames,
                hint=f"At data.dt={data.dt if data.dt is not None else traj.dt:g} this file gives at most {most} frames.",
            )
    states = _subsample(traj.states, data.num_trajectories, frames, t_stride, strides)
    family = traj.family
    if family is None and data.family is not None:
        family = catalog.canonical("families", data.family)  # the file does not say; the spec does
    elif family is not None and data.family is not None and family != data.family:
        log.warning("%sfamily=%s ignored: the file says %s", key, data.family, family)
    shared, per_trajectory = _params(data, traj, family, path, key)
    recipe = {
        "content": content_id,
        "num_trajectories": data.num_trajectories,
        "num_points": data.num_points,
        "dt": data.dt,
        "num_frames": data.num_frames,
    }
    fingerprint = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    description.update(shared, fingerprint=fingerprint, family=family, format=fmt)
    inputs = None
    if steady:
        inputs = np.asarray(traj.inputs[: data.num_trajectories], dtype=np.float32)
        index = (slice(None), slice(None), *(slice(None, None, s) for s in strides))
        inputs = np.ascontiguousarray(inputs[index])
    coords = tuple(np.asarray(c, dtype=np.float64)[::s].copy() for c, s in zip(traj.coords, strides))
    return DataSource(
        states=states,
        coords=coords,
        channels=tuple(traj.channels),
        family=family,
        params=shared,
        dt=float(traj.dt * t_stride),
        fingerprint=fingerprint,
        description=description,
        trajectory_params=per_trajectory,
        inputs=inputs,
        input_channels=tuple(traj.attrs.get("inputs", "").split(",")) if steady else (),
        periodic=catalog.get("families", family).periodic
        if family
        else bool(traj.attrs.get("periodic", True)),
    )


def _subsample(states, n: int, frames: int, t_stride: int, strides: list[int]) -> np.ndarray:
    """The first `n` trajectories, every `t_stride`-th frame (`frames` of them), every stride-th point; read in
    bounded chunks of whole trajectories (what a file reads fastest)."""
    shape = tuple(states.shape)
    last = (frames - 1) * t_stride + 1
    grid = tuple(g // s for g, s in zip(shape[3:], strides))
    out = np.empty((n, frames, shape[2], *grid), dtype=np.float32)
    per_row = last * int(np.prod(shape[2:])) * 4
    rows = max(1, _CHUNK_BYTES // max(per_row, 1))
    index = (slice(None), slice(None, last, t_stride), slice(None), *(slice(None, None, s) for s in strides))
    for start in range(0, n, rows):
        block = np.asarray(states[start : min(start + rows, n)], dtype=np.float32)
        out[start : start + block.shape[0]] = block[index]
    return out


def _params(data, traj, family: str | None, path: Path, key: str) -> tuple[dict, dict]:
    """Shared and per-trajectory parameters: the file's, else (for a family's parameter) the spec's fallback."""
    n = data.num_trajectories
    shared: dict[str, float] = {}
    per: dict[str, np.ndarray] = {}
    for name, value in traj.params.items():
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0:
            shared[name] = float(arr)
        else:
            per[name] = arr[:n].copy()
    for p in catalog.get("families", family).params if family else ():
        if p.per_trajectory:
            if p.name not in per:
                raise SpecError(
                    f"the file has no `{p.name}` dataset (the {family} family stores it per trajectory)",
                    key=f"{key}path",
                    got=str(path),
                )
            continue
        spec_value = getattr(data, p.spec_key, None) if p.spec_key else None
        if p.name not in shared:
            if spec_value is None:
                where = " or ".join(
                    x
                    for x in (f"no `{p.file_attr}` attribute" if p.file_attr else "", "nothing in its name")
                    if x
                )
                raise SpecError(
                    f"the file does not say its `{p.name}` ({where})",
                    key=f"{key}{p.spec_key or 'path'}",
                    got=str(path),
                    hint=f"Set {key}{p.spec_key}." if p.spec_key else None,
                )
            shared[p.name] = float(spec_value)
        elif spec_value is not None and not np.isclose(shared[p.name], spec_value):
            log.warning("%s%s=%s ignored: the file says %s", key, p.spec_key, spec_value, shared[p.name])
    return shared, per


def load_sources(data, home: Path) -> list[DataSource]:
    """Every data set of a spec: one, or one per task (in `data.tasks` order)."""
    if not data.tasks:
        return [load_source(data, home)]
    return [load_source(task, home, key=f"data.tasks.{i}.") for i, task in enumerate(data.tasks)]


def combined_fingerprint(sources: list[DataSource]) -> str:
    if len(sources) == 1:
        return sources[0].fingerprint
    return hashlib.sha256("".join(s.fingerprint for s in sources).encode()).hexdigest()[:16]
