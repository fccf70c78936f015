"""Where a spec's trajectories come from: a PDEBench file (`path`) or the family's cached generator."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ups.data.cache import generated_file
from ups.data.params import FAMILY_PARAMS, param_vector
from ups.data.pdebench import PDEBenchFile, file_checksum
from ups.spec.errors import SpecError
from ups.spec.schema import SourceConfig

log = logging.getLogger(__name__)

GENERATORS = {
    "burgers1d": ("ups.data.burgers:generate_burgers", ("nu",)),
    "advection1d": ("ups.data.advection:generate_advection", ("beta",)),
    "reaction_diffusion1d": ("ups.data.reaction_diffusion:generate_reaction_diffusion", ("nu", "rho")),
    "ks1d": ("ups.data.ks:generate_ks", ("length_low", "length_high")),
}
"""family → ("module:function", the spec's `data.` keys it takes). Modules load on use."""

PER_TRAJECTORY = {"ks1d": ("L",)}
"""PDE parameters that differ per trajectory, stored in the file as datasets of shape (N,)."""

_FILE_NAME_PARAMS = {
    "nu": r"Nu([0-9.eE+-]+?)(?:_|\.h|$)",
    "beta": r"beta([0-9.eE+-]+?)(?:_|\.h|$)",
    "rho": r"Rho([0-9.eE+-]+?)(?:_|\.h|$)",
}
_ATTRS = {"nu": "Nu", "beta": "beta", "rho": "rho"}


@dataclass(frozen=True)
class DataSource:
    """Trajectories on the spec's grid, in memory, plus what identifies them."""

    states: np.ndarray  # (N, T, X) float32
    x: np.ndarray  # (X,)
    family: str
    params: dict[str, float]
    """The PDE parameters shared by every trajectory (`nu`, `beta`, `rho` as the family has them)."""
    dt: float
    fingerprint: str
    """Hash of the file contents (or generator parameters) and the subsampling: same hash ⇔ same data."""
    description: dict = field(default_factory=dict)
    trajectory_params: dict[str, np.ndarray] = field(default_factory=dict)
    """Parameters that differ per trajectory (KS's domain length `L`), (N,) each."""

    @property
    def nu(self) -> float | None:
        return self.params.get("nu")

    def vectors(self, layout: tuple[str, ...]) -> np.ndarray:
        """The conditioning vector of every trajectory: (N, P) float32."""
        n = self.states.shape[0]
        rows = [
            param_vector(
                layout,
                self.family,
                {**self.params, **{k: float(v[i]) for k, v in self.trajectory_params.items()}},
            )
            for i in range(n if self.trajectory_params else 1)
        ]
        return np.broadcast_to(np.asarray(rows, dtype=np.float32), (n, len(layout))).copy()


def _generator(family: str):
    target, names = GENERATORS[family]
    module, func = target.split(":")
    mod = importlib.import_module(module)
    return getattr(mod, func), names, mod.GENERATOR_VERSION


def generator_params(data: SourceConfig) -> dict:
    _, names, version = _generator(data.family)
    extra = {"burn_in": data.generator.burn_in} if data.family == "ks1d" else {}
    return {
        **extra,
        "family": data.family,
        **{n: getattr(data, n) for n in names},
        "num_trajectories": data.num_trajectories,
        "num_points": data.num_points,
        "num_frames": data.num_frames,
        "dt": data.dt,
        "solver_points": data.generator.solver_points,
        "seed": data.generator.seed,
        "version": version,
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


def _file_params(data: SourceConfig, reader: PDEBenchFile, path: Path, key: str) -> dict[str, float]:
    """A file's PDE parameters: its attribute, else its file name, else the spec; the file wins over the spec."""
    params = {}
    for name in FAMILY_PARAMS[data.family]:
        if name in PER_TRAJECTORY.get(data.family, ()):
            continue
        if name == "nu":
            value = reader.nu  # attribute `Nu`, file name, `data.nu` fallback, or a clear error
        else:
            value = reader.attrs.get(_ATTRS[name])
            if value is None and (m := re.search(_FILE_NAME_PARAMS[name], path.name)):
                value = float(m.group(1))
            if value is None:
                value = getattr(data, name)
            if value is None:
                raise SpecError(
                    f"the file does not say its `{name}` (no `{_ATTRS[name]}` attribute, nothing in its name)",
                    key=f"{key}{name}",
                    got=str(path),
                    hint=f"Set {key}{name}.",
                )
        spec_value = getattr(data, name)
        if spec_value is not None and not np.isclose(float(value), spec_value):
            log.warning("%s%s=%s ignored: the file says %s", key, name, spec_value, value)
        params[name] = float(value)
    return params


def load_source(data: SourceConfig, home: Path, *, key: str = "data.") -> DataSource:
    if data.path is None:
        params = generator_params(data)
        make, names, _ = _generator(data.family)
        kwargs = {n: getattr(data, n) for n in names}
        if data.family == "ks1d":
            kwargs["burn_in"] = data.generator.burn_in
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
        description = {"generated": True, **params, "file": str(path)}
    else:
        path = Path(data.path).expanduser()
        content_id = _cached_checksum(path, home)
        description = {"generated": False, "file": str(path), "sha256": content_id}

    try:
        return _read_source(data, path, content_id, description, key)
    except SpecError as exc:  # the reader names `data.path`: a task's error names the task's key
        if key == "data." or not (exc.key or "").startswith("data."):
            raise
        raise SpecError(
            exc.problem, file=exc.file, key=key + exc.key.removeprefix("data."), got=exc.got, hint=exc.hint
        ) from None


def _read_source(data: SourceConfig, path: Path, content_id: str, description: dict, key: str) -> DataSource:
    reader = PDEBenchFile(path, nu_fallback=data.nu, allow_legacy=data.allow_legacy)
    if reader.num_trajectories < data.num_trajectories:
        raise SpecError(
            f"the file holds only {reader.num_trajectories} trajectories",
            key=f"{key}num_trajectories",
            got=data.num_trajectories,
            hint=f"Use {key}num_trajectories <= {reader.num_trajectories}.",
        )
    pde = _file_params(data, reader, path, key)
    states = reader.read(
        np.arange(data.num_trajectories), num_points=data.num_points, dt=data.dt, num_frames=data.num_frames
    )
    recipe = {
        "content": content_id,
        "num_trajectories": data.num_trajectories,
        "num_points": data.num_points,
        "dt": data.dt,
        "num_frames": data.num_frames,
    }
    fingerprint = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    description.update(pde, fingerprint=fingerprint)
    per_trajectory = {}
    for name in PER_TRAJECTORY.get(data.family, ()):
        if not reader.has_dataset(name):
            raise SpecError(
                f"the file has no `{name}` dataset (the {data.family} family stores it per trajectory)",
                key=f"{key}path",
                got=str(path),
            )
        per_trajectory[name] = np.asarray(
            reader.read_dataset(name, np.arange(data.num_trajectories)), dtype=np.float64
        )
    return DataSource(
        states=states,
        x=reader.subsampled_x(data.num_points),
        family=data.family,
        params=pde,
        dt=data.dt,
        fingerprint=fingerprint,
        description=description,
        trajectory_params=per_trajectory,
    )


def load_sources(data, home: Path) -> list[DataSource]:
    """Every data set of a spec: one, or one per task (in `data.tasks` order)."""
    if not data.tasks:
        return [load_source(data, home)]
    return [load_source(task, home, key=f"data.tasks.{i}.") for i, task in enumerate(data.tasks)]


def combined_fingerprint(sources: list[DataSource]) -> str:
    if len(sources) == 1:
        return sources[0].fingerprint
    return hashlib.sha256("".join(s.fingerprint for s in sources).encode()).hexdigest()[:16]
