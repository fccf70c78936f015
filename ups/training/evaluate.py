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
    from ups.training.metrics import PluginMetrics

    model.eval()
    if hasattr(datamodule, "mean_solution"):
        return _evaluate_steady(model, datamodule, split)
    plugins = PluginMetrics(spec, datamodule)
    states, params = datamodule.states[split], datamodule.params[split]  # (N, T, C, *grid), (N, P)
    per_sample: dict[str, list[torch.Tensor]] = {}
    size = spec.eval.batch_size
    seed = getattr(spec.stage, "eval_seed", 0)
    for i, start in enumerate(range(0, states.shape[0], size)):
        traj, p = states[start : start + size], params[start : start + size]
        dt = datamodule.dts[split][start : start + size]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1_000_003 + i * 1_009)
            task = datamodule.tasks[split][start : start + size]
            out = evaluate_batch(
                model, traj, p, dt, context_frames=spec.eval.context_frames, horizon=spec.eval.horizon,
                plugins=plugins, task=task,
            )  # fmt: skip
        out["task"] = task
        for name, v in out.items():
            per_sample.setdefault(name, []).append(v)
    joined = {k: torch.cat(v) for k, v in per_sample.items()}
    metrics = summarize_tasks(
        joined, report_horizons(spec), spec.data.task_names(), tuple(datamodule.io.channels)
    )
    return {f"{split}/{k}": v for k, v in metrics.items()}, joined


def _evaluate_steady(model, datamodule, split: str):
    from ups.training.steady_module import steady_nrmse

    inputs, u, params, classical = datamodule.tensors[split]
    per_sample = {
        "nrmse": steady_nrmse(model(inputs, params), u),
        "baseline_mean_nrmse": steady_nrmse(datamodule.mean_solution.expand_as(u), u),
    }
    if datamodule.baseline_name:
        per_sample[datamodule.baseline_name] = steady_nrmse(classical, u)
    return {f"{split}/{k}": v.mean().item() for k, v in per_sample.items()}, per_sample


def solver_baseline(datamodule, spec: Spec, split: str) -> dict[str, float]:
    """The family's coarse numerical solve (its catalogue row's `solver`) on a split's trajectories, from the same
    given frame and over the same horizon as the model: `solver_rollout_nrmse` (scored like `rollout_nrmse`) and
    `solver_rollout_ms` (wall time per trajectory), per task too for multi-task specs. {} when a task's data has no
    solver (no family, or a family without one); NaN when the coarse solve diverges."""
    import time

    import numpy as np

    from ups import catalog
    from ups.data.params import parameter_from

    sources = datamodule.sources
    rows = [catalog.get("families", s.family) if s.family else None for s in sources]
    if not all(r is not None and r.solver for r in rows):
        return {}
    c, h = spec.eval.context_frames, spec.eval.horizon
    states = datamodule.states[split].double().numpy()  # (N, E, C, *grid)
    per_task = []
    for k, (src, row) in enumerate(zip(sources, rows)):
        mask = (datamodule.tasks[split] == k).numpy()
        if not mask.any():
            continue
        traj = states[mask]
        params = dict(src.params)
        for p in row.params:
            if p.per_trajectory:
                params[p.name] = np.array(
                    parameter_from(datamodule.layout, datamodule.params[split][mask].numpy(), p.name)
                )
        solve = catalog.load(row.solver)
        started = time.perf_counter()
        try:
            pred = solve(traj[:, c - 1], dt=src.dt, horizon=h, params=params)  # (n, H, C, *grid)
            true = traj[:, c : c + h]
            axes = tuple(range(3, true.ndim))
            err = np.sqrt(((pred - true) ** 2).sum(axis=axes)) / np.maximum(
                np.sqrt((true**2).sum(axis=axes)), 1e-12
            )
            value = float(err.mean())  # per sample, step and channel, averaged
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
