"""Evaluate a predictor on a split without a Trainer (promotion, `ups-exp eval`): the same metrics as training,
with the same seeded noise for stochastic predictors."""

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
    if hasattr(datamodule, "mean_solution"):
        return _evaluate_steady(model, datamodule, split)
    states, params = datamodule.states[split], datamodule.params[split]  # (N, T, C, X), (N, P)
    per_sample: dict[str, list[torch.Tensor]] = {}
    size = spec.eval.batch_size
    seed = getattr(spec.stage, "eval_seed", 0)
    for i, start in enumerate(range(0, states.shape[0], size)):
        traj, p = states[start : start + size], params[start : start + size]
        dt = datamodule.dts[split][start : start + size]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1_000_003 + i * 1_009)
            out = evaluate_batch(
                model, traj, p, dt, context_frames=spec.eval.context_frames, horizon=spec.eval.horizon
            )
        out["task"] = datamodule.tasks[split][start : start + size]
        for name, v in out.items():
            per_sample.setdefault(name, []).append(v)
    joined = {k: torch.cat(v) for k, v in per_sample.items()}
    metrics = summarize_tasks(joined, report_horizons(spec), spec.data.task_names())
    return {f"{split}/{k}": v for k, v in metrics.items()}, joined


def _evaluate_steady(model, datamodule, split: str):
    a, f, u, params, harmonic = datamodule.tensors[split]

    def nrmse(pred):
        return (pred - u).double().norm(dim=-1) / u.double().norm(dim=-1).clamp_min(1e-12)

    per_sample = {
        "nrmse": nrmse(model(a, f, params)),
        "baseline_mean_nrmse": nrmse(datamodule.mean_solution.expand_as(u)),
        "baseline_harmonic_nrmse": nrmse(harmonic),
    }
    return {f"{split}/{k}": v.mean().item() for k, v in per_sample.items()}, per_sample


def solver_baseline(datamodule, spec: Spec, split: str) -> dict[str, float]:
    """The coarse numerical solve (ups.data.coarse_solver) on a split's trajectories, from the same given frame and
    over the same horizon as the model: `solver_rollout_nrmse` (scored like `rollout_nrmse`) and
    `solver_rollout_ms` (wall time per trajectory), per task too for multi-task specs. {} when a family has no
    solver; NaN when the coarse solve diverges."""
    import time

    import numpy as np

    from ups.data.coarse_solver import SOLVED, coarse_rollout
    from ups.data.params import FAMILY_PARAMS, parameter_from

    sources = datamodule.sources
    if not all(s.family in SOLVED for s in sources):
        return {}
    c, h = spec.eval.context_frames, spec.eval.horizon
    states = datamodule.states[split][:, :, 0].double().numpy()  # (N, E, X)
    per_task = []
    for k, src in enumerate(sources):
        mask = (datamodule.tasks[split] == k).numpy()
        if not mask.any():
            continue
        traj = states[mask]
        params = dict(src.params)
        if "L" in FAMILY_PARAMS[src.family]:
            params["L"] = np.array(
                parameter_from(datamodule.layout, datamodule.params[split][mask].numpy(), "L")
            )
        started = time.perf_counter()
        try:
            pred = coarse_rollout(
                src.family, traj[:, c - 1], dt=src.dt, horizon=h, params=params
            )  # (n, H, X)
            true = traj[:, c : c + h]
            err = np.linalg.norm(pred - true, axis=-1) / np.maximum(np.linalg.norm(true, axis=-1), 1e-12)
            value = float(err.mean())
        except FloatingPointError:
            value = float("nan")
        ms = 1000 * (time.perf_counter() - started) / traj.shape[0]
        per_task.append((k, value, ms))
    out: dict[str, float] = {}
    names = spec.data.task_names()
    for k, value, ms in per_task:
        if names:
            out[f"{names[k]}/solver_rollout_nrmse"], out[f"{names[k]}/solver_rollout_ms"] = value, ms
    out["solver_rollout_nrmse"] = sum(v for _, v, _ in per_task) / len(per_task)
    out["solver_rollout_ms"] = sum(ms for _, _, ms in per_task) / len(per_task)
    return out
