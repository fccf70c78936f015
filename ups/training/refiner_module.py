"""LightningModule of the `diffusion_residual` stage: PDE-Refiner's refiner trained against a frozen operator.

Training pairs (u_t, u_{t+1}) come from the data: k ~ U{1..K}, σ_k = σ_min^(k/K), z̃ = z_{t+1} + σ_k ε (the TRUE
next state is noised, as in the paper), loss ‖R(z_t, z̃, k) − ε‖². The refiner also gets the frozen operator's
prediction ẑ⁰ (how it uses it: `stage.refiner_input`, ups.models.refiner). An exponential moving average of the refiner's
weights is what is evaluated and saved as the predictor. Legend: B batch, C fields, X grid points.
"""

from __future__ import annotations

import copy

import torch

from ups.data.params import LEGACY_LAYOUT
from ups.models.legacy import MODEL_FORMAT
from ups.models.refiner import RefinedOperator
from ups.training.operator_module import optimizers_for
from ups.training.stage_module import StageModule, check_finite, ema_update


class DiffusionResidualModule(StageModule):
    TRAINED = "refiner"

    def __init__(
        self,
        spec: dict,
        lineage: list | tuple = (),
        layout: list | tuple = LEGACY_LAYOUT,
        io: dict | None = None,
        meta: dict | None = None,
        model_format: int = MODEL_FORMAT,
        upstream_state: dict | None = None,
    ) -> None:
        """`upstream_state`: the operator predictor's weights (absent when a checkpoint is loaded)."""
        super().__init__(spec, lineage, layout, io, meta, model_format)
        self.save_hyperparameters(ignore=["upstream_state"])
        refined = self.build()  # the operator (as the lineage built it) and a fresh refiner
        self.operator = refined.operator
        if upstream_state is not None:
            self.operator.load_state_dict(upstream_state)
        self.operator.requires_grad_(False)
        self.refiner = refined.refiner
        self.ema = copy.deepcopy(self.refiner).requires_grad_(False)

    def predictor(self) -> RefinedOperator:
        st = self.spec.stage
        return RefinedOperator(self.operator, self.ema, num_steps=st.num_steps, sigma_min=st.sigma_min)

    def references(self) -> dict:
        return {"operator": self.operator}

    def warm_started(self) -> None:
        self.refiner.load_state_dict(self.ema.state_dict())

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        return gain_corr_time(metrics)

    def step_loss(self, batch, batch_idx: int) -> torch.Tensor:
        window, params, dt, _task = batch  # (B, K+1, C, *grid): only the first pair is used
        st, op = self.spec.stage, self.operator
        z_t, z_next = op.normalize(window[:, 0]), op.normalize(window[:, 1])  # (B, C, *grid)
        with torch.no_grad():
            z_op = op.normalize(
                op(window[:, 0], params, dt)
            )  # (B, C, *grid): the frozen operator's prediction
        k = torch.randint(1, st.num_steps + 1, (z_t.shape[0],), device=z_t.device)  # (B,)
        sigma = (st.sigma_min ** (k.double() / st.num_steps)).to(z_t.dtype)  # (B,)
        eps = torch.randn_like(z_next)
        z_noisy = z_next + sigma.view(-1, *([1] * (z_next.ndim - 1))) * eps
        pred = self.refiner(z_t, z_noisy, z_op, k.to(z_t.dtype) / st.num_steps, sigma, params, dt)
        per_sample = (pred - eps).square().flatten(1).mean(dim=1)  # (B,)
        return log_level_losses(self, per_sample, k, range(1, st.num_steps + 1))

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        ema_update(self.ema, self.refiner, self.spec.stage.ema_decay)

    def configure_optimizers(self):
        return optimizers_for(self, self.refiner)


def gain_corr_time(metrics: dict[str, float]) -> dict[str, float]:
    """`gain_corr_time` = corr_time over `operator_corr_time`, for every task and split prefix that has both."""
    return {
        key.replace("operator_corr_time", "gain_corr_time"): metrics[key.replace("operator_", "")] / value
        for key, value in metrics.items()
        if key.endswith("operator_corr_time") and value > 0
    }


def log_level_losses(module, per_sample: torch.Tensor, k: torch.Tensor, levels) -> torch.Tensor:
    """Log the mean loss and each level's (`train/loss_k<level>`: which level the network has not learned);
    per_sample, k: (B,). Returns the mean, checked finite."""
    loss, b = per_sample.mean(), per_sample.shape[0]
    check_finite(loss, module.global_step)
    module.log("train/loss", loss, batch_size=b)
    for level in levels:
        at = k == level
        if at.any():
            module.log(f"train/loss_k{level}", per_sample[at].mean(), batch_size=int(at.sum()))
    module.log("loss", loss, prog_bar=True, logger=False, batch_size=b)
    return loss
