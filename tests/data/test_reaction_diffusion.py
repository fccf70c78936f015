"""The diffusion-reaction generator against exact solutions (logistic ODE, heat equation), refined references,
the maximum principle and PDEBench's layout."""

import math

import numpy as np
import pytest

from ups.data.reaction_diffusion import (
    GENERATOR_VERSION,
    generate_reaction_diffusion,
    reaction_diffusion_initial_conditions,
    solve_reaction_diffusion,
)
from ups.spec.errors import SpecError

DT = 0.025
TIMES = DT * np.arange(41)  # (T,) t ∈ [0, 1], PDEBench's span


@pytest.mark.parametrize("rho", [1.0, 10.0])
@pytest.mark.parametrize("level", [0.1, 0.5, 0.9])
def test_uniform_state_follows_the_logistic_ode(level, rho):
    """u0 ≡ c stays uniform and follows u = 1/(1 + (1/c − 1) e^{−ρt}) (the k=0 mode sees RK4 steps of ρh ≤ 0.05).

    Measured max relative error 1.4e-8 (c = 0.1, ρ = 10), 1e-10 at ρ = 1; tolerance 5e-8.
    """
    frames = solve_reaction_diffusion(np.full((1, 64), level), nu=1.0, rho=rho, dt_save=DT, num_frames=41)
    exact = 1 / (1 + (1 / level - 1) * np.exp(-rho * TIMES))  # (T,)
    assert np.ptp(frames[0], axis=-1).max() < 1e-14  # stays uniform
    assert (np.abs(frames[0] / exact[:, None] - 1)).max() < 5e-8


@pytest.mark.parametrize("nu", [0.5, 5.0])
def test_without_reaction_each_mode_decays_like_the_heat_equation(nu):
    """ρ = 0: mode k decays by e^{−ν(2πk)²t}, exactly in ETD. Measured max error 1.1e-16; tolerance 1e-13."""
    x = (np.arange(256) + 0.5) / 256
    k = 2 * np.pi * np.array([1, 2, 5])[:, None]  # (3, 1)
    amplitude = np.array([0.2, 0.15, 0.1])[:, None]
    phase = np.array([0.3, 1.1, 2.0])[:, None]

    def exact(t: float) -> np.ndarray:
        return 0.5 + (amplitude * np.exp(-nu * k**2 * t) * np.sin(k * x + phase)).sum(axis=0)  # (X,)

    frames = solve_reaction_diffusion(exact(0.0)[None], nu=nu, rho=0.0, dt_save=DT, num_frames=41)
    for frame, t in enumerate(TIMES):
        assert np.abs(frames[0, frame] - exact(t)).max() < 1e-13, f"t={t}"


@pytest.fixture(scope="module")
def random_ics():
    x = (np.arange(512) + 0.5) / 512
    return reaction_diffusion_initial_conditions(x, indices=range(32), seed=1)  # (32, 512) in [0, 1]


@pytest.mark.parametrize(("nu", "rho"), [(0.5, 10.0), (1.0, 2.0), (5.0, 10.0)])
def test_against_refined_references(random_ics, nu, rho):
    """Default steps against 4x smaller ones, and M = 512 against M = 1024, on PDEBench-like ICs.

    Measured max error relative to each trajectory's peak over PDEBench's 16 (ν, ρ) pairs: 5.2e-7 in time
    (tolerance 2e-6); with uniform steps, before the steps were graded towards t = 0, it was up to 1.4e-3.
    Doubling the solver points changes nothing beyond rounding (measured 1e-14; tolerance 1e-11).
    """
    frames = solve_reaction_diffusion(random_ics, nu=nu, rho=rho, dt_save=DT, num_frames=41)  # (N, T, X)
    finer = solve_reaction_diffusion(random_ics, nu=nu, rho=rho, dt_save=DT, num_frames=41, refinement=4)
    peak = np.abs(finer).max(axis=-1)  # (N, T)
    assert (np.abs(frames - finer).max(axis=-1) / peak).max() < 2e-6
    wider = solve_reaction_diffusion(
        random_ics, nu=nu, rho=rho, dt_save=DT, num_frames=41, solver_points=1024
    )  # (N, T, X): the same trigonometric IC, solved on twice the points
    assert np.abs(frames - wider).max() < 1e-11


