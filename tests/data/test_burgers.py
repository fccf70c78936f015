"""The Burgers generator against the exact Cole–Hopf solution, conservation laws and PDEBench's IC recipe."""

import math

import numpy as np
import pytest

from ups.data.burgers import (
    GENERATOR_VERSION,
    burgers_initial_conditions,
    generate_burgers,
    solve_burgers,
)
from ups.spec.errors import SpecError

NU = 0.01


def cole_hopf_sine(x: np.ndarray, t: float, diffusion: float, num_quadrature: int = 4096) -> np.ndarray:
    """Exact solution of u_t + u u_x = D u_xx from u0 = sin(2πx), periodic on [0, 1).

    φ = exp(-F/(2D)) with F' = u0 solves the heat equation and u = -2D φ_x/φ. With the periodic heat kernel,
    u(x, t) = Σ_images ∫ (x-y-n)/t · w dy / Σ_images ∫ w dy,  w = exp(-(x-y-n)²/(4Dt) - F(y)/(2D)).
    The exponents reach -100, so each x is rescaled by its largest exponent (log-sum-exp). The integrand is
    smooth and periodic in y, so the midpoint rule converges spectrally (4096 vs 16384 nodes agree to 1e-15).
    """
    y = (np.arange(num_quadrature) + 0.5) / num_quadrature  # (Y,)
    potential = (1 - np.cos(2 * np.pi * y)) / (2 * np.pi)  # (Y,) F(y) = ∫_0^y sin(2πs) ds
    images = np.arange(-3, 4)  # (I,)
    out = np.empty_like(x)
    for start in range(0, x.size, 64):
        d = x[start : start + 64, None, None] - y[None, :, None] - images[None, None, :]  # (x, Y, I)
        exponent = -(d**2) / (4 * diffusion * t) - potential[None, :, None] / (2 * diffusion)
        w = np.exp(exponent - exponent.max(axis=(1, 2), keepdims=True))
        out[start : start + 64] = (d / t * w).sum(axis=(1, 2)) / w.sum(axis=(1, 2))
    return out


@pytest.mark.parametrize("num_points", [512, 256])
def test_solver_matches_cole_hopf(num_points):
    """Float64 ETDRK4 at 512 solver points; 256 stored points go through the spectral up-sampling path.

    Measured max errors: 4.1e-7 at t = 0.5 (the front is steepest; this is the 512-point spatial error,
    3.4e-7 with tiny steps), 1.4e-8 at t = 1, 3.7e-9 at t = 2 (time-step error at the default step).
    """
    x = (np.arange(num_points) + 0.5) / num_points
    frames = solve_burgers(np.sin(2 * np.pi * x)[None], nu=NU, dt_save=0.5, num_frames=5, solver_points=512)
    assert frames.shape == (1, 5, num_points)
    np.testing.assert_array_equal(frames[0, 0], np.sin(2 * np.pi * x))
    tolerance = {0.5: 1e-6, 1.0: 5e-8, 2.0: 2e-8}
    for frame, t in ((1, 0.5), (2, 1.0), (4, 2.0)):
        exact = cole_hopf_sine(x, t, NU / math.pi)
        error = np.abs(frames[0, frame] - exact).max()
        assert error < tolerance[t], f"t={t}: max error {error:.2e}"
    # A half-cell misalignment of the stored grid would cost ~|u_x| dx / 2 ≈ 0.3 at the front.


@pytest.fixture(scope="module")
def random_solution():
    x = (np.arange(512) + 0.5) / 512
    u0 = burgers_initial_conditions(x, indices=range(32), seed=1)
    return solve_burgers(u0, nu=NU, dt_save=0.1, num_frames=21)  # (32, 21, 512), t up to 2


def test_mass_is_conserved(random_solution):
    mass = random_solution.mean(axis=-1)  # (N, T): exactly the k=0 Fourier mode on the solver grid
    scale = np.abs(random_solution[:, 0]).max(axis=-1, keepdims=True)
    assert np.abs(mass - mass[:, :1]).max() / scale.min() < 1e-12


def test_energy_does_not_increase(random_solution):
    energy = (random_solution**2).mean(axis=-1)  # (N, T)
    assert (energy[:, 1:] <= energy[:, :-1] * (1 + 1e-12)).all()
    # Viscosity really dissipates what is not the (conserved) mean: even k = 2π alone keeps only e^(-2Dk²t) = 0.6.
    fluctuation = random_solution.var(axis=-1)  # (N, T)
    assert (fluctuation[:, -1] < 0.7 * fluctuation[:, 0]).all()


