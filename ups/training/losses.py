"""The operator's loss bundle, in physical space: one-step + unrolled rollout + spectral.

Legend: B batch, K unrolled steps, C channels, *grid one or two grid axes (`dims` of them).
"""

from __future__ import annotations

import torch

from ups.models.operator import rollout
from ups.spec.stages import LossConfig
from ups.training.metrics import radial_wavenumbers, spectral_norm_sq


def relative_l2(pred: torch.Tensor, true: torch.Tensor, dims: int = 1) -> torch.Tensor:
    """Mean over everything but the grid (its last `dims` axes) of ‖pred − true‖₂ / ‖true‖₂ (the metrics' nRMSE)."""
    err = (pred - true).flatten(-dims).norm(dim=-1) if dims > 1 else (pred - true).norm(dim=-1)
    ref = true.flatten(-dims).norm(dim=-1) if dims > 1 else true.norm(dim=-1)
    return (err / ref.clamp_min(1e-8)).mean()


def shell_amplitudes(z: torch.Tensor, dims: int) -> torch.Tensor:
    """√(energy) in each shell of radial wavenumber round(|k|) (index units) of the FFT over the last `dims`
    axes, Parseval-weighted: (..., *grid) → (..., S), S = the largest shell + 1."""
    power = spectral_norm_sq(z, dims, dtype=torch.float32).flatten(-dims)
    shell = radial_wavenumbers(tuple(z.shape[-dims:]), z.device).round().long().flatten()
    energy = power.new_zeros((*power.shape[:-1], int(shell.max()) + 1)).index_add_(-1, shell, power)
    return (energy.clamp_min(0.0) + 1e-12).sqrt()  # finite gradients at empty shells (dealiased modes)


def spectral_loss(pred: torch.Tensor, true: torch.Tensor, dims: int = 1) -> torch.Tensor:
    """Relative L2 error of the amplitude spectrum by wavenumber: penalizes smoothing away the high
    wavenumbers. In 1D each |k| is its own mode; in 2D the amplitudes are those of radial-wavenumber shells,
    so a field rotated on the grid keeps its target spectrum."""
    if dims == 1:
        p = torch.fft.rfft(pred.float(), dim=-1).abs()
        t = torch.fft.rfft(true.float(), dim=-1).abs()
        return relative_l2(p, t)
    return relative_l2(shell_amplitudes(pred.float(), dims), shell_amplitudes(true.float(), dims))


def loss_bundle(
    rollout: torch.Tensor, target: torch.Tensor, weights: LossConfig, dims: int = 1
) -> dict[str, torch.Tensor]:
    """rollout, target: (B, K, C, *grid). Returns `loss` and its parts."""
    parts = {
        "loss_onestep": relative_l2(rollout[:, 0], target[:, 0], dims),
        "loss_rollout": relative_l2(rollout, target, dims),
        "loss_spectral": spectral_loss(rollout, target, dims),
    }
    total = (
        weights.onestep * parts["loss_onestep"]
        + weights.rollout * parts["loss_rollout"]
        + weights.spectral * parts["loss_spectral"]
    )
    return {"loss": total, **parts}


def operator_loss(
    model,
    window: torch.Tensor,
    params: torch.Tensor,
    dt: torch.Tensor,
    weights: LossConfig,
    grad_steps: int | None = None,
):
    """The operator stage's training loss on one batch, shared by the LightningModule and the bare loop (so the
    two compute the same loss by construction). window: (B, K+1, C, *grid), params: (B, P), dt: (B,).

    `grad_steps` (`train.unroll_grad_steps`): None backpropagates through all K steps. G < K is the pushforward
    trick: step 1 (from the true state, so the one-step loss keeps its gradient) and steps K−G+1 … K (from the
    detached state before them) carry gradients; the steps between run without autograd. Every step's error
    still enters the reported loss."""
    steps = window.shape[1] - 1
    dims = window.ndim - 3
    if grad_steps is None or grad_steps >= steps:
        states = rollout(model, window[:, 0], params, dt, steps)  # (B, K, C, *grid); any one-step predictor
        return loss_bundle(states, window[:, 1:], weights, dims)
    states, u = [], window[:, 0]
    for k in range(steps):
        grad = k == 0 or k >= steps - grad_steps
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            u = model(u.detach() if k == steps - grad_steps else u, params, dt)  # the graded tail starts here
        states.append(u)
    return loss_bundle(torch.stack(states, dim=1), window[:, 1:], weights, dims)
