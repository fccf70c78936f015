"""The coarse numerical baseline: each family's scheme (its catalogue row's `solver`) converges as its grid is
refined, and bad input says why."""

import numpy as np
import pytest

from ups import catalog
from ups.data.advection import solve_advection
from ups.data.burgers import burgers_initial_conditions, solve_burgers
from ups.data.ks import ks_initial_conditions, solve_ks
from ups.data.reaction_diffusion import solve_reaction_diffusion


def _error(pred, true) -> float:
    return float((np.linalg.norm(pred - true, axis=-1) / np.linalg.norm(true, axis=-1)).mean())


X = 256
CELLS = (np.arange(X) + 0.5) / X


def coarse_rollout(family, start, **kw):
    """The family's solver from the catalogue, on one-channel (N, X) data: (N, H, X)."""
    solver = catalog.get("families", family).solver
    if solver is None:
        raise ValueError(f"no coarse solver for family {family!r}")
    return catalog.load(solver)(np.asarray(start)[:, None], **kw)[:, :, 0]


def _errors(family, start, truth, params, dt, factors=(8, 4, 2)):
    return [
        _error(coarse_rollout(family, start, dt=dt, horizon=truth.shape[1], params=params, factor=f), truth)
        for f in factors
    ]


def test_finite_volume_burgers_converges_and_beats_persistence():
    u0 = burgers_initial_conditions(CELLS, indices=range(6), seed=3)  # (6, X)
    truth = solve_burgers(u0, nu=0.01, dt_save=0.05, num_frames=21)[:, 1:]  # (6, 20, X)
    errors = _errors("burgers1d", u0, truth, {"nu": 0.01}, 0.05)
    assert errors[0] > errors[1] > errors[2]  # 32 → 64 → 128 cells
    assert errors[1] < 0.1 * _error(np.repeat(u0[:, None], 20, axis=1), truth)


def test_finite_volume_advection_converges_at_second_order_on_smooth_data():
    u0 = np.sin(2 * np.pi * CELLS)[None] + 0.5 * np.cos(4 * np.pi * CELLS)[None]
    truth = solve_advection(u0, beta=0.4, dt_save=0.05, num_frames=11)[:, 1:]
    errors = _errors("advection1d", u0, truth, {"beta": 0.4}, 0.05, factors=(16, 8, 4))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert (orders > 1.4).all(), orders  # MUSCL: second order away from extrema (minmod clips them)


def test_the_spectral_solvers_run_on_the_coarse_grid():
    smooth = 0.5 + 0.3 * np.sin(2 * np.pi * CELLS)[None]
    truth = solve_reaction_diffusion(smooth, nu=0.5, rho=1.0, dt_save=0.025, num_frames=11)[:, 1:]
    assert (
        _errors("reaction_diffusion1d", smooth, truth, {"nu": 0.5, "rho": 1.0}, 0.025, factors=(4,))[0] < 1e-6
    )

    u0, lengths = ks_initial_conditions(
        np.arange(X) / X, indices=range(2), seed=0, length_low=57.6, length_high=70.4
    )
    truth = solve_ks(u0, lengths=lengths, dt_save=0.2, num_frames=26)[:, 1:]  # 5 time units
    errors = _errors("ks1d", u0, truth, {"L": lengths}, 0.2, factors=(8, 4))
    assert errors[1] < errors[0] < 0.5


def test_bad_input_says_what_is_wrong():
    u = np.zeros((2, 64))
    with pytest.raises(ValueError, match="no coarse solver for family 'steady_diffusion1d'"):
        coarse_rollout("steady_diffusion1d", u, dt=0.1, horizon=2, params={})
    with pytest.raises(ValueError, match="the solver needs nu"):
        coarse_rollout("burgers1d", u, dt=0.1, horizon=2, params={})
    with pytest.raises(ValueError, match="60 points do not coarsen by 4"):
        coarse_rollout("advection1d", np.zeros((2, 60)), dt=0.1, horizon=2, params={"beta": 1.0})
