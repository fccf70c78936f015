"""The classical baseline every run reports next to persistence: the family's own equation solved again on a grid
`factor`× coarser than the stored one, from the last given frame, with a scheme suited to the family (DESIGN):

- Burgers and advection: finite volume — MUSCL reconstruction with minmod slopes, the exact (Godunov) flux,
  central viscous flux, SSP-RK2 in time at CFL 0.4 (a coarse spectral solve rings at fronts);
- diffusion-reaction and Kuramoto–Sivashinsky: the generators' own ETDRK4 solvers on the coarse grid.

The coarse start is the stored frame restricted to the coarse grid (cell averages for finite volume, the lowest
Fourier modes for the spectral solvers); the coarse frames are brought back to the stored grid (periodic linear
interpolation, or Fourier zero-padding) and scored with the metrics' nRMSE.

Legend: N trajectories, H frames, X stored points, Xc = X / factor.
"""

from __future__ import annotations

import math

import numpy as np

FACTOR = 4


def _start(start: np.ndarray, factor: int) -> tuple[np.ndarray, int, int]:
    """(N, 1, X) or (N, X) → the single field (N, X) in float64, N and the coarse size."""
    u = np.asarray(start, dtype=np.float64)
    if u.ndim == 3:
        if u.shape[1] != 1:
            raise ValueError(f"the 1D solvers take one channel, got {u.shape[1]}")
        u = u[:, 0]
    n, x = u.shape
    if x % factor or (x // factor) % 2:
        raise ValueError(f"{x} points do not coarsen by {factor} to an even grid")
    return u, n, x // factor


def _need(params: dict, *names: str) -> None:
    missing = [p for p in names if params.get(p) is None]
    if missing:
        raise ValueError(f"the solver needs {', '.join(missing)}")


def burgers(start: np.ndarray, *, dt: float, horizon: int, params: dict, factor: int = FACTOR) -> np.ndarray:
    """Burgers' `horizon` frames after `start` (N, 1, X), solved `factor`× coarser by finite volume: (N, H, 1, X)."""
    _need(params, "nu")
    u, n, xc = _start(start, factor)
    cells = u.reshape(n, xc, factor).mean(axis=2)  # (N, Xc): cell averages
    frames = _finite_volume(cells, dt=dt, horizon=horizon, diffusion=params["nu"] / math.pi, beta=None)
    return _linear_up(frames, factor)[:, :, None]


def advection(
    start: np.ndarray, *, dt: float, horizon: int, params: dict, factor: int = FACTOR
) -> np.ndarray:
    _need(params, "beta")
    u, n, xc = _start(start, factor)
    cells = u.reshape(n, xc, factor).mean(axis=2)
    frames = _finite_volume(cells, dt=dt, horizon=horizon, diffusion=0.0, beta=params["beta"])
    return _linear_up(frames, factor)[:, :, None]


def reaction_diffusion(
    start: np.ndarray, *, dt: float, horizon: int, params: dict, factor: int = FACTOR
) -> np.ndarray:
    from ups.data.reaction_diffusion import solve_reaction_diffusion

    _need(params, "nu", "rho")
    u, n, xc = _start(start, factor)
    coarse = _fourier_resample(u, xc)  # (N, Xc): the lowest modes
    frames = solve_reaction_diffusion(
        coarse, nu=params["nu"], rho=params["rho"], dt_save=dt, num_frames=horizon + 1, solver_points=xc
    )
    return _fourier_resample(frames[:, 1:], u.shape[1])[:, :, None]


def ks(start: np.ndarray, *, dt: float, horizon: int, params: dict, factor: int = FACTOR) -> np.ndarray:
    """`params["L"]`: the domain length, one per trajectory ((N,)) or shared."""
    from ups.data.ks import solve_ks

    _need(params, "L")
    u, n, xc = _start(start, factor)
    coarse = _fourier_resample(u, xc)
    lengths = np.array(np.broadcast_to(np.asarray(params["L"], dtype=np.float64), (n,)))
    frames = solve_ks(coarse, lengths=lengths, dt_save=dt, num_frames=horizon + 1)
    return _fourier_resample(frames[:, 1:], u.shape[1])[:, :, None]


# finite volume -------------------------------------------------------------------------------------------------
def _finite_volume(
    u: np.ndarray, *, dt: float, horizon: int, diffusion: float, beta: float | None
) -> np.ndarray:
    """Frames every `dt` of u_t + f(u)_x = D u_xx on [0, 1) periodic: f = u²/2 (beta None) or β u."""
    n, xc = u.shape
    dx = 1.0 / xc
    out = np.empty((n, horizon, xc))
    for frame in range(horizon):
        speed = abs(beta) if beta is not None else float(np.abs(u).max(initial=0.0))
        limits = [0.4 * dx / speed if speed > 0 else math.inf]
        if diffusion > 0:
            limits.append(0.2 * dx * dx / diffusion)
        steps = max(1, math.ceil(dt / min(*limits, dt)))
        h = dt / steps
        for _ in range(steps):
            half = u + h * _rhs(u, dx, diffusion, beta)
            u = 0.5 * (u + half + h * _rhs(half, dx, diffusion, beta))
        if not np.isfinite(u).all():
            raise FloatingPointError("the coarse finite-volume solve diverged")
        out[:, frame] = u
    return out


def _rhs(u: np.ndarray, dx: float, diffusion: float, beta: float | None) -> np.ndarray:
    left, right = np.roll(u, 1, axis=1), np.roll(u, -1, axis=1)
    a, b = u - left, right - u
    slope = np.where(a * b > 0, np.sign(a) * np.minimum(np.abs(a), np.abs(b)), 0.0)  # minmod
    u_minus = u + 0.5 * slope  # the left state at face i+½
    u_plus = np.roll(u - 0.5 * slope, -1, axis=1)  # the right state at face i+½
    if beta is None:  # Godunov flux of u²/2 (convex): max(f(max(uL, 0)), f(min(uR, 0)))
        flux = np.maximum(0.5 * np.maximum(u_minus, 0.0) ** 2, 0.5 * np.minimum(u_plus, 0.0) ** 2)
    else:
        flux = beta * (u_minus if beta >= 0 else u_plus)
    rhs = -(flux - np.roll(flux, 1, axis=1)) / dx
    if diffusion > 0:
        rhs += diffusion * (right - 2 * u + left) / (dx * dx)
    return rhs


def _linear_up(frames: np.ndarray, factor: int) -> np.ndarray:
    """Periodic linear interpolation from coarse cell centres (j+½)/Xc to the stored points (i+½)/X."""
    xc = frames.shape[-1]
    pos = (np.arange(xc * factor) + 0.5) / factor - 0.5  # stored points in coarse-index units
    j = np.floor(pos).astype(int)
    w = pos - j
    return (1 - w) * frames[..., j % xc] + w * frames[..., (j + 1) % xc]


# spectral ------------------------------------------------------------------------------------------------------
def _fourier_resample(u: np.ndarray, points: int) -> np.ndarray:
    """Periodic samples (..., X) → (..., points) through the Fourier series, the shared modes kept and both grids'
    Nyquist modes dropped (their interpolant is not unique)."""
    x = u.shape[-1]
    modes = np.fft.rfft(u, axis=-1, norm="forward")
    kept = min(x, points) // 2  # modes 0 .. kept-1
    out = np.zeros((*u.shape[:-1], points // 2 + 1), dtype=complex)
    out[..., :kept] = modes[..., :kept]
    return np.fft.irfft(out, n=points, axis=-1, norm="forward")
