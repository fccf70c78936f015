"""1D steady diffusion data: a coefficient field a and a forcing f, and the solution u.

    −(a(x) u′(x))′ = f(x),   x ∈ (0, 1),   u(0) = u(1) = 0,   stored on cell centres x_i = (i + ½)/X.

Cell-centred finite volumes, cell width h = 1/X, a and f taken at the cell centres. The flux through face j
(at x = jh, j = 0..X) is −W_j (u_j − u_{j−1})/h with u_{−1} = u_X = 0 the wall values, where
W_j = 2 a_{j−1} a_j / (a_{j−1} + a_j) (harmonic mean: the exact conductance of two half-cells in series) at the
interior faces, and W_0 = 2 a_0, W_X = 2 a_{X−1} at the walls (the cell's value over the half-cell between its
centre and the wall). Cell i balances its two fluxes against h f_i:

    (W_i + W_{i+1}) u_i − W_i u_{i−1} − W_{i+1} u_{i+1} = h² f_i,

a symmetric, diagonally dominant tridiagonal system, solved exactly (to round-off) by the Thomas algorithm
without pivoting. The scheme is second order at the cell centres for smooth a and f. Legend: N samples,
X points (cells), F = X + 1 faces, K Fourier modes of the random fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ups.data.pdebench import GeneratedData
from ups.spec.errors import SpecError

GENERATOR_VERSION = 1
"""Bump whenever generated numbers change: it is part of the cache key."""

_MODES = 8
"""Modes sin(kπx), cos(kπx), k = 1..K, of the random fields: a function of x alone, the same at every X."""
_LOG_A_NORM = 1.25
"""log a's coefficients (Gaussian, mode k scaled by 1/k²) are rescaled to this Euclidean norm, so the contrast
max a / min a varies with the field's shape only: measured on 4096 samples, median 9.4, quartiles 6.1 and
12.8, 1% and 99% 2.5 and 26."""
_F_SCALE = 1.0  # standard deviation of f's mean and of its first mode (mode k has scale/k^1.5)


@dataclass(frozen=True)
class SteadyData:
    """N problems on X cell centres: coefficient `a`, forcing `f`, solution `u`, all (N, X) float32."""

    a: np.ndarray
    f: np.ndarray
    u: np.ndarray
    x: np.ndarray
    attrs: dict = field(default_factory=dict)


def face_coefficients(a: np.ndarray) -> np.ndarray:
    """W (n, F) of the module docstring: harmonic means at interior faces, 2a at the two walls."""
    a = np.asarray(a, dtype=np.float64)
    interior = 2 * a[:, :-1] * a[:, 1:] / (a[:, :-1] + a[:, 1:])  # (n, X-1)
    return np.concatenate([2 * a[:, :1], interior, 2 * a[:, -1:]], axis=1)  # (n, F)


def apply_operator(a: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The discrete −(a u′)′ at the cell centres: (n, X), what `solve_steady` inverts (for residuals)."""
    u = np.asarray(u, dtype=np.float64)
    w = face_coefficients(a)  # (n, F)
    padded = np.pad(u, ((0, 0), (1, 1)))  # (n, X+2) with the zero wall values
    flux = w * np.diff(padded, axis=1)  # (n, F) h·a u′ at the faces
    return -np.diff(flux, axis=1) * u.shape[1] ** 2  # (n, X)


