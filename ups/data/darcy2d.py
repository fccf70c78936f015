"""2D steady Darcy flow, as the FNO paper (Li et al. 2021, §5.2) made its data:

    −∇·(a(x) ∇u(x)) = f(x),   x ∈ (0, 1)²,   u = 0 on the boundary,   f = 1,

with a piecewise-constant coefficient a = 12 where a Gaussian random field g is ≥ 0 and a = 3 where g < 0.

The field. g ~ N(0, (−Δ + 9 I)^−2) with Δ the Laplacian under zero Neumann boundary conditions, as the FNO
paper says and as its code (neuraloperator's data_generation/darcy/GRF.m) draws it: a Karhunen–Loève sum over
the Neumann eigenfunctions φ_k(x) = c_k1 c_k2 cos(πk1 x) cos(πk2 y), c_0 = 1 and c_k = √2 otherwise, with
independent standard normal weights times the square roots of the covariance's eigenvalues,
1 / (π²(k1² + k2²) + 9), and the constant mode k = (0, 0) left out, as GRF.m leaves it out (g has mean zero, so
both values of a appear in almost every sample). The sum runs over k1, k2 < K = 64: on a 64² grid of cell
centres that is exactly GRF.m's inverse DCT at s = 64, and the field is the same function of x at every
resolution. (The FNO files summed 421² modes and subsampled; the modes left out here hold 0.017% of g's
variance.) GRF.m's positive factor τ^(α−1) = 3 is left out: only g's sign is used.

The solve. Cell-centred finite volumes on X × Y cells, centres x_i = (i + ½)/X and y_j = (j + ½)/Y, a taken at
the centres. The flux through a face between two cells is W (u_nb − u)/h times the face's length, with W the
harmonic mean 2 a a_nb / (a + a_nb) (two half-cells in series, exact for a constant within each cell); a wall face
sits half a cell from the centre, so W = 2a there with the wall value u = 0. Dividing each cell's balance by
its area gives, with h_x = 1/X and h_y = 1/Y,

    Σ_x-faces W (u − u_nb) / h_x² + Σ_y-faces W (u − u_nb) / h_y² = f,

a symmetric positive definite 5-point system, second order for smooth a. One sparse LU per sample: SuperLU in
symmetric mode with a minimum-degree ordering of AᵀA + A and no pivoting, measured 6-9 ms at 64² against
15 ms for `spsolve`'s default (COLAMD, partial pivoting). The matrices of a batch are assembled at once,
sharing one sparsity pattern.

Storing fewer points than the solver's. With X = M / r stored cells per axis, a is GRF-thresholded at the
stored cell centres, the same function as on the solver grid evaluated there, and u is the solver's solution at
those centres: for odd r a stored centre is a solver centre, for even r the corner of four solver cells, whose
mean is a second-order point value. Both stored fields are so point values at the stored centres, the layout
every other family stores (r = 1 stores the solve itself).

Legend: N samples, n a batch of samples, M solver cells per axis, X × Y stored cells, Xc × Yc coarse cells,
K modes per axis of the random field.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg

from ups.data.pdebench import GeneratedData
from ups.data.storage_grid import check_storage_grid
from ups.spec.errors import SpecError

GENERATOR_VERSION = 1
"""Bump whenever generated numbers change: it is part of the cache key."""

_MODES = 64  # K: cosine modes per axis of the random field
_TAU = 3.0  # the covariance (−Δ + τ²)^−2
_HIGH, _LOW = 12.0, 3.0  # a where g >= 0, and where g < 0
_FORCING = 1.0
_CHUNK = 128  # samples assembled at once: bounds the float64 matrix entries held (128 × 20k × 8 B at 64²)


def cell_centres(num_points: int) -> np.ndarray:
    """(i + ½)/X, i = 0..X−1: (X,) float64."""
    return (np.arange(num_points) + 0.5) / num_points


def random_field(num_points: int, *, seed: int, indices: np.ndarray | range) -> np.ndarray:
    """g (n, X, X) float64 of the module docstring at the cell centres of an X² grid, one sample per index.

    Each sample draws its K² weights from a generator seeded by (seed, index) and is summed on its own (no
    batched product whose rounding could depend on n), so sample i is bit-equal whatever else is drawn.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if seed < 0 or (indices < 0).any():
        raise ValueError(f"`seed` and `indices` must be >= 0, got (seed={seed}, indices={indices.tolist()})")
    k = np.arange(_MODES)  # (K,)
    basis = np.where(k[:, None] == 0, 1.0, np.sqrt(2.0)) * np.cos(
        np.pi * k[:, None] * cell_centres(num_points)
    )
    scale = 1 / (np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + _TAU**2)  # (K, K) √eigenvalues
    scale[0, 0] = 0.0  # no mean mode
    g = np.empty((indices.size, num_points, num_points))  # (n, X, X)
    for row, index in enumerate(indices):
        weights = np.random.default_rng([seed, int(index)]).standard_normal((_MODES, _MODES)) * scale
        g[row] = basis.T @ weights @ basis  # (X, K) (K, K) (K, X)
    return g


