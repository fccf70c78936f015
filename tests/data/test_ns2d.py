"""The 2D Navier–Stokes generator (ups.data.ns2d): exact decay of a single Fourier pair, the nonlinear term and
the forcing against hand-derived tendencies, the initial field's statistics, 64² against 128², per-trajectory
determinism, the PDEBench layout, argument checks, and the coarse-grid baseline.

Legend: N trajectories, T frames, X × Y grid points."""

import math

import numpy as np
import pytest

import ups.data.ns2d as ns2d
from ups.data.ns2d import GENERATOR_VERSION, coarse_solve, generate_ns2d, solve_vorticity

NU = 1e-3


def grid(x_points=64, y_points=64):
    """Point coordinates (X, Y) each, x_i = i/X and y_j = j/Y."""
    x = np.arange(x_points)[:, None] / x_points
    y = np.arange(y_points)[None, :] / y_points
    return np.broadcast_to(x, (x_points, y_points)), np.broadcast_to(y, (x_points, y_points))


def relative(a, b):
    """Relative L2 per leading index over the trailing two axes: (..., X, Y) → (...)."""
    return np.linalg.norm(a - b, axis=(-2, -1)) / np.linalg.norm(b, axis=(-2, -1))


def generate(**overrides):
    """A small data set: the flagship's equation, 64², short times."""
    kwargs = dict(
        nu=NU,
        burn_in=2.0,
        num_trajectories=2,
        num_points=64,
        num_frames=3,
        dt=1.0,
        solver_points=64,
        seed=0,
    )
    return generate_ns2d(**{**kwargs, **overrides})


@pytest.mark.parametrize(
    ("mode", "shape", "amplitude"),
    [((1, 1), (64, 64), 1.0), ((2, -1), (64, 64), 0.01), ((1, 3), (32, 64), 0.01)],
)
def test_single_fourier_pair_decays_exactly_without_forcing(mode, shape, amplitude):
    """For w = a cos(2π k·x + φ) the velocity is parallel to the level lines, u·∇w = 0 exactly, and with f off
    w(t) = e^{−ν|2πk|²t} w0, which the integrating factor reproduces whatever the step.

    Modes above the lowest shell |k| = 1, √2 are unstable shear flows: at a = 1 the rounding noise grows like
    e^{0.4t} for k = (1, 3), so they are checked at a = 0.01, where the instability is 100× slower.
    Measured max relative L2 error over 20 time units: 6e-7, 2e-7, 2e-7 (float32 rounding, relative to an
    amplitude that decays to 0.2, 0.02 and 0.04 of a); tolerance 1e-5."""
    x, y = grid(*shape)
    w0 = amplitude * np.cos(2 * np.pi * (mode[0] * x + mode[1] * y) + 0.3)[None]  # (1, X, Y)
    frames = solve_vorticity(w0, nu=NU, dt=1.0, num_frames=21, forcing=False)  # (1, T, X, Y)
    times = np.arange(21)[:, None, None]
    exact = np.exp(-NU * 4 * np.pi**2 * (mode[0] ** 2 + mode[1] ** 2) * times) * w0  # (T, X, Y)
    assert frames.shape == (1, 21, *shape) and frames.dtype == np.float32
    errors = relative(frames[0], exact)
    assert errors.max() < 1e-5


def test_tendencies_match_hand_derivations():
    """Over a short time h, (w(h) − w(0))/h ≈ w_t(0), derived by hand:

    - w = cos 2πx + cos 4πy, f off: ψ = cos 2πx/(4π²) + cos 4πy/(16π²), u = ψ_y = −sin 4πy/(4π),
      v = −ψ_x = sin 2πx/(2π), so u w_x + v w_y = −1.5 sin 2πx sin 4πy and
      w_t = 1.5 sin 2πx sin 4πy − ν(4π² cos 2πx + 16π² cos 4πy) — checks the velocity's convention and sign;
    - w = 0 with the forcing: w_t = f = 0.1(sin 2π(x + y) + cos 2π(x + y)).

    Measured relative L2 error 7e-4 and 4e-5 at h = 1e-3; tolerance 1e-2."""
    x, y = grid()
    h = 1e-3
    w0 = np.cos(2 * np.pi * x) + np.cos(4 * np.pi * y)
    frames = solve_vorticity(w0[None], nu=NU, dt=h, num_frames=2, forcing=False)[0]  # (2, X, Y)
    expected = 1.5 * np.sin(2 * np.pi * x) * np.sin(4 * np.pi * y) - NU * 4 * np.pi**2 * (
        np.cos(2 * np.pi * x) + 4 * np.cos(4 * np.pi * y)
    )
    assert relative((frames[1] - frames[0]) / h, expected) < 1e-2
    frames = solve_vorticity(np.zeros((1, 64, 64)), nu=NU, dt=h, num_frames=2)[0]
    forcing = 0.1 * (np.sin(2 * np.pi * (x + y)) + np.cos(2 * np.pi * (x + y)))
    assert relative((frames[1] - frames[0]) / h, forcing) < 1e-2


