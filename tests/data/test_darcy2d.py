"""The darcy2d generator: the finite-volume solve against exact solutions, the random coefficient, the stored
layout and the coarse classical baseline."""

import re

import numpy as np
import pytest

from ups.data.darcy2d import (
    GENERATOR_VERSION,
    apply_operator,
    cell_centres,
    coarse_solution,
    coefficient,
    generate_darcy2d,
    random_field,
    solve_darcy,
)
from ups.spec.errors import SpecError


def relative_l2(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """‖pred − true‖ / ‖true‖ per sample, for (n, ...) arrays: (n,)."""
    diff = (pred - true).reshape(len(true), -1)
    return np.linalg.norm(diff, axis=1) / np.linalg.norm(true.reshape(len(true), -1), axis=1)


@pytest.fixture(scope="module")
def data():
    return generate_darcy2d(num_trajectories=32, num_points=64, solver_points=64, seed=11)


def test_second_order_convergence_to_a_manufactured_solution():
    """a = 1 + ½ sin 2πx sin 2πy, u = sin πx sin πy, f = −∇·(a∇u) = 2π² a u − ∇a·∇u. Measured max errors 1.8e-3,
    4.6e-4, 1.1e-4 at X = 32, 64, 128: observed orders 1.97, 1.99."""
    errors = []
    for num_points in (32, 64, 128):
        x, y = np.meshgrid(cell_centres(num_points), cell_centres(num_points), indexing="ij")  # (X, X) each
        a = 1 + 0.5 * np.sin(2 * np.pi * x) * np.sin(2 * np.pi * y)
        exact = np.sin(np.pi * x) * np.sin(np.pi * y)
        grad_a_dot_grad_u = np.pi**2 * (
            np.cos(2 * np.pi * x) * np.sin(2 * np.pi * y) * np.cos(np.pi * x) * np.sin(np.pi * y)
            + np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y) * np.sin(np.pi * x) * np.cos(np.pi * y)
        )
        f = 2 * np.pi**2 * a * exact - grad_a_dot_grad_u
        errors.append(np.abs(solve_darcy(a[None], f[None])[0] - exact).max())
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[0] < 3e-3
    assert ((orders > 1.8) & (orders < 2.2)).all(), orders


