"""1D linear advection data in PDEBench's conventions.

    u_t + β u_x = 0,   x ∈ [0, 1) periodic,   stored on cell centres x_i = (i + ½)/X.

The solution is the initial condition translated by βt. It is computed exactly (no time stepping) for the
trigonometric interpolant of the IC sampled on M solver points: Fourier mode k is multiplied by e^{-2πi k βt},
in float64. PDEBench's files use β ∈ {0.1, 0.4, 1, 4}, t ∈ [0, 2] every 0.01 on 1024 points, and the same
`init_multi` initial conditions as Burgers. Legend: N trajectories, T frames, X stored points, M solver points,
K = M//2 + 1 Fourier modes.
"""

from __future__ import annotations

import math

import numpy as np

from ups.data.burgers import burgers_initial_conditions
from ups.data.pdebench import GeneratedData
from ups.data.storage_grid import generate_on_storage_grid
from ups.spec.errors import SpecError

GENERATOR_VERSION = 1
"""Bump whenever generated numbers change: it is part of the cache key."""
_CHUNK_VALUES = 2**24  # float64 solver values per chunk (128 MiB, and as much again for the complex modes)


def solve_advection(u0: np.ndarray, *, beta: float, dt_save: float, num_frames: int) -> np.ndarray:
    """Frames u(x, n·dt_save) = u0(x − β n dt_save) for n < num_frames: (n, T, X) float64, frame 0 being `u0`.

    `u0` (n, X) samples a periodic function on a uniform grid of the unit period. The translation is exact for
    its trigonometric interpolant, so exact for any IC whose wavenumbers are below X/2. The Nyquist mode has no
    unique interpolant; its cosine part is kept (what a real inverse FFT does), so it alone may lose amplitude.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    if u0.ndim != 2:
        raise ValueError(f"`u0` must be (trajectories, points), got shape {u0.shape}")
    if not (math.isfinite(beta) and dt_save > 0 and num_frames >= 1):
        raise ValueError(
            f"`beta` finite, `dt_save > 0` and `num_frames >= 1` must hold, got "
            f"(beta={beta}, dt_save={dt_save}, num_frames={num_frames})"
        )
    num_points = u0.shape[1]
    modes = np.fft.rfft(u0)  # (n, K)
    k = np.arange(num_points // 2 + 1)  # (K,)
    # Whole periods dropped before the phase is formed, so k·shift stays small and accurate at large βt.
    shift = np.mod(beta * dt_save * np.arange(num_frames), 1.0)  # (T,)
    phase = np.exp(-2j * np.pi * shift[:, None] * k[None, :])  # (T, K)
    frames = np.fft.irfft(modes[:, None, :] * phase[None], n=num_points, axis=-1)  # (n, T, X)
    frames[:, 0] = u0  # bit-exact, rather than a round trip through the FFT
    return frames


def generate_advection(
    *,
    beta: float,
    num_trajectories: int,
    num_points: int = 256,
    num_frames: int = 41,
    dt: float = 0.05,
    solver_points: int = 512,
    seed: int = 0,
) -> GeneratedData:
    """An advection data set in PDEBench's layout: ICs from `init_multi`, frames every `dt` from t = 0.

    Trajectory i depends on (seed, i) only. The IC is sampled on the M solver points, translated there, and
    every (M/X)-th point is stored; the solver grid holds the storage cell centres, so nothing is interpolated.
    """
    if beta is None or not (math.isfinite(beta) and beta >= 0):
        raise SpecError(
            "the advection speed must be finite and >= 0 (PDEBench uses 0.1, 0.4, 1 and 4)",
            key="data.beta",
            got=beta,
        )
    return generate_on_storage_grid(
        num_trajectories=num_trajectories,
        num_points=num_points,
        num_frames=num_frames,
        dt=dt,
        solver_points=solver_points,
        chunk=max(1, _CHUNK_VALUES // (num_frames * solver_points)),
        initial=lambda x, rows: burgers_initial_conditions(x, indices=rows, seed=seed),
        solve=lambda u0: solve_advection(u0, beta=beta, dt_save=dt, num_frames=num_frames),
        attrs={
            "equation": "advection1d",
            "beta": float(beta),
            "solver": "exact-fourier-shift",
            "initial_condition": "pdebench-init_multi",
            "seed": int(seed),
            "generator_version": GENERATOR_VERSION,
        },
    )
