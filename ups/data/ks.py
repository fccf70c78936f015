"""1D Kuramoto–Sivashinsky data, in PDE-Refiner's setup (Lippe et al. 2023, after Brandstetter et al. 2022).

    u_t + u u_x + u_xx + u_xxxx = 0,   x ∈ [0, L) periodic,   L ~ U[57.6, 70.4] per trajectory (64 ± 10%).

Stored on cell centres in units of the domain: x-coordinate holds x_i/L = (i + ½)/X, the same for every
trajectory, and each trajectory's L is the dataset `L` (N,), so the physical points are x_i·L. Solved with
Fourier pseudo-spectral ETDRK4 (Cox–Matthews, Kassam–Trefethen contour coefficients, 2/3 dealiasing) in
float64 on M points, with equal internal steps ≤ 0.05. Wavenumbers are k = 2πm/L, so the coefficients are per
trajectory.

Frames are Δt = 0.2 apart, PDE-Refiner's spacing: about 1/60 of a Lyapunov time, so one step is a small,
smooth change and a rollout of a few hundred steps crosses many Lyapunov times. The first `burn_in` = 100 time
units are discarded: from the sinusoidal initial conditions the mean energy ⟨u²⟩ and the spectral peak settle
(at ≈1.7 and k ≈ 0.7) only after ~60 time units (measured on 64 trajectories), and frames before that would
teach a transient that no later state shows. t-coordinate counts from the end of burn-in. Horizons: train on
140 frames (28 time units); validate and test on 640 (128 time units ≈ 11 Lyapunov times), so the time it
takes a rollout to decorrelate from the truth is observed rather than censored by the end of the trajectory.

Lyapunov time: the largest exponent measured with this solver (Benettin, renormalising every time unit, 16
trajectories × 1000 time units at M = 256) is λ = 0.086 ± 0.002 at L = 64, 0.087 at 70.4 and 0.080 at 57.6, so
1/λ ≈ 12 time units. No published value at L = 64 was checked; at L = 22 the literature gives 0.043-0.048, and
λ grows with L. Short domains have regular windows: at L = 57.6, 3 of 16 trajectories reached a travelling
wave (constant ⟨u²⟩) or stayed near one for hundreds of time units within 1000 (one gave λ = 0.018), and 2 of
256 default trajectories (L ≈ 59) have ⟨u²⟩ varying by < 3% over their first 140 frames. They are kept: that
is what the equation does at those lengths.

Cost, measured: 64 trajectories of 100 + 640·0.2 time units in 2.4 s (one thread; 256 in 9 s). Legend: N
trajectories, T frames, X stored points, M solver points, K = M//2 + 1 Fourier modes, B a batch of
trajectories.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ups.data.pdebench import GeneratedData
from ups.data.spectral import etdrk4_step, solver_threads, step_coefficients
from ups.data.storage_grid import check_storage_grid
from ups.spec.errors import SpecError

GENERATOR_VERSION = 1
"""Bump whenever generated numbers change: it is part of the cache key."""

_IC_WAVES = 10
"""Brandstetter et al.'s KS initial condition: Σ_j A_j sin(2π ℓ_j x/L + φ_j) over 10 waves, A_j ~ U[-½, ½],
ℓ_j ∈ {1, 2}, φ_j ~ U[0, 2π). Whole periods only, so the mean is zero, and KS keeps it zero."""
_BATCH = 256  # trajectories per solve: the cost is mostly per op, so larger batches amortise it
_GENERATE_CHUNK = 128  # bounds the float64 frames held: 128 × 640 × 256 × 8 B = 168 MB


def ks_initial_conditions(
    x: np.ndarray, *, indices: np.ndarray | range, seed: int, length_low: float, length_high: float
) -> tuple[np.ndarray, np.ndarray]:
    """ICs at points `x`, in units of the domain (x/L), and domain lengths: ((n, X), (n,)) float64.

    Each row draws L and then its waves from a generator seeded by (seed, index), so trajectory i is the same
    whatever the number of trajectories asked for.
    """
    x = np.asarray(x, dtype=np.float64)
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if (indices < 0).any() or seed < 0:
        raise ValueError(f"`seed` and `indices` must be >= 0, got (seed={seed}, min index={indices.min()})")
    u0 = np.empty((indices.size, x.size))  # (n, X)
    lengths = np.empty(indices.size)  # (n,)
    for row, index in enumerate(indices):
        rng = np.random.default_rng([seed, int(index)])
        lengths[row] = rng.uniform(length_low, length_high)
        amp = rng.uniform(-0.5, 0.5, size=_IC_WAVES)
        phase = rng.uniform(0.0, 2 * np.pi, size=_IC_WAVES)
        mode = rng.integers(1, 3, size=_IC_WAVES)
        u0[row] = (amp[:, None] * np.sin(2 * np.pi * mode[:, None] * x[None, :] + phase[:, None])).sum(axis=0)
    return u0, lengths


def solve_ks(
    u0: np.ndarray,
    *,
    lengths: np.ndarray,
    dt_save: float,
    num_frames: int,
    step: float = 0.05,
    refinement: int = 1,
) -> np.ndarray:
    """Frames every `dt_save`, frame 0 being `u0`: (n, T, X) float64.

    `u0` (n, X) samples each trajectory on a uniform grid of its own period, `lengths` (n,) those periods.
    Each frame takes ceil(dt_save/step) equal steps, each divided into `refinement` (a reference solution, for
    tests). The solver runs on u0's grid, so X is the resolution: 256 points resolve L ≤ 70.4 to 1e-10.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.float64)
    if u0.ndim != 2 or lengths.shape != u0.shape[:1]:
        raise ValueError(
            f"`u0` (trajectories, points) and `lengths` (trajectories,) must hold, got "
            f"(u0={u0.shape}, lengths={lengths.shape})"
        )
    n, num_points = u0.shape
    if not (
        dt_save > 0 and num_frames >= 1 and step > 0 and np.isfinite(lengths).all() and (lengths > 0).all()
    ):
        raise ValueError(
            f"`dt_save > 0`, `num_frames >= 1`, `step > 0` and finite `lengths > 0` must hold, got "
            f"(dt_save={dt_save}, num_frames={num_frames}, step={step}, "
            f"min length={lengths.min(initial=1.0)})"
        )
    if not (isinstance(refinement, int) and refinement >= 1):
        raise ValueError(f"`refinement` must be an integer >= 1, got {refinement!r}")
    num_steps = max(1, math.ceil(dt_save / step - 1e-9)) * refinement
    h = dt_save / num_steps
    out = np.empty((n, num_frames, num_points))  # (n, T, X)
    out[:, 0] = u0
    with solver_threads():  # one intra-op thread and flushed subnormals, as for Burgers (same reasons)
        for start in range(0, n, _BATCH):
            rows = slice(start, start + _BATCH)
            solver = _SpectralKS(num_points, lengths[rows], h)
            v = torch.fft.rfft(torch.from_numpy(u0[rows]), norm="forward")  # (B, K)
            for frame in range(1, num_frames):
                for _ in range(num_steps):
                    v = etdrk4_step(v, solver.coefficients, solver.squared)
                u = torch.fft.irfft(v, n=num_points, norm="forward")  # (B, X)
                if not torch.isfinite(u).all():
                    raise FloatingPointError("the Kuramoto–Sivashinsky solve diverged (non-finite values)")
                out[rows, frame] = u.numpy()
    return out