@pytest.mark.parametrize(("nu", "rho"), [(0.5, 10.0), (5.0, 1.0)])
def test_maximum_principle(random_ics, nu, rho):
    """ICs in [0, 1] stay in [0, 1]; min u never decreases (u_xx ≥ 0 at a minimum and ρu(1 − u) ≥ 0)."""
    frames = solve_reaction_diffusion(random_ics, nu=nu, rho=rho, dt_save=DT, num_frames=41)  # (N, T, X)
    assert random_ics.min() == 0.0 and random_ics.max() == 1.0
    assert frames.min() >= -1e-12 and frames.max() <= 1 + 1e-12
    low = frames.min(axis=-1)  # (N, T)
    assert (low[:, 1:] >= low[:, :-1] - 1e-12).all()
    assert (low[:, -1] > 0.01).all()  # measured ≥ 0.02: diffusion and growth lift the zeros at once


@pytest.fixture(scope="module")
def generated():
    return generate_reaction_diffusion(nu=0.5, rho=10.0, num_trajectories=12, num_frames=11, seed=3)


def test_generated_data_layout(generated):
    data = generated
    assert data.tensor.shape == (12, 11, 256) and data.tensor.dtype == np.float32
    np.testing.assert_allclose(data.x, (np.arange(256) + 0.5) / 256, rtol=1e-6)
    assert data.t.shape == (12,)  # one more entry than frames, as PDEBench
    np.testing.assert_allclose(data.t[:3], [0.0, 0.025, 0.05], atol=1e-7)
    assert data.attrs == {
        "equation": "reaction_diffusion1d",
        "Nu": 0.5,
        "rho": 10.0,
        "solver": "etdrk4-spectral",
        "solver_points": 512,
        "initial_condition": "pdebench-init_multi-unit-interval",
        "seed": 3,
        "dt": 0.025,
        "generator_version": GENERATOR_VERSION,
    }
    # Frame 0: the draws mapped onto [0, 1] over the solver grid, which holds the stored cell centres.
    x_solver = (np.arange(512) + 1) / 512
    u0 = reaction_diffusion_initial_conditions(x_solver, indices=range(12), seed=3)[:, ::2]  # (12, 256)
    np.testing.assert_allclose(data.tensor[:, 0], u0, atol=1e-7)
    assert data.tensor.min() >= 0.0 and data.tensor.max() <= 1.0


def test_trajectory_does_not_depend_on_how_many_are_generated(generated):
    few = generate_reaction_diffusion(nu=0.5, rho=10.0, num_trajectories=5, num_frames=11, seed=3).tensor
    np.testing.assert_array_equal(few, generated.tensor[:5])


def test_initial_conditions_span_the_unit_interval():
    x = (np.arange(256) + 0.5) / 256
    u0 = reaction_diffusion_initial_conditions(x, indices=range(200), seed=0)  # (200, 256)
    np.testing.assert_array_equal(u0.min(axis=1), 0.0)
    np.testing.assert_allclose(u0.max(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_array_equal(reaction_diffusion_initial_conditions(x[:1], indices=[4], seed=0), [[0.5]])


@pytest.mark.parametrize(
    ("nu", "rho", "expected"),
    [
        (0.0, 1.0, r"data\.nu: the diffusion coefficient must be finite and > 0; got 0\.0\."),
        (-1.0, 1.0, r"data\.nu: .*> 0; got -1\.0\."),
        (math.nan, 1.0, r"data\.nu: .*> 0; got nan\."),
        (None, 1.0, r"data\.nu: .*> 0; got None\."),
        (1.0, -0.5, r"data\.rho: the reaction rate must be finite and >= 0; got -0\.5\."),
        (1.0, math.inf, r"data\.rho: .*>= 0; got inf\."),
    ],
)
def test_generator_refuses_bad_coefficients(nu, rho, expected):
    with pytest.raises(SpecError, match=f"^{expected}$"):
        generate_reaction_diffusion(nu=nu, rho=rho, num_trajectories=1)


def test_generator_refuses_misaligned_grids():
    with pytest.raises(SpecError, match=r"data\.num_points: must divide .*512; got 300"):
        generate_reaction_diffusion(nu=1.0, rho=1.0, num_trajectories=1, num_points=300)