def test_initial_field_statistics():
    """Frame 0 without burn-in is the Gaussian random field on the 2/3-rule modes |k| ≤ 21 of 64²: mean 0 per
    field (μ_0 = 0), variance Σ_k 2·7³(4π²|k|² + 49)^{−2.5} = 0.2619² over those modes, and no energy beyond them.

    Measured over 64 fields: std 0.266 (0.262-0.266 over seeds 0-3); field means below 2e-8; energy beyond the
    kept modes 5e-15 of the total. Tolerance 15% on the std: a handful of low modes carry most of the variance."""
    w0 = generate(burn_in=0.0, num_trajectories=64, num_frames=1).tensor[:, 0]  # (N, X, Y)
    assert abs(w0.std() / 0.2619 - 1) < 0.15
    assert np.abs(w0.mean(axis=(1, 2))).max() < 1e-6
    modes = np.abs(np.fft.fftfreq(64, 1 / 64))
    outside = (modes[:, None] > 21) | (modes[None, :] > 21)
    spectrum = np.abs(np.fft.fft2(w0)) ** 2  # (N, X, Y)
    assert spectrum[:, outside].sum() < 1e-10 * spectrum.sum()


def test_resolution_64_against_128():
    """The same initial field (drawn on the same modes, whatever the grid) solved on 64² and on 128² (stored on
    64² by Fourier truncation), 5 time units after a burn-in of 5.

    Measured relative L2 at the last frame: 9e-7; tolerance 1e-4. (The raw fields differ by 1.6%: modes 22-31,
    which only 128² keeps, decay within a time unit.)"""
    coarse = generate(burn_in=5.0, num_frames=6).tensor  # (N, T, X, Y)
    fine = generate(burn_in=5.0, num_frames=6, solver_points=128).tensor
    assert relative(coarse[:, -1], fine[:, -1]).max() < 1e-4


@pytest.mark.slow
def test_resolution_64_against_128_on_the_flagship_horizon():
    """As above with the recommended burn-in, at t = 20 after it (17 s). Measured: 4e-5 at most over 8
    trajectories, float32 rounding grown by the dynamics; tolerance 1e-3."""
    burn_in = ns2d.RECOMMENDED_BURN_IN
    coarse = generate(burn_in=burn_in, num_frames=21, num_trajectories=4).tensor
    fine = generate(burn_in=burn_in, num_frames=21, num_trajectories=4, solver_points=128).tensor
    assert relative(coarse[:, -1], fine[:, -1]).max() < 1e-3


def test_trajectories_depend_on_seed_and_index_only(monkeypatch):
    """Trajectory i is the same number for number in a set of 2 and, split over batches of 3, in a set of 5;
    the same seed gives the same data, another seed other data."""
    pair = generate().tensor
    monkeypatch.setattr(ns2d, "_BATCH", 3)
    five = generate(num_trajectories=5).tensor
    assert np.array_equal(five[:2], pair)
    assert np.array_equal(generate().tensor, pair)
    assert np.abs(generate(seed=1).tensor - pair).max() > 0.1


