"""LightningModule of the `steady_prior` stage: inputs → the steady solution, scored against the exact solve next
to its baselines: the mean training solution, and the family's cheap classical solve where it has one.

Legend: B batch, C_in input channels, C solution channels, *grid one or two grid axes.
"""

from __future__ import annotations

import torch

from ups.data.params import LEGACY_LAYOUT
from ups.models.legacy import MODEL_FORMAT
from ups.models.wrap import SteadyPredictor
from ups.training.losses import relative_l2
from ups.training.operator_module import optimizers_for
from ups.training.stage_module import StageModule, check_finite


def steady_nrmse(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per sample ‖pred − true‖₂ / ‖true‖₂ over the grid, per channel, averaged over channels: → (B,)."""
    err = (pred - true).double().flatten(2).norm(dim=-1)
    return (err / true.double().flatten(2).norm(dim=-1).clamp_min(1e-12)).mean(dim=1)


class SteadyPriorModule(StageModule):
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
        self.model = self.build()
        self.register_buffer("mean_solution", torch.zeros(self.io.out_channels, *self.io.grid))
        self.baseline_name: str | None = None

    def predictor(self) -> SteadyPredictor:
        return self.model

    def setup_data(self, datamodule) -> None:
        self.model.set_normalization(datamodule.inputs, datamodule.train_solutions)
        self.mean_solution.copy_(datamodule.mean_solution)
        self.baseline_name = datamodule.baseline_name

    def step_loss(self, batch, batch_idx: int) -> torch.Tensor:
        inputs, u, params, _classical = batch  # (B, C_in, *grid), (B, C, *grid), (B, P), (B, C, *grid)
        loss = relative_l2(self.model(inputs, params).flatten(2), u.flatten(2))
        check_finite(loss, self.global_step)
        self.log("train/loss", loss, batch_size=inputs.shape[0])
        self.log("loss", loss, prog_bar=True, logger=False, batch_size=inputs.shape[0])
        return loss

    def _eval_step(self, batch, batch_idx: int, split: str) -> None:
        inputs, u, params, classical = batch
        with torch.no_grad():
            out = {
                "nrmse": steady_nrmse(self.model(inputs, params), u),
                "baseline_mean_nrmse": steady_nrmse(self.mean_solution.expand_as(u), u),
            }
            if self.baseline_name:
                out[self.baseline_name] = steady_nrmse(classical, u)
        for name, v in out.items():
            self._per_sample.setdefault(name, []).append(v.cpu())

    def _eval_epoch_end(self, split: str) -> None:
        local = {k: torch.cat(v) for k, v in self._per_sample.items()}
        self._per_sample = {}
        if not local:
            return
        gathered = self._gather(local)
        metrics = {k: v.mean().item() for k, v in gathered.items()}
        self.log_dict({f"{split}/{k}": v for k, v in metrics.items()}, sync_dist=False, rank_zero_only=False)
        self.last_eval[split] = {"per_sample": gathered, "metrics": metrics, "example": None}

    def configure_optimizers(self):
        return optimizers_for(self, self.model)
