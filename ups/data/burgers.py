"""1D viscous Burgers data in PDEBench's conventions.

    u_t + (u²/2)_x = (ν/π) u_xx,   x ∈ [0, 1) periodic,   stored on cell centres x_i = (i + ½)/X.

Solved with Fourier pseudo-spectral ETDRK4 (Cox–Matthews scheme, Kassam–Trefethen contour coefficients, 2/3
dealiasing) in float64 on M solver points. Legend: N trajectories, T frames, X stored points, M solver points,
K = M//2 + 1 Fourier modes, B a batch of trajectories.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ups.data.pdebench import GeneratedData
from ups.data.spectral import etdrk4_step, solver_threads, step_coefficients, upsample
from ups.data.storage_grid import generate_on_storage_grid
from ups.spec.errors import SpecError

GENERATOR_VERSION = 1
"""Bump whenever generated numbers change: it is part of the cache key."""
NU_MIN = 0.005
"""Below this the viscous shock is thinner than a few cells at affordable M (ν ≤ 0.002 is hopeless at 512)."""

_CFL = 2.0
"""Steps satisfy h·max|u|·k_max ≤ _CFL, k_max the largest dealiased wavenumber (a Courant number of about 0.95;
the scheme stays stable up to about 6). Measured at ν=0.01, M=512: for sin 2πx the step error is ~1e-8; on
PDEBench ICs it is ≤3e-4 in the first frames and 1e-5 later, below the 512-point spatial error there
(1.7e-3 and 2e-4 against M=2048), so smaller steps would buy nothing."""
_BATCH = 256  # trajectories per solve: the cost is mostly per op, so larger batches amortise it
_GENERATE_CHUNK = 256  # bounds the float64 frames held before they are strided and stored as float32


def burgers_initial_conditions(x: np.ndarray, *, indices: np.ndarray | range, seed: int) -> np.ndarray:
    """PDEBench's `init_multi` at points `x` of the unit period: (n, X) float64, a row per trajectory index.

    Each row draws from its own generator seeded by (seed, index), so trajectory i is the same whatever the
    number of trajectories asked for. PDEBench divides by (x[-1] - x[0]) instead of the period, which leaves a
    small jump at the boundary; we use the period so the initial condition is smooth and periodic.
    """
    x = np.asarray(x, dtype=np.float64)
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if (indices < 0).any() or seed < 0:
        raise ValueError(f"`seed` and `indices` must be >= 0, got (seed={seed}, min index={indices.min()})")
    out = np.empty((indices.size, x.size))
    for row, index in enumerate(indices):
        out[row] = _init_multi(x, np.random.default_rng([seed, int(index)]))
    return out


def _init_multi(x: np.ndarray, rng: np.random.Generator, num_modes: int = 4) -> np.ndarray:
    # Every draw happens whatever the branches, so the stream layout is fixed.
    picks = rng.integers(0, num_modes, size=2)  # two wavenumbers with replacement
    counts = np.bincount(picks, minlength=num_modes)  # 0 → a constant term, 2 → a doubled wavenumber
    amp = rng.uniform(0.0, 1.0, size=num_modes)
    phase = rng.uniform(0.0, 2 * np.pi, size=num_modes)
    take_abs = rng.random() < 0.1
    sign = 1.0 if rng.random() < 0.5 else -1.0
    windowed = rng.random() < 0.1
    left, right = rng.uniform(0.1, 0.45), rng.uniform(0.55, 0.9)

    k = 2 * np.pi * np.arange(1, num_modes + 1) * counts
    u = (amp[:, None] * np.sin(k[:, None] * x[None, :] + phase[:, None])).sum(axis=0)  # (X,)
    if take_abs:
        u = np.abs(u)
    u = sign * u
    if windowed:
        width = 0.01
        u = u * 0.5 * (np.tanh((x - left) / width) - np.tanh((x - right) / width))
    return u


def solve_burgers(
    u0: np.ndarray, *, nu: float, dt_save: float, num_frames: int, solver_points: int = 512
) -> np.ndarray:
    """Frames of Burgers' solution every `dt_save`, frame 0 being `u0`: (n, T, X) float64.

    `u0` (n, X) samples a periodic function on any uniform grid x_i = x_0 + i/X; X must divide `solver_points`.
    It is interpolated spectrally (zero-padded Fourier series) onto the grid x_0 + j/M, which contains the
    storage grid at every (M/X)-th point, so frames are returned on exactly the points `u0` was given on.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    if u0.ndim != 2:
        raise ValueError(f"`u0` must be (trajectories, points), got shape {u0.shape}")
    n, num_points = u0.shape
    if not (nu > 0 and dt_save > 0 and num_frames >= 1):
        raise ValueError(
            f"`nu > 0`, `dt_save > 0` and `num_frames >= 1` must hold, got "
            f"(nu={nu}, dt_save={dt_save}, num_frames={num_frames})"
        )
    if solver_points % num_points:
        raise ValueError(
            f"`solver_points` must be a multiple of the {num_points} points of `u0`, got {solver_points}"
        )
    stride = solver_points // num_points
    solver = _SpectralBurgers(solver_points, diffusion=nu / math.pi)
    out = np.empty((n, num_frames, num_points))
    out[:, 0] = u0

    # One thread: at these sizes the cost is per op, and intra-op threads mostly synchronise (and stall when
    # the cores are shared: 10-20x slower, measured). Subnormals from decaying modes would slow the FFTs.
    with solver_threads():
        for start in range(0, n, _BATCH):
            u = torch.from_numpy(u0[start : start + _BATCH])  # (B, X)
            v = upsample(u, solver_points)  # (B, K)
            for frame in range(1, num_frames):
                v, u = solver.advance(v, dt_save)  # (B, K), (B, M)
                out[start : start + _BATCH, frame] = u[:, ::stride].numpy()
    return out


