"""The operator's loss bundle, in physical space: one-step + unrolled rollout + spectral.

Legend: B batch, K unrolled steps, C fields, X grid points.
"""

from __future__ import annotations

import torch

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


def operator_loss(model, window: torch.Tensor, params: torch.Tensor, dt: torch.Tensor, weights: LossConfig):
    """The operator stage's training loss on one batch, shared by the LightningModule and the bare loop (so the
    two compute the same loss by construction). window: (B, K+1, C, X), params: (B, P), dt: (B,)."""
    rollout = model.rollout(window[:, 0], params, dt, window.shape[1] - 1)  # (B, K, C, X)
    return loss_bundle(rollout, window[:, 1:], weights)
