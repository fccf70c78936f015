"""A plain-PyTorch reference loop for the `operator` stage: the same data, model, loss, optimizer and schedule as
`ups-exp run`, without Lightning. It is the yardstick for the platform's overhead (benchmarks/overhead.py) and a
way out: its checkpoints are Lightning checkpoints, so training moves between the two loops in both directions.

What it does not do: evaluation, tracking, multiple devices, mixed precision, compile. It runs single-process,
fp32, eager. It mirrors Lightning's automatic optimization step by step: loss → zero_grad → backward → gradient
clipping (by norm) → optimizer step → step-interval scheduler step; the data sampler's epoch is set before each
epoch; gradient accumulation divides the loss. Interop is at epoch boundaries.

Legend: B batch, K unrolled steps, C fields, X grid points.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ups.models.legacy import MODEL_FORMAT
from ups.spec.redact import redact_tree
from ups.spec.schema import Spec
from ups.spec.stages import OperatorStage
from ups.training.losses import operator_loss
from ups.training.optim import build_optimizer, cosine_with_warmup


class BareLoop:
    """Train `model` (the operator stage's predictor) on `loader` as the spec says. `step` counts optimizer steps
    and `epoch` finished epochs."""

    def __init__(
        self,
        spec: Spec,
        model: nn.Module,
        loader: Iterable,
        *,
        layout: tuple[str, ...],
        io: dict | None = None,
        meta: dict | None = None,
    ) -> None:
        t = spec.train
        if not isinstance(spec.stage, OperatorStage):
            raise ValueError(f"the bare loop trains the operator stage, not {spec.stage.kind!r}")
        if spec.hardware.precision not in ("32-true", "32"):
            raise ValueError(f"the bare loop runs fp32 only, not {spec.hardware.precision!r}")
        if t.scheduler == "plateau":
            raise ValueError(
                "the bare loop has no validation, so no `plateau` scheduler; use cosine, step or none"
            )
        self.spec, self.model, self.loader, self.layout = spec, model, loader, tuple(layout)
        self.io, self.meta = io, meta or {}
        self.optimizer = build_optimizer(model, t)
        self.batches = len(loader) if not t.batches_per_epoch else min(t.batches_per_epoch, len(loader))
        self.total_steps = math.ceil(self.batches / t.accumulate_grad_batches) * t.max_epochs
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.interval = "step"
        if t.scheduler == "cosine":
            total = max(1, self.total_steps)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer,
                lambda s: cosine_with_warmup(s, warmup=t.warmup_steps, total=total, min_ratio=t.min_lr_ratio),
            )
        elif t.scheduler == "step":
            self.scheduler = torch.optim.lr_scheduler.StepLR(
                self.optimizer, step_size=t.step_size, gamma=t.gamma
            )
            self.interval = "epoch"
        self.step = 0
        self.epoch = 0

    @classmethod
    def from_spec(cls, spec: Spec, datamodule, *, model: nn.Module | None = None) -> BareLoop:
        """A loop over `datamodule`'s training batches; a fresh predictor of the spec's model (seeded by the
        caller's RNG) unless `model` is given."""
        from ups.training.predictors import operator_predictor

        layout = tuple(datamodule.layout)
        meta = {"families": [s.family for s in datamodule.sources]}
        if model is None:
            model = operator_predictor([spec], layout, datamodule.io, meta)
            model.set_normalization(datamodule.mean, datamodule.std)
        io = dataclasses.asdict(datamodule.io)
        return cls(spec, model, datamodule.train_dataloader(), layout=layout, io=io, meta=meta)

    def train(
        self, epochs: int | None = None, on_step: Callable[[int, float], None] | None = None
    ) -> list[float]:
        """Train `epochs` more epochs (default: up to `train.max_epochs`). Returns each batch's loss."""
        t = self.spec.train
        end = t.max_epochs if epochs is None else self.epoch + epochs
        losses: list[float] = []
        self.model.train()
        # the epoch's order lives in the sampler under the batch sampler (ups' loaders batch with a batch sampler)
        sampler = getattr(getattr(self.loader, "batch_sampler", None), "sampler", None) or self.loader.sampler
        while self.epoch < end:
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.epoch)
            for i, (window, params, dt, _task) in enumerate(self.loader):
                if i >= self.batches:
                    break
                loss = operator_loss(
                    self.model, window, params, dt, self.spec.stage.loss, self.spec.train.unroll_grad_steps
                )["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite training loss at step {self.step}: {loss.item()}")
                losses.append(loss.item())
                if on_step is not None:
                    on_step(self.step, losses[-1])
                last = i + 1 == self.batches
                if i % t.accumulate_grad_batches == 0:
                    self.optimizer.zero_grad(set_to_none=True)
                (loss / t.accumulate_grad_batches).backward()
                if (i + 1) % t.accumulate_grad_batches == 0 or last:
                    if t.grad_clip:
                        nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
                    self.optimizer.step()
                    self.step += 1
                    if self.scheduler is not None and self.interval == "step":
                        self.scheduler.step()
            if self.scheduler is not None and self.interval == "epoch":
                self.scheduler.step()
            self.epoch += 1
        return losses

    # checkpoints: Lightning's format, so either loop continues the other's training ---------------------------
    def save_checkpoint(self, path: str | Path) -> None:
        """A Lightning checkpoint at the end of the latest epoch: `trainer.fit(module, ckpt_path=...)` continues
        from it."""
        torch.save(
            {
                "epoch": self.epoch - 1,
                "global_step": self.step,
                "pytorch-lightning_version": _lightning_version(),
                "state_dict": {f"model.{k}": v for k, v in self.model.state_dict().items()},
                "loops": {"fit_loop": self._fit_loop_state()},
                "callbacks": {},
                "optimizer_states": [self.optimizer.state_dict()],
                "lr_schedulers": [self.scheduler.state_dict()] if self.scheduler is not None else [],
                "hyper_parameters": {
                    "spec": redact_tree(dataclasses.asdict(self.spec)),
                    "lineage": [],
                    "layout": list(self.layout),
                    "io": self.io,
                    "meta": self.meta,
                    "model_format": MODEL_FORMAT,
                },
                "ups_rng": {"torch": torch.get_rng_state()},
            },
            path,
        )

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue from a checkpoint saved at the end of an epoch, by `ups-exp run` or by this loop."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state = {k.removeprefix("model.").replace("_orig_mod.", ""): v for k, v in ckpt["state_dict"].items()}
        self.model.load_state_dict(state, strict=True)
        self.optimizer.load_state_dict(ckpt["optimizer_states"][0])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(ckpt["lr_schedulers"][0])
        self.step = ckpt["global_step"]
        self.epoch = _finished_epochs(ckpt)
        if "ups_rng" in ckpt:
            torch.set_rng_state(ckpt["ups_rng"]["torch"])

    def _fit_loop_state(self) -> dict[str, Any]:
        """Lightning's fit-loop progress as it stands at the end of epoch `self.epoch` (tested against a round trip
        through `trainer.fit(ckpt_path=...)`, so a Lightning change that breaks it fails a test)."""
        e, b, s = self.epoch, self.batches, self.step
        batches = {"ready": e * b, "started": e * b, "processed": e * b, "completed": e * b}
        current = {"ready": b, "started": b, "processed": b, "completed": b}
        steps = {
            "total": {"ready": s, "completed": s},
            "current": {"ready": s // max(e, 1), "completed": s // max(e, 1)},
        }
        zero = {
            "total": {"ready": s, "started": s, "completed": s},
            "current": {"ready": s // max(e, 1), "started": s // max(e, 1), "completed": s // max(e, 1)},
        }
        scheduled = s if self.interval == "step" else e
        return {
            "state_dict": {},
            "epoch_loop.state_dict": {"_batches_that_stepped": s},
            "epoch_loop.batch_progress": {"total": batches, "current": current, "is_last_batch": True},
            "epoch_loop.scheduler_progress": {
                "total": {"ready": scheduled, "completed": scheduled},
                "current": {"ready": scheduled // max(e, 1), "completed": scheduled // max(e, 1)},
            },
            "epoch_loop.automatic_optimization.state_dict": {},
            "epoch_loop.automatic_optimization.optim_progress": {
                "optimizer": {"step": steps, "zero_grad": zero}
            },
            "epoch_loop.manual_optimization.state_dict": {},
            "epoch_loop.manual_optimization.optim_step_progress": {
                "total": {"ready": 0, "completed": 0},
                "current": {"ready": 0, "completed": 0},
            },
            "epoch_loop.val_loop.state_dict": {},
            "epoch_loop.val_loop.batch_progress": {
                "total": {"ready": 0, "started": 0, "processed": 0, "completed": 0},
                "current": {"ready": 0, "started": 0, "processed": 0, "completed": 0},
                "is_last_batch": False,
            },
            "epoch_progress": {
                "total": {"ready": e, "started": e, "processed": e, "completed": e - 1},
                "current": {"ready": e, "started": e, "processed": e, "completed": e - 1},
            },
        }


def _finished_epochs(ckpt: dict) -> int:
    """Epochs a checkpoint saved at an epoch's end has finished (Lightning saves before it marks the epoch done)."""
    progress = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current")
    return int(progress["processed"]) if progress else int(ckpt["epoch"]) + 1


def _lightning_version() -> str:
    from importlib.metadata import version

    return version("lightning")