def solve_steady(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """u (n, X) float64 with apply_operator(a, u) = f to round-off, for a > 0 and f given per cell (n, X).

    A Thomas solve vectorised over the batch (a loop over X, each step on all n rows at once): 4096 × 128 in
    15-30 ms on one (shared) core, 6-10× faster than scipy.linalg.solve_banded called row by row (0.16 s).
    """
    a, f = _checked(a, f)
    n, num_points = a.shape
    w = face_coefficients(a).T  # (F, n): the loop below reads one contiguous row per step
    rhs = f.T / num_points**2  # (X, n)
    diag = w[:-1] + w[1:]  # (X, n)
    off = -w[1:-1]  # (X-1, n) both sub- and super-diagonal: the system is symmetric
    upper = np.empty((num_points - 1, n))  # (X-1, n) eliminated super-diagonal
    y = np.empty((num_points, n))  # (X, n)
    pivot = diag[0]
    y[0] = rhs[0] / pivot
    for i in range(1, num_points):
        upper[i - 1] = off[i - 1] / pivot
        # By induction pivot_i > W_{i+1} > 0 and |upper| < 1 (diagonal dominance): no pivoting, no growth.
        pivot = diag[i] - off[i - 1] * upper[i - 1]
        y[i] = (rhs[i] - off[i - 1] * y[i - 1]) / pivot
    for i in range(num_points - 2, -1, -1):
        y[i] -= upper[i] * y[i + 1]
    return np.ascontiguousarray(y.T)  # (n, X)


def harmonic_baseline(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """The classical cheap estimate: a replaced by its harmonic mean over the domain, per sample: (n, X).

    It is the exact effective coefficient of a constant flux (1/a in series), which a forcing f breaks. The
    constant-coefficient discrete problem is linear in 1/a, so it is one solve with a = 1, rescaled.
    """
    a, f = _checked(a, f)
    inverse_mean = (1 / a).mean(axis=1, keepdims=True)  # (n, 1) 1 / harmonic mean
    return solve_steady(np.ones_like(a), f) * inverse_mean  # (n, X)


def random_fields(
    n: int, num_points: int, *, seed: int, indices: np.ndarray | range | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random (a, f) on the cell centres, each (n, X) float64, a row per sample index (default 0..n-1).

    log a and f are Fourier series in sin(kπx), cos(kπx), k ≤ K, with Gaussian coefficients decaying like k⁻²
    (log a) and k^-1.5 (f), plus a Gaussian mean for f. Each row draws from its own generator seeded by
    (seed, index), so sample i is the same whatever n, and the same function of x whatever X.
    """
    indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size != n or num_points < 2:
        raise ValueError(
            f"`len(indices) == n` and `num_points >= 2` must hold, got "
            f"(n={n}, len(indices)={indices.size}, num_points={num_points})"
        )
    if seed < 0 or (indices < 0).any():
        raise ValueError(f"`seed` and `indices` must be >= 0, got (seed={seed}, min index={indices.min()})")
    x = (np.arange(num_points) + 0.5) / num_points  # (X,)
    k = np.arange(1, _MODES + 1)  # (K,)
    basis = np.concatenate([np.sin(np.pi * k[:, None] * x), np.cos(np.pi * k[:, None] * x)])  # (2K, X)
    log_a_decay = np.tile(1 / k**2.0, 2)  # (2K,)
    f_decay = np.tile(_F_SCALE / k**1.5, 2)  # (2K,)
    log_a_coef = np.empty((n, 2 * _MODES))
    f_coef = np.empty((n, 2 * _MODES + 1))  # the last one is the mean
    for row, index in enumerate(indices):
        rng = np.random.default_rng([seed, int(index)])
        log_a_coef[row] = rng.standard_normal(2 * _MODES) * log_a_decay
        log_a_coef[row] *= _LOG_A_NORM / np.linalg.norm(log_a_coef[row])
        f_coef[row] = rng.standard_normal(2 * _MODES + 1) * np.append(f_decay, _F_SCALE)
    # Summed mode by mode, not by a matmul, whose blocking (hence rounding) depends on n: rows stay bit-equal.
    log_a = np.zeros((n, num_points))
    f = np.repeat(f_coef[:, -1:], num_points, axis=1)  # (n, X)
    for mode in range(2 * _MODES):
        log_a += log_a_coef[:, mode : mode + 1] * basis[mode]
        f += f_coef[:, mode : mode + 1] * basis[mode]
    return np.exp(log_a), f


def generate_steady(*, num_samples: int, num_points: int = 128, seed: int = 0) -> SteadyData:
    """A steady-diffusion data set: random (a, f) from `random_fields`, u from `solve_steady`, stored float32.

    Sample i depends on (seed, i) only. 4096 × 128 takes ~0.18 s on one core: 0.13 s of it seeding the
    per-row generators, 15-30 ms the solve.
    """
    if num_samples < 1 or num_points < 2:
        got = {"num_samples": num_samples, "num_points": num_points}
        raise SpecError("`num_samples >= 1` and `num_points >= 2` must hold", key="data", got=got)
    if seed < 0:
        raise SpecError("must be >= 0", key="data.seed", got=seed)
    a, f = random_fields(num_samples, num_points, seed=seed)
    u = solve_steady(a, f)
    return SteadyData(
        a=a.astype(np.float32),
        f=f.astype(np.float32),
        u=u.astype(np.float32),
        x=((np.arange(num_points) + 0.5) / num_points).astype(np.float32),
        attrs={
            "equation": "steady_diffusion1d",
            "solver": "fv-tridiagonal",
            "seed": int(seed),
            "generator_version": GENERATOR_VERSION,
        },
    )


def _checked(a: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    if a.ndim != 2 or a.shape != f.shape or a.shape[1] < 2:
        raise ValueError(
            f"`a` and `f` must be (samples, points >= 2) alike, got shapes {a.shape} and {f.shape}"
        )
    if not (a > 0).all() or not np.isfinite(a).all():
        raise ValueError(f"`a` must be finite and > 0 everywhere, got min a={a.min()}")
    return a, f


def generate_steady_data(
    *, num_trajectories: int, num_points: int = 128, seed: int = 0, **_unused
) -> GeneratedData:
    """The steady family's generator, in the layout the `pdebench` format reads: solutions `tensor` (N, 1, X),
    inputs `a` and `f` (N, X) each, named by the `inputs` attribute (a time-independent family takes no frames)."""
    data = generate_steady(num_samples=num_trajectories, num_points=num_points, seed=seed)
    return GeneratedData(
        tensor=data.u[:, None],
        x=data.x,
        t=np.zeros(1, dtype=np.float32),
        attrs={**data.attrs, "inputs": "a,f"},
        datasets={"a": data.a, "f": data.f},
    )


def harmonic_solution(inputs: np.ndarray) -> np.ndarray:
    """The family's cheap classical solve: inputs (N, 2, X) = (a, f) → (N, 1, X), the constant-coefficient solve
    with the harmonic mean of a (`harmonic_baseline`)."""
    inputs = np.asarray(inputs, dtype=np.float64)
    return harmonic_baseline(inputs[:, 0], inputs[:, 1])[:, None].astype(np.float32)


def coarse_solution(inputs: np.ndarray, factor: int) -> np.ndarray:
    """inputs (N, 2, X) = (a, f) → (N, 1, X) float32: the same finite-volume solve on Xc = X/factor cells (a
    restricted by the harmonic mean over each block — the exact conductance of cells in series — and f by the
    mean), brought back to the stored cells by linear interpolation with u = 0 at the walls. factor 1 is
    `solve_steady` itself."""
    inputs = np.asarray(inputs, dtype=np.float64)
    if inputs.ndim != 3 or inputs.shape[1] != 2:
        raise ValueError(f"`inputs` must be (samples, 2, points) = (a, f), got shape {inputs.shape}")
    n, _, num_points = inputs.shape
    if factor < 1 or num_points % factor or num_points // factor < 2:
        raise ValueError(f"{num_points} cells do not coarsen by {factor} to at least 2 cells")
    num_coarse = num_points // factor
    blocks = inputs.reshape(n, 2, num_coarse, factor)  # (N, 2, Xc, factor)
    u = solve_steady(1 / (1 / blocks[:, 0]).mean(axis=2), blocks[:, 1].mean(axis=2))  # (N, Xc)
    # Interpolation weights (X, Xc + 2) from the walls and the coarse centres to the stored centres.
    nodes = np.concatenate([[0.0], (np.arange(num_coarse) + 0.5) / num_coarse, [1.0]])  # (Xc + 2,)
    centres = (np.arange(num_points) + 0.5) / num_points  # (X,)
    weights = np.stack([np.interp(centres, nodes, column) for column in np.eye(num_coarse + 2)], axis=1)
    return (np.pad(u, ((0, 0), (1, 1))) @ weights.T)[:, None].astype(np.float32)