def generate_ks(
    *,
    num_trajectories: int,
    num_points: int = 256,
    num_frames: int = 640,
    dt: float = 0.2,
    solver_points: int = 256,
    seed: int = 0,
    length_low: float = 57.6,
    length_high: float = 70.4,
    burn_in: float = 100.0,
) -> GeneratedData:
    """A KS data set in PDEBench's layout plus the dataset `L` (N,): frames every `dt` after `burn_in`.

    Trajectory i (its L, initial condition and frames) depends on (seed, i) only.
    """
    check_storage_grid(
        num_trajectories=num_trajectories,
        num_points=num_points,
        num_frames=num_frames,
        dt=dt,
        solver_points=solver_points,
    )
    if not (0 < length_low <= length_high < math.inf):
        raise SpecError(
            "the domain lengths must satisfy 0 < length_low <= length_high < inf",
            key="data.length_low",
            got={"length_low": length_low, "length_high": length_high},
        )
    if burn_in is None or not (0 <= burn_in < math.inf):
        raise SpecError("the burn-in time must be finite and >= 0", key="data.burn_in", got=burn_in)
    if seed is None or seed < 0:
        raise SpecError("must be >= 0", key="data.seed", got=seed)
    stride = solver_points // num_points
    # Solver grid (domain fractions) with the storage cell centres (i + ½)/X at every stride-th point.
    x_solver = (np.arange(solver_points) + stride / 2) / solver_points  # (M,)
    tensor = np.empty((num_trajectories, num_frames, num_points), dtype=np.float32)  # (N, T, X)
    lengths = np.empty(num_trajectories)  # (N,)
    for start in range(0, num_trajectories, _GENERATE_CHUNK):
        rows = range(start, min(start + _GENERATE_CHUNK, num_trajectories))
        u0, lengths[rows.start : rows.stop] = ks_initial_conditions(
            x_solver, indices=rows, seed=seed, length_low=length_low, length_high=length_high
        )  # (n, M), (n,)
        own = lengths[rows.start : rows.stop]
        if burn_in > 0:
            u0 = solve_ks(u0, lengths=own, dt_save=burn_in, num_frames=2)[:, 1]  # (n, M)
        frames = solve_ks(u0, lengths=own, dt_save=dt, num_frames=num_frames)  # (n, T, M)
        tensor[rows.start : rows.stop] = frames[:, :, ::stride]  # (n, T, X)
    return GeneratedData(
        tensor=tensor,
        x=((np.arange(num_points) + 0.5) / num_points).astype(np.float32),  # fractions of each trajectory's L
        t=(np.arange(num_frames + 1) * dt).astype(np.float32),  # one more entry than frames, as PDEBench
        attrs={
            "equation": "ks1d",
            "solver": "etdrk4-spectral",
            "initial_condition": "sum-of-10-sines-l1-2",
            "seed": int(seed),
            "generator_version": GENERATOR_VERSION,
            "burn_in": float(burn_in),
            "length_low": float(length_low),
            "length_high": float(length_high),
            "dt": float(dt),
            "solver_points": int(solver_points),
        },
        datasets={"L": lengths},
    )


class _SpectralKS:
    """ETDRK4 for v̂_t = (k² − k⁴) v̂ − ½ i k P·FFT(u²), k = 2πm/L per row, P the 2/3 dealiasing mask."""

    def __init__(self, num_points: int, lengths: np.ndarray, h: float) -> None:
        self.num_points = num_points
        modes = torch.arange(num_points // 2 + 1, dtype=torch.float64)  # (K,)
        kept = modes < num_points / 3  # 2/3 rule: products of kept modes never alias onto kept modes
        k = 2 * math.pi * modes / torch.from_numpy(lengths)[:, None]  # (B, K)
        self.coefficients = step_coefficients(k**2 - k**4, h, -0.5j * k * kept)  # each (B, K)

    def squared(self, v: torch.Tensor) -> torch.Tensor:
        """FFT(u²); the flux derivative −½ik and the dealiasing mask live in the step coefficients."""
        u = torch.fft.irfft(v, n=self.num_points, norm="forward")  # (B, M)
        return torch.fft.rfft(u.square_(), norm="forward")  # (B, K)
