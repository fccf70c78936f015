"""The steady-diffusion generator: the discrete solve, convergence to exact solutions, the harmonic baseline and
the random fields."""

import re

import numpy as np
import pytest

from ups.data.steady import (
    GENERATOR_VERSION,
    apply_operator,
    coarse_solution,
    face_coefficients,
    generate_steady,
    harmonic_baseline,
    random_fields,
    solve_steady,
)
from ups.spec.errors import SpecError


def cell_centres(num_points: int) -> np.ndarray:
    return (np.arange(num_points) + 0.5) / num_points  # (X,)


def nrmse(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    return np.sqrt(((pred - true) ** 2).mean(axis=1) / (true**2).mean(axis=1))  # (n,)


@pytest.fixture(scope="module")
def fields():
    a, f = random_fields(256, 128, seed=3)  # (256, 128) each
    return a, f, solve_steady(a, f)


def test_solve_satisfies_the_discrete_equations(fields):
    """Residual relative to the size of the operator's terms, X² max W max|u|: measured 5e-16 (rounding)."""
    a, f, u = fields
    scale = 128**2 * face_coefficients(a).max(axis=1) * np.abs(u).max(axis=1)  # (n,)
    residual = np.abs(apply_operator(a, u) - f).max(axis=1) / scale  # (n,)
    assert residual.max() < 1e-14
    # Relative to f itself, which the X²-scaled differences lose a few digits against: measured 3e-12.
    assert (np.abs(apply_operator(a, u) - f).max(axis=1) / np.abs(f).max(axis=1)).max() < 1e-10


def test_constant_coefficient_operator_is_the_ghost_cell_laplacian():
    """a = 1: (−u_{i−1} + 2u_i − u_{i+1})/h² with odd ghost values u_{−1} = −u_0, u_X = −u_{X−1} at the walls."""
    rng = np.random.default_rng(0)
    u = rng.standard_normal((3, 10))
    ghost = np.concatenate([-u[:, :1], u, -u[:, -1:]], axis=1)  # (3, 12)
    laplacian = (-ghost[:, :-2] + 2 * ghost[:, 1:-1] - ghost[:, 2:]) * 10**2  # (3, 10)
    np.testing.assert_allclose(apply_operator(np.ones((3, 10)), u), laplacian, rtol=1e-13, atol=1e-12)


def test_second_order_convergence_to_a_manufactured_solution():
    """a = 1 + x, u = sin πx, f = −(a u′)′ = π²(1 + x) sin πx − π cos πx. Measured max errors 8.9e-4, 2.2e-4,
    5.6e-5, 1.4e-5 at X = 32..256: observed orders 2.00, 2.00, 2.00."""
    errors = []
    for num_points in (32, 64, 128, 256):
        x = cell_centres(num_points)
        a = (1 + x)[None]  # (1, X)
        f = (np.pi**2 * (1 + x) * np.sin(np.pi * x) - np.pi * np.cos(np.pi * x))[None]  # (1, X)
        errors.append(np.abs(solve_steady(a, f)[0] - np.sin(np.pi * x)).max())
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[0] < 2e-3
    assert ((orders > 1.8) & (orders < 2.2)).all(), orders


def test_harmonic_baseline_is_exact_for_constant_coefficients():
    """Per-sample constants 0.1..10: measured max difference 6e-15 of max|u| (rounding of the harmonic mean)."""
    _, f = random_fields(8, 64, seed=1)
    a = np.logspace(-1, 1, 8)[:, None] * np.ones((1, 64))  # (8, 64)
    exact = solve_steady(a, f)
    assert np.abs(harmonic_baseline(a, f) - exact).max() < 1e-12 * np.abs(exact).max()


def test_harmonic_baseline_has_a_real_error_on_random_fields(fields):
    """Measured on 256 samples: nRMSE 0.063 at best, median 0.42 (11% of samples above 1, where u is small and
    its shape set by where a is small); pooled 0.52, against 1 for predicting zero."""
    a, f, u = fields
    baseline = harmonic_baseline(a, f)
    errors = nrmse(baseline, u)  # (n,)
    assert errors.min() > 1e-2
    assert 0.2 < np.median(errors) < 0.6
    pooled = np.sqrt(((baseline - u) ** 2).sum() / (u**2).sum())
    assert pooled < 0.6  # predicting zero scores 1


def test_random_fields_are_positive_and_have_about_tenfold_contrast(fields):
    """Measured max a / min a on 256 samples: median 9.4, quartiles 6.6 and 12.5, at least 2.07."""
    a, _, _ = fields
    assert (a > 0).all()
    contrast = a.max(axis=1) / a.min(axis=1)  # (n,)
    assert 6 < np.median(contrast) < 15
    assert contrast.min() > 1.5


def test_sample_does_not_depend_on_how_many_are_drawn():
    few_a, few_f = random_fields(3, 64, seed=5)
    many_a, many_f = random_fields(7, 64, seed=5)
    np.testing.assert_array_equal(few_a, many_a[:3])
    np.testing.assert_array_equal(few_f, many_f[:3])
    some_a, _ = random_fields(2, 64, seed=5, indices=[5, 6])
    np.testing.assert_array_equal(some_a, many_a[5:])
    other_a, _ = random_fields(3, 64, seed=6)
    assert np.abs(other_a - few_a).max() > 0.1


def test_fields_are_the_same_functions_of_x_at_every_resolution():
    """Cell centres of X = 32 are every 3rd centre of X = 96, from the 2nd on."""
    coarse = random_fields(4, 32, seed=2)
    fine = random_fields(4, 96, seed=2)
    for c, g in zip(coarse, fine):
        np.testing.assert_allclose(c, g[:, 1::3], rtol=1e-12, atol=1e-12)


def test_solution_vanishes_at_the_walls_like_h():
    """16 samples at X = 64 and 256. The cells next to the walls hold about u′(wall) h/2: 4x smaller at 4x the
    points (measured ratios 0.25 within 0.01), at most 3.9% of max|u| at X = 256. Extrapolated linearly to the
    wall, u is 0 to second order: measured at most 2.5e-2 and 1.6e-3 of max|u| (16x smaller)."""
    near_wall, at_wall = [], []
    for num_points in (64, 256):
        a, f = random_fields(16, num_points, seed=4)
        u = solve_steady(a, f)  # (16, X)
        scale = np.abs(u).max(axis=1, keepdims=True)  # (16, 1)
        near_wall.append(np.abs(u[:, [0, -1]]) / scale)  # (16, 2)
        at_wall.append(np.abs(1.5 * u[:, [0, -1]] - 0.5 * u[:, [1, -2]]) / scale)  # (16, 2)
    assert np.abs(near_wall[1] / near_wall[0] - 0.25).max() < 0.02
    assert near_wall[1].max() < 0.06
    assert at_wall[1].max() < 4e-3
    assert at_wall[0].max() > 10 * at_wall[1].max()


def test_generated_data_layout():
    data = generate_steady(num_samples=6, num_points=64, seed=7)
    for name in ("a", "f", "u"):
        assert getattr(data, name).shape == (6, 64) and getattr(data, name).dtype == np.float32
    np.testing.assert_allclose(data.x, cell_centres(64), rtol=1e-6)
    assert data.attrs == {
        "equation": "steady_diffusion1d",
        "solver": "fv-tridiagonal",
        "seed": 7,
        "generator_version": GENERATOR_VERSION,
    }
    a, f = random_fields(6, 64, seed=7)
    np.testing.assert_allclose(data.u, solve_steady(a, f), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(generate_steady(num_samples=2, num_points=64, seed=7).u, data.u[:2])


def test_misuse_is_refused():
    with pytest.raises(ValueError, match=re.escape("`a` must be finite and > 0 everywhere, got min a=-1.0")):
        solve_steady(-np.ones((1, 4)), np.ones((1, 4)))
    with pytest.raises(ValueError, match=r"`a` and `f` must be \(samples, points >= 2\) alike"):
        harmonic_baseline(np.ones((2, 4)), np.ones((2, 5)))
    with pytest.raises(SpecError, match=r"data: `num_samples >= 1` and `num_points >= 2` must hold"):
        generate_steady(num_samples=0)


def test_coarse_solution_at_factor_one_is_the_exact_solve(fields):
    a, f, u = fields
    coarse = coarse_solution(np.stack([a, f], axis=1), 1)  # (n, 1, X)
    assert coarse.shape == (256, 1, 128) and coarse.dtype == np.float32
    np.testing.assert_allclose(coarse[:, 0], u, rtol=1e-6, atol=1e-7 * np.abs(u).max())


def test_coarse_solution_errors_grow_with_the_factor_at_second_order(fields):
    """nRMSE against the exact solve on 128 cells, mean over 256 samples: measured 7.6e-4, 3.5e-3, 1.4e-2 at
    factors 2, 4, 8 (ratios 4.7 and 4.0: second order), at most 0.07 for any one sample."""
    a, f, u = fields
    inputs = np.stack([a, f], axis=1)  # (n, 2, X)
    errors = np.array([nrmse(coarse_solution(inputs, factor)[:, 0], u).mean() for factor in (2, 4, 8)])
    assert 1e-4 < errors[0] < errors[1] < errors[2] < 0.05, errors
    ratios = errors[1:] / errors[:-1]
    assert ((ratios > 3) & (ratios < 6)).all(), ratios


def test_coarse_solution_of_constant_data_is_within_h_squared_of_the_parabola():
    """a = 2, f = 1: u = x(1 − x)/4. The error is second order in the coarse spacing H = factor/X: measured max
    H²/16 at factor 1 (the wall cells), 0.016, 0.035, 0.048 H² at factors 2, 4, 8."""
    inputs = np.stack([np.full((2, 64), 2.0), np.ones((2, 64))], axis=1)  # (2, 2, 64)
    x = cell_centres(64)
    for factor in (1, 2, 4, 8):
        error = np.abs(coarse_solution(inputs, factor)[:, 0] - x * (1 - x) / 4).max()
        assert error < 1.01 * (factor / 64) ** 2 / 16 + 1e-7, (factor, error)


def test_coarse_solution_refuses_a_bad_factor_or_shape():
    inputs = np.ones((1, 2, 12))
    for factor in (0, 5, 12):
        with pytest.raises(
            ValueError, match=re.escape(f"12 cells do not coarsen by {factor} to at least 2 cells")
        ):
            coarse_solution(inputs, factor)
    with pytest.raises(
        ValueError, match=re.escape("`inputs` must be (samples, 2, points) = (a, f), got shape (2, 12)")
    ):
        coarse_solution(np.ones((2, 12)), 2)
