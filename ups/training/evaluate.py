"""Evaluate a model on a split without a Trainer (promotion, `ups-exp eval`): same metrics as training."""

from __future__ import annotations

import torch

from ups.spec.metrics import report_horizons
from ups.spec.schema import Spec
from ups.training.metrics import evaluate_batch, summarize_tasks


@torch.no_grad()
def evaluate_split(
    model: torch.nn.Module, datamodule, spec: Spec, split: str = "test"
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Returns (`<split>/<metric>` values, per-sample errors) for `model` on the datamodule's split."""
    model.eval()
    states, params = datamodule.states[split], datamodule.params[split]  # (N, T, C, X), (N, P)
    per_sample: dict[str, list[torch.Tensor]] = {}
    size = spec.eval.batch_size
    for start in range(0, states.shape[0], size):
        traj, p = states[start : start + size], params[start : start + size]
        dt = datamodule.dts[split][start : start + size]
        out = evaluate_batch(
            model, traj, p, dt, context_frames=spec.eval.context_frames, horizon=spec.eval.horizon
        )
        out["task"] = datamodule.tasks[split][start : start + size]
        for name, v in out.items():
            per_sample.setdefault(name, []).append(v)
    joined = {k: torch.cat(v) for k, v in per_sample.items()}
    metrics = summarize_tasks(joined, report_horizons(spec), spec.data.task_names())
    return {f"{split}/{k}": v for k, v in metrics.items()}, joined