def coefficient(g: np.ndarray) -> np.ndarray:
    """a = 12 where g >= 0, 3 where g < 0, float64 of g's shape."""
    return np.where(g >= 0, _HIGH, _LOW)


def face_coefficients(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W of the module docstring for a (n, X, Y): x-faces (n, X+1, Y) and y-faces (n, X, Y+1), harmonic means
    inside and 2a at the walls."""
    a = np.asarray(a, dtype=np.float64)
    wx = np.concatenate(
        [2 * a[:, :1], 2 * a[:, :-1] * a[:, 1:] / (a[:, :-1] + a[:, 1:]), 2 * a[:, -1:]], axis=1
    )
    wy = np.concatenate(
        [2 * a[:, :, :1], 2 * a[:, :, :-1] * a[:, :, 1:] / (a[:, :, :-1] + a[:, :, 1:]), 2 * a[:, :, -1:]],
        axis=2,
    )
    return wx, wy


def apply_operator(a: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The discrete −∇·(a∇u) at the cell centres for a, u (n, X, Y): (n, X, Y), what `solve_darcy` inverts."""
    u = np.asarray(u, dtype=np.float64)
    num_x, num_y = u.shape[1:]
    wx, wy = face_coefficients(a)
    padded = np.pad(u, ((0, 0), (1, 1), (1, 1)))  # (n, X+2, Y+2) with the zero wall values
    flux_x = wx * np.diff(padded[:, :, 1:-1], axis=1) * num_x**2  # (n, X+1, Y)
    flux_y = wy * np.diff(padded[:, 1:-1], axis=2) * num_y**2  # (n, X, Y+1)
    return -np.diff(flux_x, axis=1) - np.diff(flux_y, axis=2)


@functools.lru_cache(maxsize=8)
def _pattern(num_x: int, num_y: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 5-point matrix's compressed sparsity pattern (indices, indptr) for cells numbered i·Y + j, and
    `order`, which puts the entries as `_entries` lists them into that pattern's order."""
    cell = np.arange(num_x * num_y).reshape(num_x, num_y)
    rows = np.concatenate(
        [cell.ravel(), cell[1:].ravel(), cell[:-1].ravel(), cell[:, 1:].ravel(), cell[:, :-1].ravel()]
    )
    cols = np.concatenate(
        [cell.ravel(), cell[:-1].ravel(), cell[1:].ravel(), cell[:, :-1].ravel(), cell[:, 1:].ravel()]
    )
    order = np.lexsort((cols, rows))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=cell.size))])
    return cols[order], indptr, order


def _entries(a: np.ndarray) -> np.ndarray:
    """The matrix entries for a (n, X, Y), in `_pattern`'s order: (n, nnz)."""
    num_x, num_y = a.shape[1:]
    wx, wy = face_coefficients(a)
    wx, wy = wx * num_x**2, wy * num_y**2
    diagonal = wx[:, :-1] + wx[:, 1:] + wy[:, :, :-1] + wy[:, :, 1:]  # (n, X, Y)
    across_x = -wx[:, 1:-1].reshape(len(a), -1)  # (n, (X−1)Y): cell (i, j) with (i−1, j), either way round
    across_y = -wy[:, :, 1:-1].reshape(len(a), -1)  # (n, X(Y−1))
    entries = np.concatenate([diagonal.reshape(len(a), -1), across_x, across_x, across_y, across_y], axis=1)
    return np.ascontiguousarray(entries[:, _pattern(num_x, num_y)[2]])  # rows contiguous, as SuperLU needs


