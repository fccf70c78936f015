"""2D incompressible Navier–Stokes in vorticity form on the unit torus, in the FNO paper's setup (Li et al. 2021).

    w_t + u·∇w = ν Δw + f,   u = ∇^⊥ψ = (ψ_y, −ψ_x),   −Δψ = w,   (x, y) ∈ [0, 1)² periodic,
    f(x, y) = 0.1 (sin 2π(x + y) + cos 2π(x + y)).

Initial vorticity: the FNO sampler's Gaussian random field, mean 0, covariance 2·7³ (−Δ + 49 I)^{−2.5}. The paper
writes 7^{3/2}(−Δ + 49 I)^{−2.5}, but its code multiplies the *square root* of the eigenvalues by √2·7^{3/2} and
keeps the real part of a complex field, so the fields it made (and trained on) have eigenvalue 2·7³ λ^{−2.5} on
the Fourier mode e^{2πi k·x}, λ = 4π²|k|² + 49: a point standard deviation of 0.27 (the paper's literal formula
would give 0.044). The field is drawn on the modes |k_x|, |k_y| ≤ 63 of a 128² grid whatever the solver grid
(higher modes have standard deviations below 1e-4 of mode 1's), from `torch.Generator().manual_seed(seed ·
1_000_003 + i)` for trajectory i, so trajectory i depends on (seed, i) only, and solves of one field on 64² and
128² differ only by what each grid resolves.

Method: Fourier pseudo-spectral on M_x × M_y points, complex64, full (not half) spectra so that u + iv and
w_x + iw_y each come from one complex inverse FFT: per stage two inverse and one forward 2D FFT. The state is kept
on the 2/3-rule modes |k| ≤ (M − 1)//3 per axis (products of such fields alias into no kept mode), as is the
nonlinear term. Time stepping: integrating-factor RK4 — the viscous term exactly (e^{−ν|2πk|²h}), advection and
forcing by classical RK4. The step is planned per trajectory at least every time unit: the largest CFL rate
max_x (|u| M_x + |v| M_y) of the trajectory at the start of the span sets n = ceil(span · rate / CFL) equal steps,
CFL = `_CFL`, so a coarser grid takes larger steps, each frame time is hit exactly, and a trajectory's numbers do
not depend on the rest of its batch (rows with the same n are advanced together; FFTs and elementwise ops are
batch-invariant on one thread).

Accuracy checks (tests/data/test_ns2d.py and measurements):
- a single Fourier pair with forcing off (the nonlinear term vanishes exactly) decays as e^{−ν|2πk|²t}: max
  relative error 2e-7 at float32 rounding;
- the step: CFL 1 (about h = 0.04 at 64² on the flagship data) against CFL 0.25 after 30 time units: ... relative
  L2 (float32 rounding grows to 1e-4 over that time, so the steps' truncation error is below it); the RK4 solve
  goes unstable near CFL 3;
- the grid: 64² against 128² from the same field after burn-in 10 + 20 time units: ... relative L2.

Storing: frames are point values on x_i = i/X, y_j = j/Y of the solution's Fourier projection onto the modes
|k_x| < X/2, |k_y| < Y/2 (Fourier truncation): exact point values whenever (M − 1)//3 < X/2, e.g. X = M.

Flagship data (ν = 1e-3, 64², dt = 1, 21 frames, 256 trajectories) after the recommended burn-in of
`RECOMMENDED_BURN_IN` time units: ...

Legend: N trajectories, T frames, X × Y stored points, B a batch of trajectories, M_x × M_y solver points
(full complex spectra have the same shape), H coarse-solve frames.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ups.data.pdebench import GeneratedData
from ups.data.spectral import solver_threads

GENERATOR_VERSION = 1
"""Bump whenever generated numbers change: it is part of the cache key."""

RECOMMENDED_BURN_IN = 10.0
"""Time units discarded before the first stored frame (the flagship's setting; the generator takes any)."""

FORCING = "0.1(sin 2pi(x+y) + cos 2pi(x+y))"

_CFL = 1.0
"""Target of h · max_x(|u| M_x + |v| M_y) for the IF-RK4 step."""
_PLAN_SPAN = 1.0
"""Longest span (time units) with one planned step size; frames further apart are split into equal spans."""
_BATCH = 64
"""Trajectories advanced together: bounds memory (a (B, 2, 64, 64) complex64 stage is 2 MiB at B = 64)."""
_GRF_GRID = 128
"""The initial field is drawn on the modes of this grid (|k| ≤ 63), whatever the solver grid."""
_GRF_TAU, _GRF_ALPHA = 7.0, 2.5
_GRF_SCALE = 2 * _GRF_TAU ** (2 * _GRF_ALPHA - 2)
"""FNO's sampler: covariance eigenvalue 2·7³ λ^{−2.5} (see the module docstring)."""


def generate_ns2d(
    *,
    nu: float,
    burn_in: float,
    num_trajectories: int,
    num_points: int,
    num_frames: int,
    dt: float,
    solver_points: int,
    seed: int,
    **_unused: object,
) -> GeneratedData:
    """Vorticity (N, T, X, Y) every `dt` after `burn_in`, solved on solver_points², stored on num_points².

    Trajectory i depends on (seed, i) only."""
    _check_solver_grid(solver_points, solver_points)
    if num_points < 1 or solver_points % num_points:
        raise ValueError(f"num_points must divide solver_points={solver_points}, got {num_points}")
    if not 0 < nu < math.inf:
        raise ValueError(f"nu must be > 0 and finite, got {nu}")
    if not 0 < dt < math.inf:
        raise ValueError(f"dt must be > 0 and finite, got {dt}")
    if not 0 <= burn_in < math.inf:
        raise ValueError(f"burn_in must be >= 0 and finite, got {burn_in}")
    if num_frames < 1 or num_trajectories < 1:
        raise ValueError(
            f"num_frames and num_trajectories must be >= 1, got ({num_frames}, {num_trajectories})"
        )
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    grid = (solver_points, solver_points)
    tensor = np.empty((num_trajectories, num_frames, num_points, num_points), dtype=np.float32)  # (N, T, X, Y)
    with solver_threads():
        for start in range(0, num_trajectories, _BATCH):
            rows = range(start, min(start + _BATCH, num_trajectories))
            w_hat = initial_spectra(rows, seed=seed, grid=grid)  # (B, M, M)
            tensor[rows.start : rows.stop] = _integrate(
                w_hat,
                nu=nu,
                forcing=True,
                burn_in=burn_in,
                dt=dt,
                num_frames=num_frames,
                points=(num_points, num_points),
            )
    positions = (np.arange(num_points) / num_points).astype(np.float32)  # (X,)
    return GeneratedData(
        tensor=tensor,
        x=positions,
        y=positions.copy(),
        t=(np.arange(num_frames + 1) * dt).astype(np.float32),  # T + 1 entries, from the burn-in's end
        attrs={
            "equation": "ns2d",
            "Nu": float(nu),
            "channels": "w",
            "forcing": FORCING,
            "burn_in": float(burn_in),
            "solver_points": int(solver_points),
        },
    )


def coarse_solve(start: np.ndarray, *, dt: float, horizon: int, params: dict, factor: int) -> np.ndarray:
    """start (N, 1, X, Y) vorticity on the stored grid → (N, H, 1, X, Y) float32: the same equation (params["nu"],
    the same forcing) solved from `start` on a grid `factor`× coarser per axis (start restricted by Fourier
    truncation), the frames at dt, 2dt, ..., H·dt brought back to the stored grid by Fourier zero-padding."""
    if params.get("nu") is None:
        raise ValueError("the ns2d coarse solver needs params['nu']")
    start = np.asarray(start)
    if start.ndim != 4 or start.shape[1] != 1:
        raise ValueError(f"start must be (N, 1, X, Y) vorticity, got shape {start.shape}")
    n, _, x, y = start.shape
    coarse = (x // factor, y // factor) if factor >= 1 else (0, 0)
    if factor < 1 or x % factor or y % factor or any(c % 2 or c < 8 for c in coarse):
        raise ValueError(f"{x}×{y} points do not coarsen by {factor} to an even grid of at least 8 per axis")
    if not 0 < dt < math.inf or horizon < 1:
        raise ValueError(f"dt must be > 0 and horizon >= 1, got ({dt}, {horizon})")
    frames = np.empty((n, horizon, 1, x, y), dtype=np.float32)  # (N, H, 1, X, Y)
    with solver_threads():
        fields = torch.from_numpy(np.ascontiguousarray(start[:, 0], dtype=np.float32))  # (N, X, Y)
        w_hat = _resample(torch.fft.fft2(fields, norm="forward"), coarse)  # (N, Xc, Yc)
        for first in range(0, n, _BATCH):
            rows = slice(first, first + _BATCH)
            frames[rows, :, 0] = _integrate(
                w_hat[rows],
                nu=float(params["nu"]),
                forcing=True,
                burn_in=dt,
                dt=dt,
                num_frames=horizon,
                points=(x, y),
            )
    return frames


def solve_vorticity(
    w0: np.ndarray, *, nu: float, dt: float, num_frames: int, forcing: bool = True
) -> np.ndarray:
    """Internal entry point (tests): frames every `dt` from explicit point values `w0` (N, X, Y), solved on w0's
    own grid; frame 0 is w0 restricted to the solver's 2/3-rule modes. `forcing=False` drops f. (N, T, X, Y)
    float32."""
    w0 = np.asarray(w0, dtype=np.float32)
    if w0.ndim != 3:
        raise ValueError(f"w0 must be (N, X, Y), got shape {w0.shape}")
    _check_solver_grid(*w0.shape[1:])
    with solver_threads():
        w_hat = torch.fft.fft2(torch.from_numpy(w0), norm="forward")  # (N, X, Y)
        return _integrate(
            w_hat, nu=nu, forcing=forcing, burn_in=0.0, dt=dt, num_frames=num_frames, points=w0.shape[1:]
        )


def initial_spectra(indices: range | list[int], *, seed: int, grid: tuple[int, int]) -> torch.Tensor:
    """Initial vorticity of trajectories `indices` as forward-normalised spectra on `grid`: (B, M_x, M_y)
    complex64, zero outside the grid's 2/3-rule modes.

    Mode k gets √μ_k (ξ_k + conj ξ_{−k})/2 with ξ_k standard complex normal (E|ξ|² = 2) — Hermitian, so the field
    is real, with E|ŵ_k|² = μ_k = 2·7³ (4π²|k|² + 49)^{−2.5}, μ_0 = 0."""
    k = _wavenumbers(_GRF_GRID)
    eig = _GRF_SCALE * (4 * math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + _GRF_TAU**2) ** -_GRF_ALPHA
    eig[0, 0] = 0.0
    root = eig.sqrt()  # (G, G)
    mirror = (-torch.arange(_GRF_GRID)) % _GRF_GRID  # index of −k
    band = tuple(min((m - 1) // 3, _GRF_GRID // 2 - 1) for m in grid)
    src_x, dst_x = _modes_up_to(band[0], _GRF_GRID, grid[0])
    src_y, dst_y = _modes_up_to(band[1], _GRF_GRID, grid[1])
    out = torch.zeros(len(indices), *grid, dtype=torch.complex64)  # (B, M_x, M_y)
    for row, index in enumerate(indices):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + int(index))
        xi = torch.view_as_complex(torch.randn(_GRF_GRID, _GRF_GRID, 2, generator=generator, dtype=torch.float64))
        w_hat = root * (xi + xi[mirror][:, mirror].conj()) / 2  # (G, G)
        out[row, dst_x[:, None], dst_y] = w_hat[src_x[:, None], src_y].to(torch.complex64)
    return out


# solver ----------------------------------------------------------------------------------------------------------
def _integrate(
    w_hat: torch.Tensor,
    *,
    nu: float,
    forcing: bool,
    burn_in: float,
    dt: float,
    num_frames: int,
    points: tuple[int, int],
) -> np.ndarray:
    """The one stepping path: spectra (B, M_x, M_y) on the solver grid → frames (B, T, X, Y) float32, the first
    after `burn_in`, then every `dt`, as point values on X × Y (Fourier truncation or zero-padding)."""
    solver = _Solver(*w_hat.shape[-2:], nu=nu, forcing=forcing)
    w_hat = w_hat * solver.keep  # the 2/3-rule modes only
    if burn_in > 0:
        w_hat = solver.advance(w_hat, burn_in)
    frames = np.empty((w_hat.shape[0], num_frames, *points), dtype=np.float32)  # (B, T, X, Y)
    for frame in range(num_frames):
        if frame:
            w_hat = solver.advance(w_hat, dt)
        frames[:, frame] = torch.fft.ifft2(_resample(w_hat, points), norm="forward").real.numpy()
    if not np.isfinite(frames).all():
        raise FloatingPointError("the Navier–Stokes solve diverged (non-finite values)")
    return frames


class _Solver:
    """IF-RK4 for ŵ_t = −ν|2πk|² ŵ + f̂ − P·FFT(u·∇w) on an M_x × M_y grid, P the 2/3-rule mask."""

    def __init__(self, mx: int, my: int, *, nu: float, forcing: bool) -> None:
        self.shape = (mx, my)
        kx, ky = _wavenumbers(mx)[:, None], _wavenumbers(my)[None, :]  # (M_x, 1), (1, M_y)
        keep = (kx.abs() <= (mx - 1) // 3) & (ky.abs() <= (my - 1) // 3)  # (M_x, M_y)
        kappa = 2 * math.pi * torch.complex(kx.expand(mx, my), ky.expand(mx, my))  # 2π(k_x + i k_y)
        kappa_sq = kappa.abs() ** 2
        inverse_laplacian = torch.where(kappa_sq > 0, 1 / kappa_sq.clamp_min(1e-300), 0.0)  # ψ̂ = ŵ / |2πk|²
        # û + iv̂ = 2πi k_y ψ̂ − 2πi·i k_x ψ̂ = κ ψ̂ and ŵ_x + iŵ_y = iκ ŵ: one complex inverse FFT each.
        self.to_velocity_gradient = torch.stack([kappa * inverse_laplacian, 1j * kappa]).to(torch.complex64)
        self.keep = keep.to(torch.complex64)  # (M_x, M_y)
        self.minus_keep = -self.keep
        self.viscous = -nu * kappa_sq  # (M_x, M_y) float64
        x = torch.arange(mx, dtype=torch.float64)[:, None] / mx
        y = torch.arange(my, dtype=torch.float64)[None, :] / my
        force = 0.1 * (torch.sin(2 * math.pi * (x + y)) + torch.cos(2 * math.pi * (x + y)))  # (M_x, M_y)
        self.forcing = torch.fft.fft2(force if forcing else 0 * force, norm="forward").to(torch.complex64)

    def advance(self, w_hat: torch.Tensor, duration: float) -> torch.Tensor:
        """(B, M_x, M_y) → the state `duration` later, in equal spans of at most `_PLAN_SPAN`, each taken in
        the number of steps its trajectory's CFL rate asks for."""
        spans = max(1, math.ceil(duration / _PLAN_SPAN - 1e-9))
        span = duration / spans
        for _ in range(spans):
            steps = torch.ceil(span * self.cfl_rate(w_hat) / _CFL).clamp_min(1)  # (B,)
            for count in torch.unique(steps).tolist():
                rows = (steps == count).nonzero().squeeze(1)
                if len(rows) == len(w_hat):
                    w_hat = self._steps(w_hat, span, int(count))
                else:
                    w_hat = w_hat.index_copy(0, rows, self._steps(w_hat[rows], span, int(count)))
        return w_hat

    def cfl_rate(self, w_hat: torch.Tensor) -> torch.Tensor:
        """max_x (|u| M_x + |v| M_y) per trajectory: (B,) float32; raises if the state is no longer finite."""
        velocity = torch.fft.ifft2(self.to_velocity_gradient[0] * w_hat, norm="forward")  # u + iv (B, M_x, M_y)
        rate = (velocity.real.abs() * self.shape[0] + velocity.imag.abs() * self.shape[1]).amax(dim=(-2, -1))
        if not torch.isfinite(rate).all():
            raise FloatingPointError("the Navier–Stokes solve diverged (non-finite values)")
        return rate

    def _steps(self, w_hat: torch.Tensor, span: float, count: int) -> torch.Tensor:
        """`count` IF-RK4 steps of h = span/count (Cox–Matthews' integrating-factor form of classical RK4)."""
        h = span / count
        full = torch.exp(self.viscous * h).to(torch.complex64)  # e^{Lh}
        half = torch.exp(self.viscous * h / 2).to(torch.complex64)  # e^{Lh/2}
        for _ in range(count):
            k1 = self._tendency(w_hat)
            k2 = self._tendency(w_hat.add(k1, alpha=h / 2).mul_(half))
            half_w = half * w_hat
            k3 = self._tendency(half_w.add(k2, alpha=h / 2))
            k4 = self._tendency(torch.addcmul(full * w_hat, half, k3, value=h))
            w_hat = (
                w_hat.add(k1, alpha=h / 6).mul_(full).addcmul_(half, k2.add_(k3), value=h / 3).add_(k4, alpha=h / 6)
            )
        return w_hat

    def _tendency(self, w_hat: torch.Tensor) -> torch.Tensor:
        """f̂ − P·FFT(u w_x + v w_y): (B, M_x, M_y)."""
        z = torch.fft.ifft2(self.to_velocity_gradient * w_hat[:, None], norm="forward")  # (B, 2, M_x, M_y)
        advection = (z[:, 0].conj() * z[:, 1]).real  # Re((u − iv)(w_x + iw_y)) = u w_x + v w_y
        return torch.addcmul(self.forcing, self.minus_keep, torch.fft.fft2(advection, norm="forward"))


# grids -----------------------------------------------------------------------------------------------------------
def _check_solver_grid(mx: int, my: int) -> None:
    if any(m % 2 or m < 16 for m in (mx, my)):
        raise ValueError(f"solver_points must be even and >= 16 per axis, got {mx}×{my}")


def _wavenumbers(m: int) -> torch.Tensor:
    """Integer wavenumbers of an m-point FFT in its order: 0, 1, ..., −1 (m,) float64."""
    return torch.fft.fftfreq(m, 1.0 / m, dtype=torch.float64)


def _modes_up_to(band: int, source: int, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the modes −band..band in an FFT of `source` points and of `target` points."""
    k = torch.arange(-band, band + 1)
    return k % source, k % target


def _resample(w_hat: torch.Tensor, points: tuple[int, int]) -> torch.Tensor:
    """Spectra (B, M_x, M_y) → (B, X, Y): the modes both grids hold without their Nyquist modes (truncation, or
    zero-padding when the target is finer)."""
    (mx, my), (x, y) = w_hat.shape[-2:], points
    src_x, dst_x = _modes_up_to((min(mx, x) - 1) // 2, mx, x)
    src_y, dst_y = _modes_up_to((min(my, y) - 1) // 2, my, y)
    out = w_hat.new_zeros(w_hat.shape[0], x, y)
    out[:, dst_x[:, None], dst_y] = w_hat[:, src_x[:, None], src_y]
    return out
