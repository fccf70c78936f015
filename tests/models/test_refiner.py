"""PDE-Refiner inference: the operator is step 0, each step adds σ_k noise and removes the predicted noise."""

import pytest
import torch
from conftest import latent_operator

from ups.models.config import LatentOperatorConfig
from ups.models.operator import LatentOperator
from ups.models.refiner import RefinedOperator, Refiner, noise_level, student_steps
from ups.plugin import ModelIO

TINY = dict(patch_size=8, latent_dim=16, num_layers=1, num_modes=4, cond_dim=8, decoder_dim=8)


def _operator():
    torch.manual_seed(0)
    op = latent_operator(num_params=2, points=64, **TINY)
    torch.nn.init.normal_(op.net.head[-1].weight, std=0.1)  # not the identity
    op.set_normalization(torch.tensor([0.5]), torch.tensor([2.0]))
    return op


def _refiner(**kw) -> Refiner:
    """A refiner network as the stage builds it: the state and the noised state in, the level as a parameter."""
    io = ModelIO(spatial_dims=1, in_channels=2, out_channels=1, num_params=3, grid=(64,))
    return Refiner(LatentOperator(LatentOperatorConfig(**TINY), io), **kw)


class Oracle(torch.nn.Module):
    """Knows the noise: returns (z̃ − target)/σ, so a perfect refiner lands on `target` at every step."""

    def __init__(self, target, num_steps, sigma_min):
        super().__init__()
        self.target, self.num_steps, self.sigma_min = target, num_steps, sigma_min

    def forward(self, z_t, z_noisy, z_op, level, sigma, params, dt):
        k = round(level[0].item() * self.num_steps)
        return (z_noisy - self.target) / noise_level(k, num_steps=self.num_steps, sigma_min=self.sigma_min)


def test_noise_schedule_decreases_geometrically_to_sigma_min():
    levels = [noise_level(k, num_steps=3, sigma_min=4e-7) for k in (1, 2, 3)]
    assert levels[-1] == pytest.approx(4e-7)
    assert levels[0] == pytest.approx(4e-7 ** (1 / 3)) and levels[0] > levels[1] > levels[2]


def test_an_untrained_residual_refiner_returns_the_operator_prediction():
    """`refiner_input: residual` starts as the identity on the operator: training can only add to it."""
    op = _operator()
    model = RefinedOperator(op, _refiner(), num_steps=3, sigma_min=6.3e-4)
    u, p, dt = torch.randn(4, 1, 64), torch.randn(4, 2), torch.full((4,), 0.2)
    with torch.no_grad():
        out, base = model(u, p, dt), op(u, p, dt)
    assert (out - base).abs().max().item() < 1e-5
    assert not torch.equal(out, u)  # the operator itself is not the identity


def test_refiner_input_is_checked():
    with pytest.raises(ValueError, match="`refiner_input` must be one of"):
        _refiner(refiner_input="noised")


def test_a_zero_state_refiner_leaves_the_operator_prediction_plus_the_last_noise():
    op = _operator()
    refiner = _refiner(refiner_input="state")  # zero-initialized head: predicts no noise
    model = RefinedOperator(op, refiner, num_steps=2, sigma_min=1e-3)
    u, p, dt = torch.randn(4, 1, 64), torch.randn(4, 2), torch.full((4,), 0.2)
    with torch.no_grad():
        out, base = model(u, p, dt), op(u, p, dt)
    noise = (out - base) / op.field_std.view(1, -1, 1)  # normalized units: the sum of both steps' noise
    assert noise.std().item() == pytest.approx(
        (noise_level(1, num_steps=2, sigma_min=1e-3) ** 2 + 1e-6) ** 0.5, rel=0.2
    )


def test_an_oracle_refiner_denoises_onto_its_target_and_a_student_uses_fewer_levels():
    op = _operator()
    u, p, dt = torch.randn(4, 1, 64), torch.randn(4, 2), torch.full((4,), 0.2)
    target = torch.randn(4, 1, 64)
    model = RefinedOperator(op, Oracle(target, 3, 1e-4), num_steps=3, sigma_min=1e-4)
    with torch.no_grad():
        out = model(u, p, dt)
    assert torch.allclose(op.normalize(out), target, atol=1e-5)
    assert student_steps(3, 1) == (1,) and student_steps(3, 2) == (1, 2) and student_steps(4, 2) == (1, 3)
    with pytest.raises(ValueError, match="1 <= k <= num_steps"):
        RefinedOperator(op, Oracle(target, 3, 1e-4), num_steps=3, sigma_min=1e-4, steps=(4,))


class _Shift(torch.nn.Module):
    """F(x, cond, dt) = x[:, :1] + increment, the increment a fixed fraction of the second half of the input plus
    the level column: enough to see which inputs each call got."""

    residual = True

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))
        self.levels: list[float] = []

    def increment(self, x, cond, dt):
        self.levels.append(float(cond[0, -1]))
        return self.scale * x[:, 1:] + cond[:, -1].view(-1, 1, 1)

    def forward(self, x, cond, dt):
        return x[:, :1] + self.increment(x, cond, dt)


def test_pde_refiner_is_one_network_called_at_k_0_then_each_level():
    from ups.models.refiner import AtSteps, PDERefiner

    net = _Shift()
    model = PDERefiner(net, 1, num_steps=3, sigma_min=1e-3)
    u, p, dt = torch.randn(4, 1, 16), torch.zeros(4, 0), torch.full((4,), 0.1)
    with torch.no_grad():
        zero = AtSteps(model, ())(u, p, dt)
        torch.testing.assert_close(zero, u)  # k = 0: the state (residual) plus 0.5 · zeros + level 0
        net.levels.clear()
        torch.manual_seed(0)
        out = model(u, p, dt)
    assert net.levels == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])  # K + 1 evaluations of the one network
    # by hand: ẑ ← z̃ − σ_k (0.5 z̃ + k/K), z̃ = ẑ + σ_k ε, with the same noise draws
    torch.manual_seed(0)
    z = u.clone()
    for k in (1, 2, 3):
        sigma = 1e-3 ** (k / 3)
        noisy = z + sigma * torch.randn_like(z)
        z = noisy - sigma * (0.5 * noisy + k / 3)
    torch.testing.assert_close(out, z)


def test_pde_refiner_loss_trains_the_next_state_at_k_0_and_the_noise_above():
    from ups.models.refiner import PDERefiner
    from ups.training.pde_refiner_module import pde_refiner_loss

    net = _Shift()
    with torch.no_grad():
        net.scale.zero_()  # F's increment is then the level alone: k = 0 predicts z_t, k ≥ 1 predicts ε̂ = k/K
    model = PDERefiner(net, 1, num_steps=2, sigma_min=1e-2)
    torch.manual_seed(0)
    z_t, z_next = torch.randn(512, 1, 32), torch.randn(512, 1, 32)
    loss, k = pde_refiner_loss(model, z_t, z_next, torch.zeros(512, 0), torch.full((512,), 0.1))
    assert set(k.tolist()) == {0, 1, 2}  # k ~ U{0..K}
    at0 = k == 0
    torch.testing.assert_close(loss[at0], (z_t - z_next)[at0].square().mean(dim=(1, 2)))
    # ε ~ N(0, 1) against a constant k/K: E‖ε − c‖² = 1 + c²
    for level in (1, 2):
        assert loss[k == level].mean().item() == pytest.approx(1 + (level / 2) ** 2, rel=0.05)
