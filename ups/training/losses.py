"""The operator's loss bundle, in physical space: one-step + unrolled rollout + spectral.

Legend: B batch, K unrolled steps, C fields, X grid points.
"""

from __future__ import annotations

import torch

from ups.models.operator import rollout
from ups.spec.schema import LossConfig


def relative_l2(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Mean over everything but space of ‖pred − true‖₂ / ‖true‖₂ (the nRMSE the metrics report)."""
    return ((pred - true).norm(dim=-1) / true.norm(dim=-1).clamp_min(1e-8)).mean()


def spectral_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Relative L2 error of the amplitude spectrum: penalizes smoothing away the high wavenumbers."""
    p = torch.fft.rfft(pred.float(), dim=-1).abs()
    t = torch.fft.rfft(true.float(), dim=-1).abs()
    return ((p - t).norm(dim=-1) / t.norm(dim=-1).clamp_min(1e-8)).mean()


def loss_bundle(rollout: torch.Tensor, target: torch.Tensor, weights: LossConfig) -> dict[str, torch.Tensor]:
    """rollout, target: (B, K, C, X). Returns `loss` and its parts."""
    parts = {
        "loss_onestep": relative_l2(rollout[:, 0], target[:, 0]),
        "loss_rollout": relative_l2(rollout, target),
        "loss_spectral": spectral_loss(rollout, target),
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
    two compute the same loss by construction). window: (B, K+1, C, X), params: (B, P), dt: (B,).

    `grad_steps` (`train.unroll_grad_steps`): None backpropagates through all K steps. G < K is the pushforward
    trick: step 1 (from the true state, so the one-step loss keeps its gradient) and steps K−G+1 … K (from the
    detached state before them) carry gradients; the steps between run without autograd. Every step's error
    still enters the reported loss."""
    steps = window.shape[1] - 1
    if grad_steps is None or grad_steps >= steps:
        states = rollout(model, window[:, 0], params, dt, steps)  # (B, K, C, X); any one-step predictor
        return loss_bundle(states, window[:, 1:], weights)
    states, u = [], window[:, 0]
    for k in range(steps):
        grad = k == 0 or k >= steps - grad_steps
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            u = model(u.detach() if k == steps - grad_steps else u, params, dt)  # the graded tail starts here
        states.append(u)
    return loss_bundle(torch.stack(states, dim=1), window[:, 1:], weights)