def test_generated_data_layout():
    data = generate(num_trajectories=3, num_frames=4, num_points=32, dt=0.5)
    assert data.tensor.shape == (3, 4, 32, 32) and data.tensor.dtype == np.float32
    assert np.isfinite(data.tensor).all()
    for positions in (data.x, data.y):
        assert positions.dtype == np.float32
        np.testing.assert_array_equal(positions, np.arange(32, dtype=np.float32) / 32)
    assert data.t.dtype == np.float32
    np.testing.assert_allclose(data.t, 0.5 * np.arange(5))  # T + 1 entries, from the end of the burn-in
    assert data.attrs == {
        "equation": "ns2d",
        "Nu": NU,
        "channels": "w",
        "forcing": "0.1(sin 2pi(x+y) + cos 2pi(x+y))",
        "burn_in": 2.0,
        "solver_points": 64,
    }
    assert data.datasets == {}
    assert isinstance(GENERATOR_VERSION, int)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_points": 48}, r"num_points must divide solver_points=64, got 48"),
        ({"solver_points": 63, "num_points": 63}, r"solver_points must be even and >= 16"),
        ({"solver_points": 8, "num_points": 8}, r"solver_points must be even and >= 16"),
        ({"nu": 0.0}, r"nu must be > 0"),
        ({"nu": math.nan}, r"nu must be > 0"),
        ({"dt": 0.0}, r"dt must be > 0"),
        ({"burn_in": -1.0}, r"burn_in must be >= 0"),
        ({"num_frames": 0}, r"num_frames and num_trajectories must be >= 1"),
        ({"num_trajectories": 0}, r"num_frames and num_trajectories must be >= 1"),
        ({"seed": -1}, r"seed must be >= 0"),
    ],
)
def test_bad_arguments_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        generate(**overrides)


def test_non_finite_state_raises():
    w0 = np.zeros((1, 16, 16))
    w0[0, 3, 4] = np.nan
    with pytest.raises(FloatingPointError, match="diverged"):
        solve_vorticity(w0, nu=NU, dt=1.0, num_frames=2)


@pytest.fixture(scope="module")
def developed():
    """4 trajectories after the recommended burn-in, then 6 frames: (N, T, X, Y)."""
    return generate(burn_in=ns2d.RECOMMENDED_BURN_IN, num_trajectories=4, num_frames=6).tensor


def test_developed_flow_scale(developed):
    """After the burn-in the forced flow's vorticity std is 0.94 over 256 trajectories (1.01 over these 4);
    bounds 0.6-1.3, against a raw initial field's 0.26."""
    assert 0.6 < developed.std() < 1.3


def test_coarse_solve_converges_with_the_grid(developed):
    """Solved again from frame 0 for 5 frames: factor 1 repeats the generator's own solve (only the stored
    frame's float32 rounding differs), and coarser grids err more.

    Measured mean relative L2 over the 5 frames: 1.5e-7 (×1), 2.3e-4 (×2), 1.5e-2 (×4), 0.16 (×8); tolerances
    1e-5 for ×1 and 1e-3 for ×2."""
    start, truth = developed[:, :1], developed[:, 1:]  # (N, 1, X, Y), (N, 5, X, Y)
    errors = {}
    for factor in (1, 2, 4, 8):
        frames = coarse_solve(start, dt=1.0, horizon=5, params={"nu": NU}, factor=factor)
        assert frames.shape == (4, 5, 1, 64, 64) and frames.dtype == np.float32
        errors[factor] = relative(frames[:, :, 0], truth).mean()
    assert errors[1] < 1e-5
    assert errors[2] < 1e-3
    assert errors[2] < errors[4] < errors[8]


def test_coarse_solve_on_a_rectangle():
    start = np.random.default_rng(0).normal(size=(2, 1, 64, 32)).astype(np.float32) * 0.3
    frames = coarse_solve(start, dt=0.5, horizon=3, params={"nu": NU}, factor=2)
    assert frames.shape == (2, 3, 1, 64, 32) and frames.dtype == np.float32 and np.isfinite(frames).all()


@pytest.mark.parametrize(
    ("shape", "factor", "params", "message"),
    [
        ((2, 1, 64, 64), 3, {"nu": NU}, r"64×64 points do not coarsen by 3"),
        ((2, 1, 64, 64), 16, {"nu": NU}, r"do not coarsen by 16 to an even grid of at least 8"),
        ((2, 1, 72, 72), 8, {"nu": NU}, r"do not coarsen by 8"),
        ((2, 1, 64, 64), 2, {}, r"needs params\['nu'\]"),
        ((2, 64, 64), 2, {"nu": NU}, r"start must be \(N, 1, X, Y\)"),
    ],
)
def test_coarse_solve_bad_arguments_raise(shape, factor, params, message):
    with pytest.raises(ValueError, match=message):
        coarse_solve(np.zeros(shape, dtype=np.float32), dt=1.0, horizon=2, params=params, factor=factor)
