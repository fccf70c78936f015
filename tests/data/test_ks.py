"""The Kuramoto–Sivashinsky generator against linear theory, refined references, the attractor's statistics,
conservation of the mean, and the PDEBench layout with its extra dataset `L`."""

import math

import numpy as np
import pytest
import torch

from ups.data.ks import GENERATOR_VERSION, generate_ks, ks_initial_conditions, solve_ks
from ups.data.pdebench import PDEBenchFile, write_pdebench
from ups.data.spectral import upsample
from ups.spec.errors import SpecError

CELLS = (np.arange(256) + 0.5) / 256  # (X,) fractions of the domain


def initial(indices, *, seed, low=57.6, high=70.4):
    return ks_initial_conditions(CELLS, indices=indices, seed=seed, length_low=low, length_high=high)


@pytest.fixture(scope="module")
def on_attractor():
    """8 trajectories after the default 100 time units of burn-in: (8, X), (8,)."""
    u0, lengths = initial(range(8), seed=0)
    return solve_ks(u0, lengths=lengths, dt_save=100.0, num_frames=2)[:, 1], lengths


@pytest.mark.parametrize("mode", [3, 10])
def test_tiny_single_mode_follows_linear_theory(mode):
    """At amplitude 1e-9 the nonlinear term is negligible, so mode m evolves like e^{(k² − k⁴)t}, k = 2πm/L,
    which ETD integrates exactly. Each row has its own L: m = 3 grows in all three, m = 10 decays at L = 57.6
    (k > 1) and grows at 64 and 70.4.

    Measured max error relative to the exact amplitude over 20 time units: 4e-8 (m = 3, the harmonic 2m that
    u u_x feeds, ∝ amplitude) and 2e-9 (m = 10); tolerance 1e-6. A strongly damped mode (m = 12 at L = 57.6,
    decaying by e^{-24}) would fail: rounding noise in the unstable modes k < 1 outgrows it."""
    lengths = np.array([57.6, 64.0, 70.4])
    phase = np.array([0.3, 1.1, 2.0])[:, None]  # (3, 1)
    amplitude = 1e-9
    u0 = amplitude * np.cos(2 * np.pi * mode * CELLS + phase)  # (3, X)
    frames = solve_ks(u0, lengths=lengths, dt_save=0.2, num_frames=101)  # (3, T, X)
    k = 2 * np.pi * mode / lengths[:, None, None]  # (3, 1, 1)
    times = 0.2 * np.arange(101)[None, :, None]  # (1, T, 1)
    scale = amplitude * np.exp((k**2 - k**4) * times)  # (3, T, 1)
    exact = scale * np.cos(2 * np.pi * mode * CELLS + phase[:, :, None])  # (3, T, X)
    assert (np.abs(frames - exact).max(axis=-1, keepdims=True) / scale).max() < 1e-6


def test_against_smaller_steps_and_more_points(on_attractor):
    """Over 20 time units (~1.7 Lyapunov times) on the attractor: steps of 0.05 against 4x smaller ones, and
    M = 256 against 512 points.

    Measured max relative L2 error per frame: 1.5e-5 in time (ETDRK4: 2x smaller steps give 14/15 of the 4x
    error), tolerance 4e-5; 1.1e-10 in space (mode 85, the last kept one, has amplitude ~6e-11), tolerance
    1e-8.
    """
    u, lengths = on_attractor
    frames = solve_ks(u, lengths=lengths, dt_save=0.2, num_frames=101)  # (8, T, X)
    finer = solve_ks(u, lengths=lengths, dt_save=0.2, num_frames=101, refinement=4)

    def relative(a, b):
        return (np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)).max()

    assert relative(frames, finer) < 4e-5
    wide = np.fft.irfft(upsample(torch.from_numpy(u), 512).numpy(), n=512, norm="forward")
    wider = solve_ks(wide, lengths=lengths, dt_save=0.2, num_frames=101)[:, :, ::2]  # (8, T, X)
    assert relative(frames, wider) < 1e-8