def test_poisson_centre_value_matches_the_series_solution():
    """a = 1, f = 1: u(½, ½) = Σ_{m,n odd} 16 (−1)^((m+n)/2 − 1) / (π⁴ m n (m² + n²)) = 0.0736713. Odd X puts a
    cell centre at (½, ½); measured errors 2.3e-4, 6.1e-5, 1.6e-5 at X = 17, 33, 65 (second order)."""
    m, n = np.meshgrid(np.arange(1, 400, 2), np.arange(1, 400, 2))
    series = (16 / np.pi**4 * np.sin(m * np.pi / 2) * np.sin(n * np.pi / 2) / (m * n * (m**2 + n**2))).sum()
    assert abs(series - 0.0736713) < 1e-7
    errors = []
    for num_points in (17, 33, 65):
        ones = np.ones((1, num_points, num_points))
        errors.append(abs(solve_darcy(ones, ones)[0, num_points // 2, num_points // 2] - series))
    assert errors[0] < 5e-4
    assert errors[1] < errors[0] / 3.5 and errors[2] < errors[1] / 3.5, errors


def test_solve_satisfies_the_discrete_equations(data):
    """Residual relative to f = 1: measured 1.3e-12 (the X²-scaled differences lose a few digits)."""
    a = data.datasets["nu"].astype(np.float64)
    u = solve_darcy(a, np.ones(a.shape))
    assert np.abs(apply_operator(a, u) - 1).max() < 1e-9
    np.testing.assert_allclose(data.tensor[:, 0], u, rtol=1e-6, atol=1e-9)


def test_the_solution_is_symmetric_under_the_squares_symmetries():
    """a symmetric under x ↔ y and x ↔ 1 − x gives u with the same symmetries, to round-off."""
    a = coefficient(random_field(32, seed=2, indices=[0]))
    a = a + a[:, ::-1]
    a = a + a[:, :, ::-1]
    a = a + a.transpose(0, 2, 1)  # (1, 32, 32) symmetric under all eight symmetries of the square
    u = solve_darcy(a, np.ones(a.shape))
    np.testing.assert_allclose(u, u.transpose(0, 2, 1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(u, u[:, ::-1], rtol=1e-12, atol=1e-15)


def test_the_random_field_has_the_covariance_of_the_fno_data():
    """The grid mean of g² estimates Σ_k λ_k = Σ 1/(π²|k|² + 9)² over k ≠ 0, k1, k2 < 64 (= 0.00948, the DCT
    being orthonormal on the cell centres). One sample's estimate has relative std 0.63, 512 samples' 0.028:
    measured 0.00935 (−1.4%)."""
    k = np.arange(64)
    eigenvalues = 1 / (np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + 9) ** 2  # (K, K)
    expected = eigenvalues.sum() - eigenvalues[0, 0]
    g = random_field(64, seed=0, indices=range(512))  # (512, 64, 64)
    assert abs((g**2).mean() / expected - 1) < 0.1
    assert np.abs(g.mean(axis=(1, 2))).max() < 1e-12  # no mean mode


def test_coefficient_takes_the_two_values_with_both_present(data):
    """Measured: the area where a = 12 covers 44% to 65% of the square in these 32 samples, 34% to 67% in 128."""
    a = data.datasets["nu"]
    assert set(np.unique(a)) == {3.0, 12.0}
    high = (a == 12).mean(axis=(1, 2))  # (N,)
    assert ((high > 0.1) & (high < 0.9)).all()


def test_generated_data_layout(data):
    assert data.tensor.shape == (32, 1, 64, 64) and data.tensor.dtype == np.float32
    assert data.datasets["nu"].shape == (32, 64, 64) and data.datasets["nu"].dtype == np.float32
    for coordinate in (data.x, data.y):
        assert coordinate.dtype == np.float32
        np.testing.assert_allclose(coordinate, cell_centres(64), rtol=1e-6)
    np.testing.assert_array_equal(data.t, np.zeros(1, dtype=np.float32))
    assert data.attrs == {
        "equation": "darcy2d",
        "inputs": "nu",
        "channels": "u",
        "forcing": 1.0,
        "solver": "fv-5point",
        "seed": 11,
        "generator_version": GENERATOR_VERSION,
    }
    assert (data.tensor > 0).all()


def test_sample_depends_on_seed_and_index_only(data):
    few = generate_darcy2d(num_trajectories=3, num_points=64, solver_points=64, seed=11)
    np.testing.assert_array_equal(few.tensor, data.tensor[:3])
    np.testing.assert_array_equal(few.datasets["nu"], data.datasets["nu"][:3])
    np.testing.assert_array_equal(
        random_field(64, seed=11, indices=[5, 6]), random_field(64, seed=11, indices=range(7))[5:]
    )
    other = generate_darcy2d(num_trajectories=3, num_points=64, solver_points=64, seed=12)
    assert (other.datasets["nu"] != few.datasets["nu"]).mean() > 0.2
    assert np.abs(other.tensor - few.tensor).max() > 0.1 * np.abs(few.tensor).max()


def test_stored_grid_coarser_than_the_solvers_holds_point_values():
    """Stride 3: the stored centres are solver centres; stride 2: the corners of four solver cells. The
    coefficient is the same random field at the stored centres, so it does not depend on the solver grid.
    Measured relative L2 of u between solver grids 32² and 64², both stored on 32²: 1.7% and 0.7% (the
    32² solve's discretization error)."""
    stride3 = generate_darcy2d(num_trajectories=2, num_points=16, solver_points=48, seed=4)
    a = coefficient(random_field(48, seed=4, indices=range(2)))
    fine = solve_darcy(a, np.ones(a.shape))  # (2, 48, 48)
    np.testing.assert_allclose(stride3.tensor[:, 0], fine[:, 1::3, 1::3], rtol=1e-6)
    np.testing.assert_array_equal(stride3.datasets["nu"], a[:, 1::3, 1::3])

    direct = generate_darcy2d(num_trajectories=2, num_points=32, solver_points=32, seed=4)
    stride2 = generate_darcy2d(num_trajectories=2, num_points=32, solver_points=64, seed=4)
    np.testing.assert_array_equal(stride2.datasets["nu"], direct.datasets["nu"])
    assert relative_l2(stride2.tensor, direct.tensor).max() < 0.05


def test_coarse_solution_errors_grow_with_the_factor(data):
    """Relative L2 against the stored solution, mean over 32 samples: measured 0 (round-off), 0.006, 0.016, 0.041
    at factors 1, 2, 4, 8."""
    inputs = data.datasets["nu"][:, None]  # (N, 1, X, Y)
    errors = []
    for factor in (1, 2, 4, 8):
        coarse = coarse_solution(inputs, factor)
        assert coarse.shape == inputs.shape and coarse.dtype == np.float32
        errors.append(relative_l2(coarse, data.tensor).mean())
    assert errors[0] < 1e-6
    assert 1e-3 < errors[1] < errors[2] < errors[3] < 0.2, errors


def test_misuse_is_refused():
    with pytest.raises(
        ValueError, match=re.escape("64×64 cells do not coarsen by 3 to a grid of at least 2×2")
    ):
        coarse_solution(np.ones((1, 1, 64, 64)), 3)
    with pytest.raises(
        ValueError, match=re.escape("4×4 cells do not coarsen by 4 to a grid of at least 2×2")
    ):
        coarse_solution(np.ones((1, 1, 4, 4)), 4)
    with pytest.raises(
        ValueError, match=re.escape("`inputs` must be (samples, 1, X, Y), got shape (1, 64, 64)")
    ):
        coarse_solution(np.ones((1, 64, 64)), 2)
    with pytest.raises(ValueError, match=re.escape("`a` must be finite and > 0 everywhere, got min a=0.0")):
        solve_darcy(np.zeros((1, 4, 4)), np.ones((1, 4, 4)))
    with pytest.raises(ValueError, match=re.escape("`a` and `f` must be (samples, X, Y) alike")):
        solve_darcy(np.ones((1, 4, 4)), np.ones((1, 4, 5)))
    with pytest.raises(ValueError, match=re.escape("`seed` and `indices` must be >= 0")):
        random_field(8, seed=-1, indices=[0])
    with pytest.raises(SpecError, match=re.escape("must divide data.generator.solver_points=64")):
        generate_darcy2d(num_trajectories=1, num_points=48, solver_points=64, seed=0)
    with pytest.raises(SpecError, match=re.escape("data.seed: must be >= 0")):
        generate_darcy2d(num_trajectories=1, num_points=8, solver_points=8, seed=-1)
