"""`train.unroll_grad_steps` (the pushforward trick): the same reported loss as backpropagating through the whole
rollout, gradients only through step 1 and the last G steps, and no autograd graph for the steps between."""

from __future__ import annotations

import pytest
import torch
from conftest import latent_operator

from ups.models.wrap import Normalized
from ups.spec.stages import LossConfig
from ups.training.losses import operator_loss

K = 5


class Recording(Normalized):
    """Records, per call, whether autograd was on and whether the input state carried a graph."""

    def forward(self, u, params, dt):
        self.calls.append((torch.is_grad_enabled(), u.grad_fn is not None))
        return super().forward(u, params, dt)


@pytest.fixture
def batch():
    torch.manual_seed(0)
    inner = latent_operator(
        points=32, patch_size=4, latent_dim=8, num_layers=1, num_modes=4, cond_dim=4, decoder_dim=8
    )
    model = Recording(inner.net, 1)
    model.calls = []
    window = torch.randn(4, K + 1, 1, 32)
    return model, (window, torch.rand(4, 1), torch.full((4,), 0.1))


def _grads(model, batch, grad_steps):
    model.zero_grad()
    model.calls.clear()
    out = operator_loss(model, *batch, LossConfig(), grad_steps)
    out["loss"].backward()
    return out, [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize(
    ("grad_steps", "calls"),
    [
        (None, [(True, False), (True, True), (True, True), (True, True), (True, True)]),
        (1, [(True, False), (False, True), (False, False), (False, False), (True, False)]),
        (2, [(True, False), (False, True), (False, False), (True, False), (True, True)]),
        (K, [(True, False), (True, True), (True, True), (True, True), (True, True)]),  # G >= K: as null
    ],
)
def test_only_the_first_and_last_steps_carry_gradients(batch, grad_steps, calls):
    model, b = batch
    with torch.no_grad():  # make the last layer non-zero, so every step changes the state
        model.net.head[-1].weight.normal_(0, 0.1)
    full, full_grads = _grads(model, b, None)
    out, grads = _grads(model, b, grad_steps)
    assert model.calls == calls  # (autograd on, input carries a graph) per unrolled step
    for key in ("loss", "loss_onestep", "loss_rollout", "loss_spectral"):  # the same values are reported
        torch.testing.assert_close(out[key], full[key], rtol=1e-6, atol=0)
    differs = any(not torch.allclose(g, f) for g, f in zip(grads, full_grads, strict=True))
    assert differs == (grad_steps is not None and grad_steps < K)  # a truncated gradient is not BPTT's


def test_under_no_grad_nothing_is_recorded(batch):
    model, b = batch
    with torch.no_grad():
        out = operator_loss(model, *b, LossConfig(), 1)
    assert out["loss"].grad_fn is None
    assert all(not grad for grad, _ in model.calls)
