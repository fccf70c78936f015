"""What every generator shares: solve on a fine grid that contains the storage cell centres, store every
(solver_points / num_points)-th point in PDEBench's layout."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ups.data.pdebench import GeneratedData
from ups.spec.errors import SpecError


def check_storage_grid(
    *, num_trajectories: int, num_points: int, num_frames: int, dt: float, solver_points: int
) -> None:
    """What every generator requires of its sizes: stored points divide the solver's, and a non-empty data set."""
    if num_points < 1 or solver_points % num_points:
        raise SpecError(
            f"must divide data.generator.solver_points={solver_points}", key="data.num_points", got=num_points
        )
    if num_trajectories < 1 or num_frames < 1 or not dt > 0:
        got = {"num_trajectories": num_trajectories, "num_frames": num_frames, "dt": dt}
        raise SpecError(
            "`num_trajectories >= 1`, `num_frames >= 1` and `dt > 0` must hold", key="data", got=got
        )


def generate_on_storage_grid(
    *,
    num_trajectories: int,
    num_points: int,
    num_frames: int,
    dt: float,
    solver_points: int,
    chunk: int,
    initial: Callable[[np.ndarray, range], np.ndarray],
    solve: Callable[[np.ndarray], np.ndarray],
    attrs: dict,
) -> GeneratedData:
    """`initial(x_solver, rows)` → (n, M) initial conditions; `solve(u0)` → (n, T, M) frames every `dt`.

    Trajectories are solved `chunk` at a time so the float64 frames held stay bounded.
    """
    check_storage_grid(
        num_trajectories=num_trajectories,
        num_points=num_points,
        num_frames=num_frames,
        dt=dt,
        solver_points=solver_points,
    )
    stride = solver_points // num_points
    # Solver grid with the storage cell centres (i + ½)/X at every stride-th point.
    x_solver = (np.arange(solver_points) + stride / 2) / solver_points  # (M,)
    tensor = np.empty((num_trajectories, num_frames, num_points), dtype=np.float32)  # (N, T, X)
    for start in range(0, num_trajectories, chunk):
        rows = range(start, min(start + chunk, num_trajectories))
        frames = solve(initial(x_solver, rows))  # (n, T, M)
        tensor[rows.start : rows.stop] = frames[:, :, ::stride]  # (n, T, X)
    return GeneratedData(
        tensor=tensor,
        x=((np.arange(num_points) + 0.5) / num_points).astype(np.float32),
        t=(np.arange(num_frames + 1) * dt).astype(np.float32),  # one more entry than frames, as PDEBench
        attrs={**attrs, "solver_points": int(solver_points), "dt": float(dt)},
    )
