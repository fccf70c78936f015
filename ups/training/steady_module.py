"""LightningModule of the `steady_prior` stage: (a, f) → u, scored against the exact discrete solve next to two
baselines: the mean training solution, and the constant-coefficient solve with the harmonic-mean coefficient.

Legend: B batch, X grid points.
"""

from __future__ import annotations

import torch

from ups.data.params import LEGACY_LAYOUT
from ups.models.steady import SteadyNet
from ups.training.losses import relative_l2
from ups.training.operator_module import optimizers_for
from ups.training.stage_module import StageModule, check_finite


def _nrmse(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per sample ‖pred − true‖₂ / ‖true‖₂: (B, X) → (B,)."""
    return (pred - true).double().norm(dim=-1) / true.double().norm(dim=-1).clamp_min(1e-12)


class SteadyPriorModule(StageModule):
    def __init__(self, spec: dict, lineage: list | tuple = (), layout: list | tuple = LEGACY_LAYOUT) -> None:
        super().__init__(spec, lineage, layout)
        self.save_hyperparameters()
        self.model = SteadyNet(self.spec.model, num_params=len(self.layout))
        self.register_buffer("mean_solution", torch.zeros(self.spec.data.num_points))

    def predictor(self) -> SteadyNet:
        return self.model

    def setup_data(self, datamodule) -> None:
        self.model.set_normalization(datamodule.inputs, datamodule.tensors["train"][2].unsqueeze(1))
        self.mean_solution.copy_(datamodule.mean_solution)

    def step_loss(self, batch, batch_idx: int) -> torch.Tensor:
        a, f, u, params, _harmonic = batch  # (B, X) ×3, (B, P), (B, X)
        loss = relative_l2(self.model(a, f, params), u)
        check_finite(loss, self.global_step)
        self.log("train/loss", loss, batch_size=a.shape[0])
        self.log("loss", loss, prog_bar=True, logger=False, batch_size=a.shape[0])
        return loss

    def _eval_step(self, batch, batch_idx: int, split: str) -> None:
        a, f, u, params, harmonic = batch
        with torch.no_grad():
            out = {
                "nrmse": _nrmse(self.model(a, f, params), u),
                "baseline_mean_nrmse": _nrmse(self.mean_solution.expand_as(u), u),
                "baseline_harmonic_nrmse": _nrmse(harmonic, u),
            }
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