def test_long_run_statistics_agree_across_seeds_and_steps():
    """Pointwise agreement ends after a few Lyapunov times; the attractor's statistics must not depend on the
    seed or the step. L = 64, 8 trajectories each, 200 time units after burn-in sampled every 1: seed 0 with
    steps of 0.05 against seed 1 with 0.025.

    Measured: energy ratios of modes 1-16 within 0.87-1.13 (tolerance 0.7-1.43); spectral peak at mode 7 in
    both (k = 0.69; the most unstable k is 1/√2); max|u| 3.37 (bound 5); the mean drifts by 1e-16 (bound
    1e-10)."""

    def run(seed, refinement):
        u0, _ = initial(range(8), seed=seed, low=64.0, high=64.0)
        lengths = np.full(8, 64.0)
        u = solve_ks(u0, lengths=lengths, dt_save=100.0, num_frames=2, refinement=refinement)[:, 1]
        frames = solve_ks(u, lengths=lengths, dt_save=1.0, num_frames=201, refinement=refinement)
        drift = np.abs(frames.mean(axis=-1) - u0.mean(axis=-1, keepdims=True)).max()
        energy = (np.abs(np.fft.rfft(frames, axis=-1) / 256) ** 2).mean(axis=(0, 1))  # (K,)
        return frames, drift, energy

    a, drift_a, energy_a = run(0, 1)
    b, drift_b, energy_b = run(1, 2)
    ratio = energy_a[1:17] / energy_b[1:17]
    assert ((ratio > 0.7) & (ratio < 1 / 0.7)).all(), ratio
    assert energy_a.argmax() in (6, 7, 8) and energy_b.argmax() in (6, 7, 8)
    assert np.abs(a).max() < 5 and np.abs(b).max() < 5
    assert np.abs(a).max() > 2  # not decayed: chaotic, not a laminar state
    assert max(drift_a, drift_b) < 1e-10


def test_non_finite_values_raise():
    u0 = np.zeros((2, 64))
    u0[1, 5] = np.inf
    with pytest.raises(FloatingPointError, match="diverged"):
        solve_ks(u0, lengths=np.array([64.0, 64.0]), dt_save=0.2, num_frames=2)


@pytest.fixture(scope="module")
def generated():
    return generate_ks(num_trajectories=5, num_frames=11, num_points=128, seed=3, burn_in=20.0)


def test_generated_data_layout(generated):
    data = generated
    assert data.tensor.shape == (5, 11, 128) and data.tensor.dtype == np.float32
    np.testing.assert_allclose(data.x, (np.arange(128) + 0.5) / 128, rtol=1e-6)
    np.testing.assert_allclose(
        data.t, 0.2 * np.arange(12), atol=1e-6
    )  # T + 1 entries, from the burn-in's end
    assert data.attrs == {
        "equation": "ks1d",
        "solver": "etdrk4-spectral",
        "initial_condition": "sum-of-10-sines-l1-2",
        "seed": 3,
        "generator_version": GENERATOR_VERSION,
        "burn_in": 20.0,
        "length_low": 57.6,
        "length_high": 70.4,
        "dt": 0.2,
        "solver_points": 256,
    }
    lengths = data.datasets["L"]
    assert lengths.shape == (5,) and lengths.dtype == np.float64
    assert (lengths >= 57.6).all() and (lengths <= 70.4).all() and np.unique(lengths).size == 5
    # Frame 0 is the burn-in's end, on the stored points (every 2nd solver point, the cell centres).
    x_solver = (np.arange(256) + 1) / 256
    u0, same = ks_initial_conditions(x_solver, indices=range(5), seed=3, length_low=57.6, length_high=70.4)
    np.testing.assert_array_equal(same, lengths)
    burnt = solve_ks(u0, lengths=lengths, dt_save=20.0, num_frames=2)[:, 1, ::2]
    np.testing.assert_allclose(data.tensor[:, 0], burnt, atol=1e-6)


def test_trajectory_does_not_depend_on_how_many_are_generated(generated):
    few = generate_ks(num_trajectories=2, num_frames=11, num_points=128, seed=3, burn_in=20.0)
    np.testing.assert_array_equal(few.tensor, generated.tensor[:2])
    np.testing.assert_array_equal(few.datasets["L"], generated.datasets["L"][:2])


