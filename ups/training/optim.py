"""Optimizers (Adam, AdamW, SGD, Muon-hybrid) and schedulers (step, cosine-with-warmup, plateau)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ups.spec.schema import TrainConfig


class MuonHybrid(torch.optim.Optimizer):
    """`torch.optim.Muon` on 2-D weight matrices, AdamW on everything else (biases, norms, convolutions,
    complex spectral weights), behind one optimizer so Lightning's automatic optimization and any LR
    scheduler drive both. Muon's update is rescaled to AdamW's RMS, so one `lr` serves both."""

    def __init__(self, model: nn.Module, *, lr: float, weight_decay: float, momentum: float) -> None:
        matrices = [p for p in model.parameters() if p.requires_grad and p.ndim == 2]
        ids = {id(p) for p in matrices}
        others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        self.muon = torch.optim.Muon(
            matrices,
            lr=lr,
            weight_decay=weight_decay,
            momentum=max(momentum, 0.9),
            adjust_lr_fn="match_rms_adamw",
        )
        self.adamw = torch.optim.AdamW(others, lr=lr, weight_decay=weight_decay)
        self.inner = [o for o, params in ((self.muon, matrices), (self.adamw, others)) if params]
        # share the inner param_groups (same dicts) so schedulers reach both optimizers
        super().__init__([{"params": g["params"]} for o in self.inner for g in o.param_groups], {"lr": lr})
        self.param_groups = [g for o in self.inner for g in o.param_groups]

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.inner:
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.inner:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"inner": [o.state_dict() for o in self.inner]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for opt, sd in zip(self.inner, state_dict["inner"], strict=True):
            opt.load_state_dict(sd)
        self.param_groups = [g for o in self.inner for g in o.param_groups]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "muon":
        return MuonHybrid(model, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    raise AssertionError(f"unhandled optimizer {cfg.optimizer!r}")  # the schema's Literal rules this out


def cosine_with_warmup(step: int, *, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear 0 → 1 over `warmup` steps, then cosine 1 → min_ratio at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def mode(metric: str, spec=None) -> str:
    """Lightning's/torch's `min`/`max` for a metric name (with `spec`, its `eval.metrics` plugins' directions)."""
    from ups.spec.metrics import direction

    return "max" if direction(metric, spec) == "maximize" else "min"


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, *, total_steps: int, monitor: str, spec=None
) -> dict | None:
    """A Lightning `lr_scheduler` config dict, or None."""
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
        return {"scheduler": sched, "interval": "epoch"}
    if cfg.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: cosine_with_warmup(
                s, warmup=cfg.warmup_steps, total=total_steps, min_ratio=cfg.min_lr_ratio
            ),
        )
        return {"scheduler": sched, "interval": "step"}
    if cfg.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode(monitor, spec), factor=cfg.gamma, patience=cfg.plateau_patience
        )
        return {"scheduler": sched, "interval": "epoch", "monitor": monitor, "strict": False}
    raise AssertionError(f"unhandled scheduler {cfg.scheduler!r}")
