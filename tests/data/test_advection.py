"""The advection generator against the exact translated solution, its invariants and PDEBench's layout."""

import math
import re

import numpy as np
import pytest

from ups.data.advection import GENERATOR_VERSION, generate_advection, solve_advection
from ups.data.burgers import burgers_initial_conditions
from ups.spec.errors import SpecError

WAVENUMBERS = np.array([1, 3, 7, 20])
AMPLITUDES = np.array([1.0, 0.5, 0.3, 0.1])
PHASES = np.array([0.1, 2.0, 4.0, 1.0])


def sum_of_sines(x: np.ndarray) -> np.ndarray:
    """A smooth periodic IC whose value anywhere is known: Σ A sin(2πkx + φ)."""
    k = 2 * np.pi * WAVENUMBERS[:, None]
    return (AMPLITUDES[:, None] * np.sin(k * x[None, :] + PHASES[:, None])).sum(axis=0)  # (X,)


@pytest.mark.parametrize("beta", [0.1, 0.4, 1.0, 4.0])
def test_solution_is_the_translated_initial_condition(beta):
    """Float64, 256 cell centres, t up to 2: measured max error 6e-15 (rounding), tolerance 1e-10."""
    x = (np.arange(256) + 0.5) / 256
    frames = solve_advection(sum_of_sines(x)[None], beta=beta, dt_save=0.05, num_frames=41)  # (1, 41, 256)
    assert frames.shape == (1, 41, 256)
    for frame in range(41):
        exact = sum_of_sines(np.mod(x - beta * 0.05 * frame, 1.0))
        assert np.abs(frames[0, frame] - exact).max() < 1e-10, f"frame {frame}"


@pytest.fixture(scope="module")
def random_solution():
    x = (np.arange(512) + 0.5) / 512
    u0 = burgers_initial_conditions(x, indices=range(200), seed=2)  # (200, 512), |u| and windowed ones too
    return u0, solve_advection(u0, beta=0.4, dt_save=0.05, num_frames=41)  # (200, 41, 512)


def test_mass_and_l2_norm_are_conserved(random_solution):
    u0, frames = random_solution
    mass = frames.mean(axis=-1)  # (N, T): exactly the k=0 Fourier mode on the solver grid
    assert np.abs(mass - u0.mean(axis=-1, keepdims=True)).max() < 1e-13  # measured 4e-16
    energy = (frames**2).mean(axis=-1)  # (N, T)
    ratio = energy / (u0**2).mean(axis=-1, keepdims=True)  # (N, T)
    # Every mode keeps its modulus except the Nyquist mode, which keeps only its cosine part (see
    # solve_advection); it is ~1e-4 of the scale for the kinked |u| ICs. Measured max |ratio - 1|: 1.1e-8.
    assert np.abs(ratio - 1).max() < 1e-7
    resolved = (np.abs(np.fft.rfft(u0))[:, 200:] / u0.shape[1]).max(axis=1) < 1e-8  # (N,) no |u| kinks
    assert resolved.sum() > 150
    assert np.abs(ratio[resolved] - 1).max() < 1e-13


@pytest.fixture(scope="module")
def generated():
    return generate_advection(beta=0.4, num_trajectories=20, num_frames=41, seed=2)


def test_generated_frames_are_the_translated_initial_conditions(generated):
    """Stored float32 frames against PDEBench's IC formula at x − βt, for ICs resolved by the 512 solver points.

    Measured max error 1.2e-7 (float32 rounding), tolerance 1e-6. The ~10% of ICs taken in absolute value have
    kinks; for them the Fourier shift is exact for the trigonometric interpolant only (Gibbs ringing ≲ 2e-2).
    """
    x = generated.x.astype(np.float64)
    x_solver = (np.arange(512) + 1) / 512  # the solver grid generate_advection samples the ICs on
    u0 = burgers_initial_conditions(x_solver, indices=range(20), seed=2)  # (20, 512)
    resolved = np.flatnonzero((np.abs(np.fft.rfft(u0))[:, 200:] / 512).max(axis=1) < 1e-8)
    assert resolved.size >= 15
    for frame in range(0, 41, 4):
        shifted = np.mod(x - 0.4 * 0.05 * frame, 1.0)
        exact = burgers_initial_conditions(shifted, indices=resolved, seed=2)  # (n, X)
        assert np.abs(generated.tensor[resolved, frame] - exact).max() < 1e-6, f"frame {frame}"


def test_generated_data_layout(generated):
    data = generated
    assert data.tensor.shape == (20, 41, 256) and data.tensor.dtype == np.float32
    np.testing.assert_allclose(data.x, (np.arange(256) + 0.5) / 256, rtol=1e-6)
    assert data.t.shape == (42,)  # one more entry than frames, as PDEBench
    np.testing.assert_allclose(data.t[:3], [0.0, 0.05, 0.1], atol=1e-7)
    assert data.attrs == {
        "equation": "advection1d",
        "beta": 0.4,
        "solver": "exact-fourier-shift",
        "solver_points": 512,
        "initial_condition": "pdebench-init_multi",
        "seed": 2,
        "dt": 0.05,
        "generator_version": GENERATOR_VERSION,
    }
    # Frame 0 is the IC at the cell centres themselves (bit-exact up to the float32 cast).
    u0 = burgers_initial_conditions(data.x.astype(np.float64), indices=range(20), seed=2)
    np.testing.assert_allclose(data.tensor[:, 0], u0, atol=1e-6)


def test_trajectory_does_not_depend_on_how_many_are_generated(generated):
    few = generate_advection(beta=0.4, num_trajectories=5, num_frames=41, seed=2).tensor
    np.testing.assert_array_equal(few, generated.tensor[:5])


def test_whole_periods_return_the_initial_condition():
    data = generate_advection(beta=4.0, num_trajectories=3, num_frames=9, dt=0.25)  # βt = 0, 1, …, 8
    assert np.abs(data.tensor - data.tensor[:, :1]).max() < 1e-6


@pytest.mark.parametrize("beta", [-0.1, math.nan, math.inf, None])
def test_generator_refuses_bad_speeds(beta):
    expected = r"data\.beta: the advection speed must be finite and >= 0 \(PDEBench uses .*\); got "
    with pytest.raises(SpecError, match=f"^{expected}{re.escape(repr(beta))}\\.$"):
        generate_advection(beta=beta, num_trajectories=1)


def test_generator_refuses_misaligned_grids():
    with pytest.raises(SpecError, match=r"data\.num_points: must divide .*512; got 300"):
        generate_advection(beta=0.1, num_trajectories=1, num_points=300)