def solve_darcy(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """u (n, X, Y) float64 with apply_operator(a, u) = f to round-off, for a > 0 and f given per cell (n, X, Y)."""
    a = np.asarray(a, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    if a.ndim != 3 or a.shape != f.shape or min(a.shape) < 1:
        raise ValueError(f"`a` and `f` must be (samples, X, Y) alike, got shapes {a.shape} and {f.shape}")
    if not (a > 0).all() or not np.isfinite(a).all():
        raise ValueError(f"`a` must be finite and > 0 everywhere, got min a={a.min()}")
    indices, indptr, _ = _pattern(*a.shape[1:])
    size = a.shape[1] * a.shape[2]
    u = np.empty(a.shape)
    for start in range(0, len(a), _CHUNK):
        entries = _entries(a[start : start + _CHUNK])  # (n, nnz)
        for row, values in enumerate(entries):
            # Symmetric, so its CSR arrays are its CSC arrays, which SuperLU takes.
            matrix = sparse.csc_matrix((values, indices, indptr), shape=(size, size))
            lu = sparse_linalg.splu(
                matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
            )
            u[start + row] = lu.solve(f[start + row].ravel()).reshape(a.shape[1:])
    return u


def generate_darcy2d(
    *, num_trajectories: int, num_points: int, solver_points: int, seed: int, **_unused
) -> GeneratedData:
    """N samples: the solution `tensor` (N, 1, X, X) and the coefficient `nu` (N, X, X), float32.

    Solved on M² = `solver_points`² cells and stored on X² = `num_points`² (module docstring). Sample i depends
    on (seed, i) only. Measured: 1024 samples at 64² in 10-15 s on 2 shared cores, 80% of it the LU factorizations.
    """
    check_storage_grid(
        num_trajectories=num_trajectories,
        num_points=num_points,
        num_frames=1,
        dt=1.0,
        solver_points=solver_points,
    )
    if seed < 0:
        raise SpecError("must be >= 0", key="data.seed", got=seed)
    stride = solver_points // num_points
    # Solver cells around each stored centre, at (i + ½)r − ½ in solver cells: one for odd r, two for even r.
    offsets = np.unique([(stride - 1) // 2, stride // 2])  # (1 or 2,)
    around = stride * np.arange(num_points)[:, None] + offsets  # (X, 1 or 2) per axis
    u = np.empty((num_trajectories, 1, num_points, num_points), dtype=np.float32)
    nu = np.empty((num_trajectories, num_points, num_points), dtype=np.float32)
    for start in range(0, num_trajectories, _CHUNK):
        rows = range(start, min(start + _CHUNK, num_trajectories))
        a = coefficient(random_field(solver_points, seed=seed, indices=rows))  # (n, M, M)
        solution = solve_darcy(a, np.full(a.shape, _FORCING))  # (n, M, M)
        u[rows.start : rows.stop, 0] = solution[:, around][:, :, :, around].mean(axis=(2, 4))
        nu[rows.start : rows.stop] = (
            a if stride == 1 else coefficient(random_field(num_points, seed=seed, indices=rows))
        )
    centres = cell_centres(num_points).astype(np.float32)
    return GeneratedData(
        tensor=u,
        x=centres,
        y=centres.copy(),
        t=np.zeros(1, dtype=np.float32),
        attrs={
            "equation": "darcy2d",
            "inputs": "nu",
            "channels": "u",
            "forcing": _FORCING,
            "solver": "fv-5point",
            "seed": int(seed),
            "generator_version": GENERATOR_VERSION,
        },
        datasets={"nu": nu},
    )


def _linear_prolongation(num_fine: int, factor: int) -> np.ndarray:
    """(X, Xc): linear interpolation from Xc = X/factor cell centres to X, with u = 0 at the walls 0 and 1."""
    num_coarse = num_fine // factor
    nodes = np.concatenate([[0.0], cell_centres(num_coarse), [1.0]])  # (Xc + 2,) walls and coarse centres
    identity = np.eye(num_coarse + 2)
    weights = np.stack([np.interp(cell_centres(num_fine), nodes, column) for column in identity], axis=1)
    return weights[:, 1:-1]  # the wall columns multiply zeros


def coarse_solution(inputs: np.ndarray, factor: int) -> np.ndarray:
    """inputs (N, 1, X, Y) coefficient a on the stored grid → (N, 1, X, Y) float32: the same finite-volume solve
    (f = 1) on a grid `factor`× coarser per axis, brought back to the stored grid by bilinear interpolation with
    u = 0 on the walls. factor 1 is the full solve on the stored grid.

    a is restricted to each coarse cell by the geometric mean of its factor² cells, the most accurate of the
    three classical means: relative L2 error, mean over 128 samples at 64², at factors 2, 4, 8 — geometric
    0.006, 0.016, 0.041; arithmetic 0.013, 0.027, 0.051; harmonic 0.014, 0.035, 0.075. The geometric mean
    √(3·12) = 6 is also the exact effective conductivity of a statistically isotropic two-phase medium with equal
    volume fractions in 2D (Keller–Dykhne duality), which the harmonic and arithmetic means bound from below and
    above (Wiener bounds).
    """
    a = np.asarray(inputs, dtype=np.float64)
    if a.ndim != 4 or a.shape[1] != 1:
        raise ValueError(f"`inputs` must be (samples, 1, X, Y), got shape {a.shape}")
    n, _, num_x, num_y = a.shape
    if factor < 1 or num_x % factor or num_y % factor or min(num_x, num_y) // factor < 2:
        raise ValueError(f"{num_x}×{num_y} cells do not coarsen by {factor} to a grid of at least 2×2 cells")
    blocks = np.log(a[:, 0]).reshape(n, num_x // factor, factor, num_y // factor, factor)
    coarse_a = np.exp(blocks.mean(axis=(2, 4)))  # (N, Xc, Yc)
    u = solve_darcy(coarse_a, np.full(coarse_a.shape, _FORCING))  # (N, Xc, Yc)
    fine = _linear_prolongation(num_x, factor) @ u @ _linear_prolongation(num_y, factor).T  # (N, X, Y)
    return fine[:, None].astype(np.float32)
