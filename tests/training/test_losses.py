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


def test_2d_spectral_loss_compares_radial_shells():
    """In 2D the spectral loss compares the energy in shells of round(|k|): a field and its transpose (the same
    shell spectrum) cost nothing, moving energy between shells costs, and the shells hold all the energy."""
    from ups.training.losses import shell_amplitudes, spectral_loss

    torch.manual_seed(0)
    field = torch.randn(3, 2, 24, 24)
    assert spectral_loss(field.transpose(-1, -2), field, dims=2) < 1e-5
    assert torch.allclose(
        shell_amplitudes(field, 2).square().sum(-1), field.square().sum((-1, -2)), rtol=1e-4
    )
    x = torch.arange(24) / 24
    low = torch.sin(2 * torch.pi * 3 * x)[:, None].expand(24, 24)  # all energy in shell 3
    high = torch.sin(2 * torch.pi * 9 * x)[None, :].expand(24, 24)  # all energy in shell 9
    amp = shell_amplitudes(low, 2)
    assert amp.argmax() == 3 and amp[3].square() == pytest.approx(low.square().sum().item(), rel=1e-5)
    assert spectral_loss(high[None], low[None], dims=2) == pytest.approx(2**0.5, rel=1e-5)
    # shells with no energy at all (a mean-zero field's k = 0, as vorticity's; dealiased modes) keep gradients finite
    alternating = (-1.0) ** torch.arange(24.0)[:, None].expand(24, 24)  # its mean is exactly zero
    pred = (0.5 * alternating).requires_grad_()
    spectral_loss(pred[None], alternating[None], dims=2).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # one-dimensional fields: each wavenumber is its own mode, as before
    line = torch.randn(4, 1, 32)
    expected = (torch.fft.rfft(line * 1.5).abs() - torch.fft.rfft(line).abs()).norm(dim=-1) / torch.fft.rfft(
        line
    ).abs().norm(dim=-1)
    assert spectral_loss(line * 1.5, line, dims=1) == pytest.approx(expected.mean().item(), rel=1e-6)
