"""2D incompressible Navier–Stokes in vorticity form on the unit torus, in the FNO paper's setup (Li et al. 2021).

    w_t + u·∇w = ν Δw + f,   u = ∇^⊥ψ = (ψ_y, −ψ_x),   −Δψ = w,   (x, y) ∈ [0, 1)² periodic,
    f(x, y) = 0.1 (sin 2π(x + y) + cos 2π(x + y)).

Initial vorticity: FNO's Gaussian random field, mean 0, covariance 2·7³ (−Δ + 49 I)^{−2.5}. The paper writes
7^{3/2}(−Δ + 49 I)^{−2.5}, but its sampler multiplies the *square root* of the eigenvalues by √2·7^{3/2} and keeps
the real part of a complex field, so the fields it made have variance 2·7³ λ^{−2.5} on the Fourier mode
e^{2πi k·x}, λ = 4π²|k|² + 49: a point standard deviation of 0.26 (the paper's formula read literally gives
0.043). It is drawn on the modes |k_x|, |k_y| ≤ 63 of a 128² grid whatever the solver grid (the modes left out
have standard deviations below 1e-4 of mode 1's), from `torch.Generator().manual_seed(seed · 1_000_003 + i)`
for trajectory i: trajectory i depends on (seed, i) only, and one field solved on 64² and on 128² differs only by
what each grid keeps.

Method: Fourier pseudo-spectral on M_x × M_y points in complex64. Only the 2/3-rule modes |k_x| ≤ (M_x − 1)//3,
|k_y| ≤ (M_y − 1)//3 are kept, in the state and in the nonlinear term (products of such fields alias into no
kept mode). Per stage, one complex inverse FFT of two fields gives u + iv and w_x + iw_y, and one real forward
FFT gives the transform of u w_x + v w_y. Time stepping is integrating-factor RK4: the viscous term exactly
(e^{−ν|2πk|²h}), advection and forcing by classical RK4.

Time step: every span of at most one time unit (frames further apart are split into equal spans) and for each
trajectory, the CFL rate r = max_x (|u| M_x + |v| M_y) at the span's start sets n = ceil(span · r / 1.2)
equal steps. Advection's eigenvalues are at most 2π(|u| K_x + |v| K_y) ≤ (2π/3) r in modulus, and RK4 is stable
on the imaginary axis up to 2√2, so h·r ≤ 1.35 is stable even without viscosity; 1.2 leaves room for the
velocity to grow within a span. (Measured limits: ν = 1e-3 blows up between h·r = 3 and 3.5; ν = 1e-4 at 2.)
The step adapts to the grid (coarser grid → larger steps), and every frame time is reached exactly. Because
trajectories with the same n are advanced together, and FFTs and elementwise ops give the same results for a
row whatever the batch (one thread), a trajectory's numbers do not depend on the rest of its batch.

Accuracy checks (tests/data/test_ns2d.py, and measured on the flagship setting):
- a single Fourier pair with f off (u·∇w = 0 exactly) decays as e^{−ν|2πk|²t}: relative error ≤ 2e-6
  over 20 time units, which is float32 rounding;
- u·∇w and f against hand-derived tendencies of a two-mode field and of w = 0;
- time: h·r ≤ 1.2 (mean h = 0.065 on the flagship) against 0.3, 16 trajectories: relative L2 of 5e-6 at
  t = 20 and 9e-5 at t = 60. That is float32 rounding grown by the dynamics: bounds from 1 to 3 all give the
  same differences;
- space: 64² against 128² from the same fields, burn-in 30 + 20 time units: 4e-5 at most over 8 trajectories.

Storing: frames are point values on x_i = i/X, y_j = j/Y of the solution's Fourier modes with |k_x| < X/2,
|k_y| < Y/2 (Fourier truncation). They are exact point values whenever (M − 1)//3 < X/2, as for X = M.

Flagship (ν = 1e-3, 64², dt = 1, 21 frames, 256 trajectories). From the raw field, the forced mode k = (1, 1)
first grows to hold ~90% of the enstrophy (t = 5-15, when consecutive frames differ by 8%). That shear flow then
destabilises, and by t ≈ 30 the statistics settle. Measured on 64 trajectories over 100 time units, from
t = 30 on: vorticity std 0.91-0.96, persistence nRMSE ‖w(t+1) − w(t)‖/‖w(t+1)‖ 0.20-0.21, forced-mode share
of enstrophy 0.50-0.57. Hence `RECOMMENDED_BURN_IN` = 30 (FNO's files start at t = 0, mid-transient). Burn-in
30 + 20 frames takes 74 s for N = 256 (one solver thread, while other jobs kept the second core and part of this
one busy), with std 0.94 and persistence 0.21.

Legend: N trajectories, T frames, X × Y stored points, B a batch of trajectories, M_x × M_y solver points,
K_x, K_y the highest kept wavenumbers, H coarse-solve frames.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ups.data.pdebench import GeneratedData
from ups.data.spectral import solver_threads

GENERATOR_VERSION = 1
"""Bump whenever generated numbers change: it is part of the cache key."""

RECOMMENDED_BURN_IN = 30.0
"""Time units discarded before the first stored frame in the flagship setting (the generator takes any)."""

FORCING = "0.1(sin 2pi(x+y) + cos 2pi(x+y))"

_CFL = 1.2
"""Bound on h · max_x(|u| M_x + |v| M_y) for the IF-RK4 step (stable without viscosity up to 1.35)."""
_MAX_STEPS = 100_000
"""More steps per span than this means the solution has blown up (the flagship takes ~15 per time unit)."""
_PLAN_SPAN = 1.0
"""Longest span (time units) with one planned step; frames further apart are split into equal spans."""
_BATCH = 64
"""Trajectories advanced together: bounds memory (a stage's (B, 2, 64, 64) complex64 grid is 4 MiB)."""
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
        got = (num_frames, num_trajectories)
        raise ValueError(f"num_frames and num_trajectories must be >= 1, got {got}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    grid = (solver_points, solver_points)
    points = (num_points, num_points)
    tensor = np.empty((num_trajectories, num_frames, *points), dtype=np.float32)  # (N, T, X, Y)
    with solver_threads():
        for start in range(0, num_trajectories, _BATCH):
            rows = range(start, min(start + _BATCH, num_trajectories))
            tensor[rows.start : rows.stop] = _integrate(
                _initial_spectra(rows, seed=seed, grid=grid),
                grid=grid,
                nu=nu,
                forcing=True,
                burn_in=burn_in,
                dt=dt,
                num_frames=num_frames,
                points=points,
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
    """start (N, 1, X, Y) vorticity on the stored grid → (N, H, 1, X, Y) float32: the same equation
    (params["nu"], the same forcing) solved from `start` on a grid `factor`× coarser per axis (start restricted
    by Fourier truncation), the frames at dt, 2dt, ..., H·dt brought back to the stored grid by Fourier
    zero-padding. The coarse solve keeps the coarse grid's 2/3-rule modes: |k| ≤ (X/factor − 1)//3."""
    if params.get("nu") is None:
        raise ValueError("the ns2d coarse solver needs params['nu']")
    start = np.asarray(start)
    if start.ndim != 4 or start.shape[1] != 1:
        raise ValueError(f"start must be (N, 1, X, Y) vorticity, got shape {start.shape}")
    n, _, x, y = start.shape
    if factor < 1 or x % factor or y % factor or any(m // factor % 2 or m // factor < 8 for m in (x, y)):
        raise ValueError(f"{x}×{y} points do not coarsen by {factor} to an even grid of at least 8 per axis")
    nu = float(params["nu"])
    if not (0 < nu < math.inf and 0 < dt < math.inf and horizon >= 1):
        raise ValueError(f"nu > 0, dt > 0 and horizon >= 1 must hold, got ({nu}, {dt}, {horizon})")
    frames = np.empty((n, horizon, 1, x, y), dtype=np.float32)  # (N, H, 1, X, Y)
    with solver_threads():
        fields = torch.from_numpy(np.ascontiguousarray(start[:, 0], dtype=np.float32))  # (N, X, Y)
        w_hat = torch.fft.rfft2(fields, norm="forward")  # (N, X, Y//2 + 1)
        for first in range(0, n, _BATCH):
            rows = slice(first, first + _BATCH)
            frames[rows, :, 0] = _integrate(
                w_hat[rows],
                grid=(x // factor, y // factor),
                nu=nu,
                forcing=True,
                burn_in=dt,  # the first frame is at dt
                dt=dt,
                num_frames=horizon,
                points=(x, y),
            )
    return frames


def solve_vorticity(
    w0: np.ndarray, *, nu: float, dt: float, num_frames: int, forcing: bool = True
) -> np.ndarray:
    """Internal entry point (tests): frames every `dt` from explicit point values `w0` (N, X, Y), solved on
    w0's own grid; frame 0 is w0 restricted to the solver's 2/3-rule modes, and `forcing=False` drops f.
    (N, T, X, Y) float32."""
    w0 = np.asarray(w0, dtype=np.float32)
    if w0.ndim != 3:
        raise ValueError(f"w0 must be (N, X, Y), got shape {w0.shape}")
    _check_solver_grid(*w0.shape[1:])
    with solver_threads():
        return _integrate(
            torch.fft.rfft2(torch.from_numpy(w0), norm="forward"),
            grid=w0.shape[1:],
            nu=nu,
            forcing=forcing,
            burn_in=0.0,
            dt=dt,
            num_frames=num_frames,
            points=w0.shape[1:],
        )


def _initial_spectra(indices: range, *, seed: int, grid: tuple[int, int]) -> torch.Tensor:
    """Initial vorticity of trajectories `indices` as forward-normalised rfft2 spectra on `grid`:
    (B, M_x, M_y//2 + 1) complex64, zero outside the grid's 2/3-rule modes.

    Mode k gets √μ_k (ξ_k + conj ξ_{−k})/2 with ξ_k standard complex normal (E|ξ|² = 2): Hermitian, so the
    field is real, with E|ŵ_k|² = μ_k = 2·7³ (4π²|k|² + 49)^{−2.5}, μ_0 = 0."""
    k = _wavenumbers(_GRF_GRID)
    eig = _GRF_SCALE * (4 * math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + _GRF_TAU**2) ** -_GRF_ALPHA
    eig[0, 0] = 0.0
    root = eig.sqrt()  # (G, G), G = _GRF_GRID
    mirror = (-torch.arange(_GRF_GRID)) % _GRF_GRID  # the index of −k
    band_x, band_y = (min((m - 1) // 3, _GRF_GRID // 2 - 1) for m in grid)
    kx = torch.arange(-band_x, band_x + 1)
    cols = torch.arange(band_y + 1)
    out = torch.zeros(len(indices), grid[0], grid[1] // 2 + 1, dtype=torch.complex64)  # (B, M_x, M_y//2 + 1)
    for row, index in enumerate(indices):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        normal = torch.randn(_GRF_GRID, _GRF_GRID, 2, generator=generator, dtype=torch.float64)
        xi = torch.view_as_complex(normal)  # (G, G)
        w_hat = root * (xi + xi[mirror][:, mirror].conj()) / 2  # (G, G)
        out[row, (kx % grid[0])[:, None], cols] = w_hat[(kx % _GRF_GRID)[:, None], cols].to(torch.complex64)
    return out


# solver ----------------------------------------------------------------------------------------------------------
def _integrate(
    w_hat: torch.Tensor,
    *,
    grid: tuple[int, int],
    nu: float,
    forcing: bool,
    burn_in: float,
    dt: float,
    num_frames: int,
    points: tuple[int, int],
) -> np.ndarray:
    """The one stepping path. rfft2 spectra (B, ·, ·) of a grid that holds the solver's 2/3-rule modes →
    solved on `grid` → frames (B, T, X, Y) float32, the first after `burn_in`, then every `dt`, as point values
    on X × Y (Fourier truncation, or zero-padding)."""
    solver = _Solver(*grid, nu=nu, forcing=forcing)
    state = solver.from_spectrum(w_hat)  # (B, 2K_x + 1, K_y + 1)
    if burn_in > 0:
        state = solver.advance(state, burn_in)
    frames = np.empty((len(state), num_frames, *points), dtype=np.float32)  # (B, T, X, Y)
    for frame in range(num_frames):
        if frame:
            state = solver.advance(state, dt)
        frames[:, frame] = solver.to_points(state, points).numpy()
    if not np.isfinite(frames).all():
        raise FloatingPointError("the Navier–Stokes solve diverged (non-finite values)")
    return frames


class _Solver:
    """IF-RK4 for ŵ_t = −ν|2πk|² ŵ + f̂ − P·FFT(u w_x + v w_y) on an M_x × M_y grid, P the 2/3 rule.

    The state holds only the kept modes with k_y ≥ 0: (B, 2K_x + 1, K_y + 1), K = (M − 1)//3 per axis, rows in
    FFT order (0..K_x, −K_x..−1). The mask is implicit, and a step's elementwise work touches 23% of the
    grid's modes (M = 64). The state's Hermitian extension to −K_y ≤ k_y < 0, "the band" (B, 2K_x + 1,
    2K_y + 1), is what the inverse FFTs start from."""

    def __init__(self, mx: int, my: int, *, nu: float, forcing: bool) -> None:
        self.shape = (mx, my)
        self.band = ((mx - 1) // 3, (my - 1) // 3)  # (K_x, K_y)
        band_x, band_y = self.band
        rows = torch.cat([torch.arange(band_x + 1), torch.arange(-band_x, 0)])  # k_x (2K_x + 1,)
        cols = torch.cat([torch.arange(band_y + 1), torch.arange(-band_y, 0)])  # k_y of the band (2K_y + 1,)
        self.rows = rows
        # The kept modes (−k_x, k_y) for k_y = K_y..1, flattened: conjugated, they are the band's k_y < 0.
        mirror = (-torch.arange(2 * band_x + 1)) % (2 * band_x + 1)
        self.mirror_index = (mirror[:, None] * (band_y + 1) + torch.arange(band_y, 0, -1)).flatten()
        kx = rows.double()[:, None].expand(-1, len(cols))
        ky = cols.double()[None, :].expand(len(rows), -1)
        kappa = 2 * math.pi * torch.complex(kx, ky)  # κ = 2π(k_x + i k_y) (2K_x + 1, 2K_y + 1)
        kappa_sq = kappa.abs() ** 2  # |2πk|²
        inverse_laplacian = torch.where(kappa_sq > 0, 1 / kappa_sq.clamp_min(1e-300), 0.0)  # ψ̂ = ŵ/|2πk|²
        # û + iv̂ = 2πi k_y ψ̂ + i(−2πi k_x ψ̂) = κψ̂ and ŵ_x + iŵ_y = iκŵ: one complex inverse FFT of each gives
        # u + iv and w_x + iw_y.
        self.to_velocity_gradient = torch.stack([kappa * inverse_laplacian, 1j * kappa]).to(torch.complex64)
        self.viscous = -nu * kappa_sq[:, : band_y + 1]  # (2K_x + 1, K_y + 1) float64
        x = torch.arange(mx, dtype=torch.float64)[:, None] / mx
        y = torch.arange(my, dtype=torch.float64)[None, :] / my
        force = 0.1 * (torch.sin(2 * math.pi * (x + y)) + torch.cos(2 * math.pi * (x + y))) * float(forcing)
        self.forcing = self.from_spectrum(torch.fft.rfft2(force[None], norm="forward"))[0]

    def from_spectrum(self, w_hat: torch.Tensor) -> torch.Tensor:
        """rfft2 spectra (B, M'_x, M'_y//2 + 1) of any grid that holds the kept modes → the state
        (B, 2K_x + 1, K_y + 1) complex64."""
        rows = self.rows % w_hat.shape[-2]
        return w_hat[:, rows, : self.band[1] + 1].to(torch.complex64)

    def to_points(self, state: torch.Tensor, points: tuple[int, int]) -> torch.Tensor:
        """The state's field at the points of an X × Y grid: (B, X, Y) float32, from its modes with
        |k_x| < X/2, |k_y| < Y/2 (Fourier truncation; zero-padding where the grid is finer)."""
        x, y = points
        keep_x, keep_y = min(self.band[0], (x - 1) // 2), min(self.band[1], (y - 1) // 2)
        kx = torch.arange(-keep_x, keep_x + 1)
        out = state.new_zeros(len(state), x, y // 2 + 1)  # (B, X, Y//2 + 1)
        out[:, kx % x, : keep_y + 1] = state[:, kx % len(self.rows), : keep_y + 1]
        return torch.fft.irfft2(out, s=points, norm="forward")

    def advance(self, state: torch.Tensor, duration: float) -> torch.Tensor:
        """(B, 2K_x + 1, K_y + 1) → the state `duration` later: equal spans of at most `_PLAN_SPAN`, each in
        the number of steps its trajectory's CFL rate asks for."""
        spans = max(1, math.ceil(duration / _PLAN_SPAN - 1e-9))
        span = duration / spans
        for _ in range(spans):
            steps = torch.ceil(span * self.cfl_rate(state) / _CFL).clamp_min(1)  # (B,)
            if steps.max() > _MAX_STEPS:
                raise FloatingPointError(f"the Navier–Stokes solve diverged ({steps.max():.0f} steps asked)")
            for count in torch.unique(steps).tolist():
                rows = (steps == count).nonzero().squeeze(1)
                if len(rows) == len(state):
                    state = self._steps(state, span, int(count))
                else:
                    state = state.index_copy(0, rows, self._steps(state[rows], span, int(count)))
        return state

    def cfl_rate(self, state: torch.Tensor) -> torch.Tensor:
        """max_x (|u| M_x + |v| M_y) per trajectory: (B,) float32; raises if the state is not finite."""
        grid = state.new_zeros(len(state), 1, *self.shape)
        velocity = self._fields(state, self.to_velocity_gradient[:1], grid)[:, 0]  # u + iv (B, M_x, M_y)
        rate = (velocity.real.abs() * self.shape[0] + velocity.imag.abs() * self.shape[1]).amax(dim=(-2, -1))
        if not torch.isfinite(rate).all():
            raise FloatingPointError("the Navier–Stokes solve diverged (non-finite values)")
        return rate

    def _steps(self, state: torch.Tensor, span: float, count: int) -> torch.Tensor:
        """`count` IF-RK4 steps of h = span/count: classical RK4 for v = e^{−Lt}ŵ, L the viscous term."""
        h = span / count
        full = torch.exp(self.viscous * h).to(torch.complex64)  # e^{Lh}
        half = torch.exp(self.viscous * h / 2).to(torch.complex64)  # e^{Lh/2}
        grid = state.new_zeros(len(state), 2, *self.shape)  # zero outside the band, which stages overwrite
        for _ in range(count):
            k1 = self._tendency(state, grid)
            k2 = self._tendency(state.add(k1, alpha=h / 2).mul_(half), grid)
            k3 = self._tendency(torch.mul(half, state).add_(k2, alpha=h / 2), grid)
            k4 = self._tendency(torch.mul(full, state).addcmul_(half, k3, value=h), grid)
            state = state.add(k1, alpha=h / 6).mul_(full).addcmul_(half, k2.add_(k3), value=h / 3)
            state.add_(k4, alpha=h / 6)
        return state

    def _tendency(self, state: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """f̂ − FFT(u w_x + v w_y) on the kept modes: (B, 2K_x + 1, K_y + 1); `grid` as for `_fields`."""
        z = torch.view_as_real(self._fields(state, self.to_velocity_gradient, grid))  # (B, 2, M_x, M_y, 2)
        advection = torch.addcmul(z[:, 0, ..., 0] * z[:, 1, ..., 0], z[:, 0, ..., 1], z[:, 1, ..., 1])
        spectrum = torch.fft.rfft2(advection, norm="forward")  # (B, M_x, M_y//2 + 1)
        band_x, cols = self.band[0], slice(None, self.band[1] + 1)
        kept = torch.cat([spectrum[:, : band_x + 1, cols], spectrum[:, -band_x:, cols]], dim=1)
        return self.forcing - kept

    def _fields(self, state: torch.Tensor, multipliers: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """The complex fields whose band spectra are `multipliers` (C, band) × the state's band:
        (B, C, M_x, M_y). `grid` (B, C, M_x, M_y) receives the spectra; it must be zero outside the band."""
        band_x, band_y = self.band
        mirrored = state.flatten(1).index_select(1, self.mirror_index).view(len(state), -1, band_y)
        band = torch.cat([state, mirrored.conj()], dim=-1)  # (B, 2K_x + 1, 2K_y + 1)
        spectra = multipliers * band[:, None]  # (B, C, 2K_x + 1, 2K_y + 1)
        for rows in (slice(None, band_x + 1), slice(-band_x, None)):  # k_x ≥ 0, k_x < 0
            grid[..., rows, : band_y + 1] = spectra[..., rows, : band_y + 1]
            grid[..., rows, -band_y:] = spectra[..., rows, -band_y:]
        return torch.fft.ifft2(grid, norm="forward")


# grids -----------------------------------------------------------------------------------------------------------
def _check_solver_grid(mx: int, my: int) -> None:
    if any(m % 2 or m < 16 for m in (mx, my)):
        raise ValueError(f"solver_points must be even and >= 16 per axis, got {mx}×{my}")


def _wavenumbers(m: int) -> torch.Tensor:
    """Integer wavenumbers of an m-point FFT in its order, 0, 1, ..., −1: (m,) float64."""
    return torch.fft.fftfreq(m, 1.0 / m, dtype=torch.float64)