def test_maximum_principle(random_solution):
    peak = np.abs(random_solution).max(axis=-1)  # (N, T)
    assert (peak[:, 1:] <= peak[:, :-1] * (1 + 1e-6)).all()


@pytest.fixture(scope="module")
def generated():
    return generate_burgers(nu=NU, num_trajectories=12, num_frames=11, seed=3)


def test_generated_data_layout_and_conservation(generated):
    data = generated
    assert data.tensor.shape == (12, 11, 256) and data.tensor.dtype == np.float32
    np.testing.assert_allclose(data.x, (np.arange(256) + 0.5) / 256, rtol=1e-6)
    assert data.t.shape == (12,)
    np.testing.assert_allclose(data.t[:3], [0.0, 0.05, 0.1], atol=1e-7)
    assert data.attrs["equation"] == "burgers1d" and data.attrs["Nu"] == NU and data.attrs["seed"] == 3
    assert data.attrs["generator_version"] == GENERATOR_VERSION and data.attrs["solver_points"] == 512
    # Frame 0 is the IC at the cell centres themselves.
    u0 = burgers_initial_conditions(data.x.astype(np.float64), indices=range(12), seed=3)
    np.testing.assert_allclose(data.tensor[:, 0], u0, atol=1e-6)
    # Mass on the stored grid, once viscosity has smoothed the kinks of |u| ICs (whose modes ≥ 256 alias
    # onto the mean of 256 samples at ~1e-5 at t = 0): float32 storage keeps it to ~1e-7 of the scale.
    mass = data.tensor[:, 1:].astype(np.float64).mean(axis=-1)  # (N, T-1)
    assert np.abs(mass - mass[:, :1]).max() < 1e-6 * np.abs(data.tensor).max()


def test_trajectory_does_not_depend_on_how_many_are_generated(generated):
    few = generate_burgers(nu=NU, num_trajectories=5, num_frames=11, seed=3).tensor
    np.testing.assert_array_equal(few, generated.tensor[:5])


def test_initial_conditions_are_stable_per_index():
    x = (np.arange(256) + 0.5) / 256
    five = burgers_initial_conditions(x, indices=range(5), seed=7)
    twenty = burgers_initial_conditions(x, indices=range(20), seed=7)
    np.testing.assert_array_equal(five, twenty[:5])
    np.testing.assert_array_equal(
        burgers_initial_conditions(x, indices=np.array([17, 3]), seed=7), twenty[[17, 3]]
    )
    assert not np.allclose(burgers_initial_conditions(x, indices=range(5), seed=8), five)


def test_initial_condition_statistics():
    """PDEBench's recipe: modes ≤ 8, |u| with p = 0.1 (then single-signed), a tanh window with p = 0.1."""
    x = (np.arange(256) + 0.5) / 256
    u = burgers_initial_conditions(x, indices=range(4000), seed=0)  # (4000, 256)
    edges = (x < 0.05) | (x > 0.95)
    windowed = np.abs(u[:, edges]).max(axis=1) < 1e-4
    assert 0.08 < windowed.mean() < 0.12  # binomial sd 0.005
    positive, negative = (u >= 0).all(axis=1), (u <= 0).all(axis=1)
    # Single-signed: the 10% taken in absolute value plus sums whose constant terms dominate (measured 0.36).
    assert 0.3 < (positive | negative).mean() < 0.42
    assert 0.8 < positive.mean() / negative.mean() < 1.25  # the random sign is fair
    plain = ~windowed & ~positive & ~negative  # neither |u| nor windowed: a trigonometric sum
    spectrum = np.abs(np.fft.rfft(u[plain])) / x.size  # (n, 129)
    assert spectrum[:, 9:].max() < 1e-12  # wavenumbers 1..4, doubled at most
    assert np.abs(u).max() <= 4.0
    # A wavenumber picked twice doubles (1/16 each); 3 → 6 and 4 → 8 land above 4 (1/8 of all ICs, measured
    # 0.087 among these, as the constant terms of such sums more often make them single-signed).
    above_four = (spectrum[:, 5:9] > 1e-6).any(axis=1)
    assert 0.06 < above_four.mean() < 0.15


def test_generator_refuses_unresolvable_viscosity():
    with pytest.raises(SpecError, match=r"data\.nu: .*nu >= 0\.005.*got 0\.001"):
        generate_burgers(nu=0.001, num_trajectories=1)
    with pytest.raises(SpecError, match=r"data\.num_points: must divide .*512; got 300"):
        generate_burgers(nu=NU, num_trajectories=1, num_points=300)
