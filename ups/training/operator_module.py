"""LightningModule of the `operator` stage: unrolled training in physical space, PDEBench-style evaluation.

Legend: B batch, K unrolled steps, T frames, C fields, X grid points.
"""

from __future__ import annotations

import math

import lightning.pytorch as L
import torch

from ups.data.source import PARAM_DIM
from ups.models.operator import LatentOperator
from ups.spec.load import spec_from_dict
from ups.spec.metrics import report_horizons
from ups.training.losses import loss_bundle
from ups.training.metrics import evaluate_batch, summarize_tasks
from ups.training.optim import build_optimizer, build_scheduler


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN/inf (the reason a sweep records is `nan`)."""


class OperatorModule(L.LightningModule):
    def __init__(self, spec: dict) -> None:
        super().__init__()
        self.save_hyperparameters()  # the resolved spec travels with every checkpoint
        self.spec = spec_from_dict(spec)
        self.model = LatentOperator(self.spec.model, num_fields=1, num_params=PARAM_DIM)
        self._per_sample: dict[str, list[torch.Tensor]] = {}
        self.last_eval: dict[str, dict] = {}
        """Per split: per-sample errors and one example rollout from the latest evaluation."""

    def forward(self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        return self.model(u, params, dt)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        window, params, dt, _task = batch  # (B, K+1, C, X), (B, P), (B,), (B,)
        k = window.shape[1] - 1
        rollout = self.model.rollout(window[:, 0], params, dt, k)  # (B, K, C, X)
        losses = loss_bundle(rollout, window[:, 1:], self.spec.stage.loss)
        if not torch.isfinite(losses["loss"]):
            raise NonFiniteLossError(
                f"non-finite training loss at step {self.global_step}: {losses['loss'].item()}"
            )
        self.log_dict(
            {f"train/{k}": v for k, v in losses.items()}, prog_bar=False, batch_size=window.shape[0]
        )
        self.log("loss", losses["loss"], prog_bar=True, logger=False, batch_size=window.shape[0])
        return losses["loss"]

    # evaluation -----------------------------------------------------------------------------------
    def _eval_step(self, batch) -> None:
        traj, params, dt, task = batch  # (B, T, C, X), (B, P), (B,), (B,)
        out = evaluate_batch(
            self.model,
            traj,
            params,
            dt,
            context_frames=self.spec.eval.context_frames,
            horizon=self.spec.eval.horizon,
        )
        out["task"] = task
        for name, v in out.items():
            self._per_sample.setdefault(name, []).append(v.detach().cpu())
        if "example" not in self._per_sample:
            with torch.no_grad():
                c = self.spec.eval.context_frames
                pred = self.model.rollout(traj[:1, c - 1], params[:1], dt[:1], self.spec.eval.horizon)
            self._per_sample["example"] = [torch.cat([traj[:1, :c], pred], dim=1).cpu(), traj[:1].cpu()]

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch)

    def _eval_epoch_end(self, split: str) -> None:
        example = self._per_sample.pop("example", None)
        local = {k: torch.cat(v) for k, v in self._per_sample.items()}
        self._per_sample = {}
        if not local:
            return
        gathered = self._gather(local)
        horizons = report_horizons(self.spec)
        metrics = summarize_tasks(gathered, horizons, self.spec.data.task_names())
        self.log_dict({f"{split}/{k}": v for k, v in metrics.items()}, sync_dist=False, rank_zero_only=False)
        self.last_eval[split] = {"per_sample": gathered, "metrics": metrics, "example": example}

    def _gather(self, local: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Concatenate per-sample errors across ranks (shards differ in size by at most one)."""
        if self.trainer is None or self.trainer.world_size == 1:
            return local
        out = {}
        for name, v in local.items():
            n = torch.tensor([v.shape[0]], device=self.device)
            sizes = self.all_gather(n).flatten().tolist()
            width = max(sizes)
            padded = torch.zeros((width, *v.shape[1:]), dtype=v.dtype, device=self.device)
            padded[: v.shape[0]] = v.to(self.device)
            every = self.all_gather(padded)  # (world, width, ...)
            out[name] = torch.cat([every[r, : sizes[r]] for r in range(len(sizes))]).cpu()
        return out

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # optimization ---------------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.spec.train)
        total = max(1, math.ceil(self.trainer.estimated_stepping_batches)) if self.trainer else 1
        scheduler = build_scheduler(
            optimizer, self.spec.train, total_steps=total, monitor=self.spec.train.checkpoint_metric
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # exact resume: RNG state travels with the checkpoint ------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ups_rng"] = {"torch": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "ups_rng" in checkpoint:
            torch.set_rng_state(checkpoint["ups_rng"]["torch"])
