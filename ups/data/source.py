"""Where a spec's trajectories come from: a PDEBench file (`data.path`) or the family's cached generator."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ups.data.burgers import GENERATOR_VERSION, generate_burgers
from ups.data.cache import generated_file
from ups.data.pdebench import PDEBenchFile, file_checksum
from ups.spec.errors import SpecError
from ups.spec.schema import DataConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    """Trajectories on the spec's grid, in memory, plus what identifies them."""

    states: np.ndarray  # (N, T, X) float32
    x: np.ndarray  # (X,)
    nu: float
    dt: float
    fingerprint: str
    """Hash of the file contents (or generator parameters) and the subsampling: same hash ⇔ same data."""
    description: dict = field(default_factory=dict)


def generator_params(data: DataConfig) -> dict:
    return {
        "family": data.family,
        "nu": data.nu,
        "num_trajectories": data.num_trajectories,
        "num_points": data.num_points,
        "num_frames": data.num_frames,
        "dt": data.dt,
        "solver_points": data.generator.solver_points,
        "seed": data.generator.seed,
        "version": GENERATOR_VERSION,
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


def load_source(data: DataConfig, home: Path) -> DataSource:
    if data.path is None:
        params = generator_params(data)
        path = generated_file(
            home,
            params,
            make=lambda: generate_burgers(
                nu=data.nu,
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

    reader = PDEBenchFile(path, nu_fallback=data.nu, allow_legacy=data.allow_legacy)
    if reader.num_trajectories < data.num_trajectories:
        raise SpecError(
            f"the file holds only {reader.num_trajectories} trajectories",
            key="data.num_trajectories",
            got=data.num_trajectories,
            hint=f"Use data.num_trajectories <= {reader.num_trajectories}.",
        )
    if data.nu is not None and data.path is not None and not np.isclose(reader.nu, data.nu):
        log.warning("data.nu=%s ignored: the file says Nu=%s", data.nu, reader.nu)
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
    description.update(nu=float(reader.nu), fingerprint=fingerprint)
    return DataSource(
        states=states,
        x=reader.subsampled_x(data.num_points),
        nu=float(reader.nu),
        dt=data.dt,
        fingerprint=fingerprint,
        description=description,
    )