def test_without_burn_in_frame_zero_is_the_initial_condition():
    data = generate_ks(num_trajectories=2, num_frames=3, seed=1, burn_in=0.0)
    u0, _ = ks_initial_conditions(CELLS, indices=range(2), seed=1, length_low=57.6, length_high=70.4)
    np.testing.assert_allclose(data.tensor[:, 0], u0, atol=1e-6)
    assert abs(u0.mean(axis=-1)).max() < 1e-15  # whole periods only: zero mean


def test_file_round_trip(generated, tmp_path):
    data = generated
    path = tmp_path / "ks.h5"
    write_pdebench(path, tensor=data.tensor, x=data.x, t=data.t, attrs=data.attrs, datasets=data.datasets)
    f = PDEBenchFile(path)
    assert f.attrs == data.attrs and f.dt_file == pytest.approx(0.2, rel=1e-6)
    np.testing.assert_array_equal(
        f.read(np.arange(5), num_points=64, dt=0.4, num_frames=6), data.tensor[:, ::2, ::2]
    )
    assert f.has_dataset("L") and not f.has_dataset("tensor") and not f.has_dataset("nu")
    lengths = f.read_dataset("L", np.array([3, 0, 0, 4]))
    assert lengths.dtype == np.float64
    np.testing.assert_array_equal(lengths, data.datasets["L"][[3, 0, 0, 4]])
    with pytest.raises(SpecError, match=r"^data\.path: ks\.h5 has no `nu` dataset \(its extra datasets: L\)"):
        f.read_dataset("nu", [0])
    with pytest.raises(
        SpecError, match=r"^data\.num_trajectories: `L` indices must lie in \[0, 5\); got 5\."
    ):
        f.read_dataset("L", [5])


def test_writer_refuses_datasets_that_are_not_per_trajectory(generated, tmp_path):
    data = generated
    for datasets in ({"L": np.zeros(4)}, {"tensor": np.zeros(5)}, {"a/b": np.zeros(5)}, {"s": np.float64(1)}):
        with pytest.raises(ValueError, match=r"extra datasets must be \(N, \.\.\.\)"):
            write_pdebench(
                tmp_path / "bad.h5", tensor=data.tensor, x=data.x, t=data.t, attrs={}, datasets=datasets
            )
    assert not (tmp_path / "bad.h5").exists()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"num_points": 100}, r"data\.num_points: must divide .*256; got 100\."),
        ({"dt": 0.0}, r"data: `num_trajectories >= 1`, .* must hold; got .*'dt': 0\.0"),
        ({"length_low": 80.0}, r"data\.length_low: .*0 < length_low <= length_high < inf; got .*80\.0"),
        ({"length_low": 0.0}, r"data\.length_low: .*; got .*'length_low': 0\.0"),
        ({"burn_in": -1.0}, r"data\.burn_in: the burn-in time must be finite and >= 0; got -1\.0\."),
        ({"burn_in": math.nan}, r"data\.burn_in: .*; got nan\."),
        ({"seed": -1}, r"data\.seed: must be >= 0; got -1\."),
    ],
)
def test_generator_refuses_bad_arguments(kwargs, expected):
    with pytest.raises(SpecError, match=f"^{expected}"):
        generate_ks(num_trajectories=1, num_frames=2, **kwargs)


def test_solver_refuses_api_misuse():
    u0 = np.zeros((2, 64))
    with pytest.raises(ValueError, match=r"`u0` \(trajectories, points\) and `lengths` \(trajectories,\)"):
        solve_ks(u0, lengths=np.ones(3), dt_save=0.2, num_frames=2)
    with pytest.raises(ValueError, match=r"finite `lengths > 0` must hold, got .*min length=-1\.0"):
        solve_ks(u0, lengths=np.array([1.0, -1.0]), dt_save=0.2, num_frames=2)
    with pytest.raises(ValueError, match=r"`refinement` must be an integer >= 1, got 0"):
        solve_ks(u0, lengths=np.ones(2), dt_save=0.2, num_frames=2, refinement=0)
