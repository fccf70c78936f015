"""LightningModule of the `pde_refiner` stage: PDE-Refiner as published (Lippe et al. 2023), one network for
k = 0..K trained from scratch.

Training pairs (u_t, u_{t+1}) come from the data; each sample draws k ~ U{0..K}. At k = 0 the network predicts the
next state from the state (MSE against z_{t+1}, the extra input channels zero); at k ≥ 1 it predicts the noise ε
in the noised TRUE next state z̃ = z_{t+1} + σ_k ε, σ_k = σ_min^(k/K) (MSE against ε). Everything is in normalized
units (train statistics). An exponential moving average of the weights is evaluated and saved as the predictor;
its k = 0 prediction alone is scored next to it as `operator_*` (what the refinement adds: `gain_corr_time`).
Legend: B batch, C fields, *grid one or two grid axes.
"""

from __future__ import annotations

import copy

import torch

from ups.data.params import LEGACY_LAYOUT
from ups.models.legacy import MODEL_FORMAT
from ups.models.refiner import AtSteps, PDERefiner
from ups.training.operator_module import optimizers_for
from ups.training.refiner_module import gain_corr_time, log_level_losses
from ups.training.stage_module import StageModule, ema_update


class PDERefinerModule(StageModule):
    FROZEN_REFERENCES = False  # its `operator` reference is the trained network's own k = 0 prediction

    def __init__(
        self,
        spec: dict,
        lineage: list | tuple = (),
        layout: list | tuple = LEGACY_LAYOUT,
        io: dict | None = None,
        meta: dict | None = None,
        model_format: int = MODEL_FORMAT,
    ) -> None:
        super().__init__(spec, lineage, layout, io, meta, model_format)
        self.save_hyperparameters()
        self.model: PDERefiner = self.build()
        self.ema = copy.deepcopy(self.model).requires_grad_(False)

    def predictor(self) -> PDERefiner:
        return self.ema

    def references(self) -> dict:
        return {"operator": AtSteps(self.ema, ())}

    def setup_data(self, datamodule) -> None:
        for model in (self.model, self.ema):
            model.set_normalization(datamodule.mean, datamodule.std)

    def warm_started(self) -> None:
        self.model.load_state_dict(self.ema.state_dict())

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        return gain_corr_time(metrics)

    def step_loss(self, batch, batch_idx: int) -> torch.Tensor:
        window, params, dt, _task = batch  # (B, K+1, C, *grid): only the first pair is used
        model = self.model
        z_t, z_next = model.normalize(window[:, 0]), model.normalize(window[:, 1])  # (B, C, *grid)
        loss_k, k = pde_refiner_loss(model, z_t, z_next, params, dt)
        return log_level_losses(self, loss_k, k, range(model.num_steps + 1))

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        ema_update(self.ema, self.model, self.spec.stage.ema_decay)

    def configure_optimizers(self):
        return optimizers_for(self, self.model)


def pde_refiner_loss(
    model: PDERefiner, z_t: torch.Tensor, z_next: torch.Tensor, params: torch.Tensor, dt: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample losses (B,) and the levels drawn (B,): k ~ U{0..K}; k = 0: ‖F(z_t, 0) − z_{t+1}‖² (mean over
    the field); k ≥ 1: ‖ε̂(z_t, z_{t+1} + σ_k ε) − ε‖². z_t, z_next (B, C, *grid) normalized; params (B, P); dt (B,)."""
    b, shape = z_t.shape[0], (-1, *([1] * (z_t.ndim - 1)))
    k = torch.randint(0, model.num_steps + 1, (b,), device=z_t.device)  # (B,)
    loss_k = torch.zeros(b, device=z_t.device, dtype=z_t.dtype)
    zero, noised = k == 0, k > 0
    if zero.any():
        pred = model.predict_zero(z_t[zero], params[zero], dt[zero])
        loss_k[zero] = (pred - z_next[zero]).square().flatten(1).mean(dim=1)
    if noised.any():
        kk = k[noised]
        sigma = (model.sigma_min ** (kk.double() / model.num_steps)).to(z_t.dtype)  # (B',)
        eps = torch.randn_like(z_next[noised])
        z_noisy = z_next[noised] + sigma.view(shape) * eps
        level = kk.to(z_t.dtype) / model.num_steps
        pred = model.predict_noise(z_t[noised], z_noisy, level, params[noised], dt[noised])
        loss_k[noised] = (pred - eps).square().flatten(1).mean(dim=1)
    return loss_k, k