def generate_burgers(
    *,
    nu: float,
    num_trajectories: int,
    num_points: int = 256,
    num_frames: int = 41,
    dt: float = 0.05,
    solver_points: int = 512,
    seed: int = 0,
) -> GeneratedData:
    """A Burgers data set in PDEBench's layout: ICs from `init_multi`, frames every `dt` from t = 0."""
    if nu is None or not nu >= NU_MIN:
        raise SpecError(
            f"the spectral Burgers generator needs nu >= {NU_MIN} (thinner shocks are not resolved at "
            f"affordable solver_points)",
            key="data.nu",
            got=nu,
            hint="Use a PDEBench file (data.path) for smaller viscosities.",
        )
    return generate_on_storage_grid(
        num_trajectories=num_trajectories,
        num_points=num_points,
        num_frames=num_frames,
        dt=dt,
        solver_points=solver_points,
        chunk=_GENERATE_CHUNK,
        initial=lambda x, rows: burgers_initial_conditions(x, indices=rows, seed=seed),
        solve=lambda u0: solve_burgers(
            u0, nu=nu, dt_save=dt, num_frames=num_frames, solver_points=solver_points
        ),
        attrs={
            "equation": "burgers1d",
            "Nu": float(nu),
            "solver": "etdrk4-spectral",
            "initial_condition": "pdebench-init_multi",
            "seed": int(seed),
            "generator_version": GENERATOR_VERSION,
        },
    )


class _SpectralBurgers:
    """ETDRK4 for v̂_t = -D k² v̂ - ½ i k FFT(u²), with per-trajectory step sizes from max|u|."""

    def __init__(self, num_points: int, *, diffusion: float) -> None:
        self.num_points = num_points
        modes = torch.arange(num_points // 2 + 1, dtype=torch.float64)
        k = 2 * math.pi * modes  # (K,)
        kept = modes < num_points / 3  # 2/3 rule: products of kept modes never alias onto kept modes
        self.linear = -diffusion * k**2  # (K,)
        self.flux = -0.5j * k * kept  # (K,) complex128
        self.k_max = float(k[kept].max())
        self._coefficients: dict[tuple[int, float], tuple[torch.Tensor, ...]] = {}

    def squared(self, v: torch.Tensor) -> torch.Tensor:
        """FFT(u²); the flux derivative -½ik and the dealiasing mask live in the step coefficients."""
        u = torch.fft.irfft(v, n=self.num_points, norm="forward")  # (B, M)
        return torch.fft.rfft(u.square_(), norm="forward")  # (B, K)

    def advance(self, v: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
        """v after time dt, and its values on the grid. Each trajectory's step count depends on itself only."""
        u = torch.fft.irfft(v, n=self.num_points, norm="forward")  # (B, M)
        u_max = u.abs().amax(dim=1).numpy()  # (B,)
        if not np.isfinite(u_max).all():
            raise FloatingPointError("the Burgers solve diverged (non-finite values)")
        steps = np.array([_ladder_ceil(math.ceil(dt * self.k_max * m / _CFL)) for m in u_max])
        for num_steps in np.unique(steps):
            rows = torch.from_numpy(np.flatnonzero(steps == num_steps))
            sub = v if rows.numel() == len(steps) else v[rows]  # (b, K)
            for _ in range(num_steps):
                sub = etdrk4_step(sub, self._coefficients_for(int(num_steps), dt), self.squared)
            if rows.numel() == len(steps):
                v = sub
            else:
                v[rows] = sub
        return v, torch.fft.irfft(v, n=self.num_points, norm="forward")

    def _coefficients_for(self, num_steps: int, dt: float) -> tuple[torch.Tensor, ...]:
        key = (num_steps, dt)
        if key not in self._coefficients:
            self._coefficients[key] = step_coefficients(self.linear, dt / num_steps, self.flux)
        return self._coefficients[key]


def _ladder_ceil(n: int) -> int:
    """Smallest of 1..8, 10, 12, 14, 16, 20, 24, 28, 32, 40, … that is >= n: ≤ 25% more steps, few distinct counts."""
    scale = 1
    while n > 8 * scale:
        scale *= 2
    return max(1, scale * math.ceil(n / scale))
