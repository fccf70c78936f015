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


COARSE_FACTORS = (2, 4, 8)
"""2D trajectory families and steady families are also solved 2×, 4× and 8× coarser per axis."""


def solver_baseline(datamodule, spec: Spec, split: str) -> dict[str, float]:
    """The family's coarse numerical solve (its catalogue row's `solver`) on a split's trajectories, from the same
    given frame and over the same horizon as the model: `solver_rollout_nrmse` (scored like `rollout_nrmse`) and
    `solver_rollout_ms` (wall time per trajectory) on the 4× coarser grid, per task too for multi-task specs; 2D
    families also at every factor of COARSE_FACTORS as `solver_x<f>_rollout_nrmse` and `solver_x<f>_rollout_ms`.
    {} when a task's data has no solver (no family, or a family without one); NaN when the coarse solve diverges
    or the grid does not coarsen by that factor."""
    import numpy as np

    from ups import catalog
    from ups.data.params import parameter_from

    sources = datamodule.sources
    rows = [catalog.get("families", s.family) if s.family else None for s in sources]
    if not all(r is not None and r.solver for r in rows):
        return {}
    c, h = spec.eval.context_frames, spec.eval.horizon
    states = datamodule.states[split].double().numpy()  # (N, E, C, *grid)
    factors = COARSE_FACTORS if len(sources[0].grid) == 2 else (4,)
    per_task: list[tuple[int, dict[int, tuple[float, float]]]] = []
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
        true = traj[:, c : c + h]
        per_task.append(
            (k, {f: _coarse_rollout(solve, traj[:, c - 1], true, src.dt, h, params, f) for f in factors})
        )
    out: dict[str, float] = {}
    names = spec.data.task_names()

    def put(prefix: str, factor: int, value: float, ms: float) -> None:
        if factor == 4:
            out[f"{prefix}solver_rollout_nrmse"], out[f"{prefix}solver_rollout_ms"] = value, ms
        if len(factors) > 1:
            out[f"{prefix}solver_x{factor}_rollout_nrmse"] = value
            out[f"{prefix}solver_x{factor}_rollout_ms"] = ms

    for k, results in per_task:
        if names:
            for f, (value, ms) in results.items():
                put(f"{names[k]}/", f, value, ms)
    for f in factors:
        values = [results[f] for _, results in per_task]
        put("", f, sum(v for v, _ in values) / len(values), sum(ms for _, ms in values) / len(values))
    return out


def _coarse_rollout(
    solve, start, true, dt: float, horizon: int, params: dict, factor: int
) -> tuple[float, float]:
    """(nRMSE as the metrics score it, ms per trajectory) of one coarse solve; NaN where it diverges or the grid does
    not coarsen by `factor`."""
    import time

    import numpy as np

    started = time.perf_counter()
    try:
        pred = solve(start, dt=dt, horizon=horizon, params=params, factor=factor)  # (n, H, C, *grid)
    except (FloatingPointError, ValueError):
        return float("nan"), float("nan")
    ms = 1000 * (time.perf_counter() - started) / start.shape[0]
    axes = tuple(range(3, true.ndim))
    err = np.sqrt(((pred - true) ** 2).sum(axis=axes)) / np.maximum(np.sqrt((true**2).sum(axis=axes)), 1e-12)
    return float(err.mean()), ms  # per sample, step and channel, averaged


def steady_baselines(datamodule, split: str) -> dict[str, float]:
    """A steady family's own solve on coarser grids (its catalogue row's `coarse_solution`), for every factor of
    COARSE_FACTORS the grid allows: `baseline_coarse_x<f>_nrmse` (scored like the model's nrmse) and
    `baseline_coarse_x<f>_ms` (wall time per sample). {} without a family or a coarse solve."""
    import time

    from ups import catalog
    from ups.training.steady_module import steady_nrmse

    family = datamodule.source.family
    row = catalog.get("families", family) if family else None
    if row is None or not row.coarse_solution:
        return {}
    solve = catalog.load(row.coarse_solution)
    inputs, u = (t.numpy() for t in datamodule.tensors[split][:2])
    out: dict[str, float] = {}
    for f in COARSE_FACTORS:
        started = time.perf_counter()
        try:
            pred = solve(inputs, f)  # (N, C, *grid)
        except ValueError:
            continue
        out[f"baseline_coarse_x{f}_ms"] = 1000 * (time.perf_counter() - started) / len(inputs)
        out[f"baseline_coarse_x{f}_nrmse"] = (
            steady_nrmse(torch.as_tensor(pred), torch.as_tensor(u)).mean().item()
        )
    return out
