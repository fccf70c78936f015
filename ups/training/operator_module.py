"""LightningModule of the `operator` stage: unrolled training in physical space (one-step + rollout + spectral).

Legend: B batch, K unrolled steps, C fields, X grid points.
"""

from __future__ import annotations

import math

import torch

from ups.data.params import LEGACY_LAYOUT
from ups.models.legacy import MODEL_FORMAT
from ups.models.wrap import Normalized
from ups.training.losses import operator_loss
from ups.training.optim import build_optimizer, build_scheduler
from ups.training.stage_module import NonFiniteLossError, StageModule, check_finite

__all__ = ["NonFiniteLossError", "OperatorModule"]


class OperatorModule(StageModule):
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
        self.save_hyperparameters()  # the resolved spec, layout and shapes travel with every checkpoint
        self.model = self.build()

    def predictor(self) -> Normalized:
        return self.model

    def setup_data(self, datamodule) -> None:
        self.model.set_normalization(datamodule.mean, datamodule.std)

    def step_loss(self, batch, batch_idx: int) -> torch.Tensor:
        window, params, dt, _task = batch  # (B, K+1, C, X), (B, P), (B,), (B,)
        losses = operator_loss(
            self.model, window, params, dt, self.spec.stage.loss, self.spec.train.unroll_grad_steps
        )
        check_finite(losses["loss"], self.global_step)
        self.log_dict(
            {f"train/{k}": v for k, v in losses.items()}, prog_bar=False, batch_size=window.shape[0]
        )
        self.log("loss", losses["loss"], prog_bar=True, logger=False, batch_size=window.shape[0])
        return losses["loss"]

    def configure_optimizers(self):
        return optimizers_for(self, self.model)


def optimizers_for(module, model: torch.nn.Module):
    """The spec's optimizer and scheduler over `model`'s trainable parameters, in Lightning's format."""
    optimizer = build_optimizer(model, module.spec.train)
    total = max(1, math.ceil(module.trainer.estimated_stepping_batches)) if module.trainer else 1
    scheduler = build_scheduler(
        optimizer,
        module.spec.train,
        total_steps=total,
        monitor=module.spec.train.checkpoint_metric,
        spec=module.spec,
    )
    if scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": scheduler}
