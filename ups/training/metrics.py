"""Physical-space metrics (DESIGN.md, Metrics): per-sample nRMSE, rollout error by step, Fourier bands,
each next to the persistence baseline ("no change"). Pure torch.

Legend: B samples, H rollout steps, C channels, *grid one or two grid axes (X or X, Y).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

BAND_EDGES = {"low": (0, 4), "mid": (4, 12), "high": (12, None)}
"""PDEBench's Fourier bands over the wavenumber |k| of the spatial FFT, in index units (radial in 2D)."""

EPS = 1e-12


def _space(dims: int) -> tuple[int, ...]:
    return tuple(range(-dims, 0))


def channel_nrmse(pred: torch.Tensor, true: torch.Tensor, dims: int = 1) -> torch.Tensor:
    """‖pred − true‖₂ / ‖true‖₂ over the `dims` grid axes, per channel: (..., C, *grid) → (..., C)."""
    space = _space(dims)
    err = (pred - true).double().square().sum(dim=space).sqrt()
    ref = true.double().square().sum(dim=space).sqrt().clamp_min(EPS)
    return err / ref


def nrmse(pred: torch.Tensor, true: torch.Tensor, dims: int = 1) -> torch.Tensor:
    """PDEBench's nRMSE: per channel over the grid, then the mean over channels: (..., C, *grid) → (...)."""
    return channel_nrmse(pred, true, dims).mean(dim=-1)


def radial_wavenumbers(shape: tuple[int, ...], device=None) -> torch.Tensor:
    """|k| in index units on the grid of a real FFT over these axes (the last one halved): (*k_grid)."""
    axes = [torch.fft.fftfreq(n, d=1.0 / n, device=device).double() for n in shape[:-1]]
    axes.append(torch.arange(shape[-1] // 2 + 1, device=device, dtype=torch.float64))
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.sqrt(sum(k.square() for k in mesh))


def spectral_norm_sq(z: torch.Tensor, dims: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-wavenumber energy of a real field's FFT over its `dims` last axes, weighted so it sums to ‖z‖²
    (Parseval): (..., *grid) → (..., *k_grid), the last axis halved as a real FFT stores it."""
    space = _space(dims)
    n_last, size = z.shape[-1], math.prod(z.shape[-dims:])
    power = torch.fft.rfftn(z.to(dtype), dim=space).abs().square() / size
    weight = torch.full((power.shape[-1],), 2.0, dtype=power.dtype, device=power.device)
    weight[0] = 1.0
    if n_last % 2 == 0:
        weight[-1] = 1.0
    return power * weight


def channel_band_nrmse(pred: torch.Tensor, true: torch.Tensor, dims: int = 1) -> dict[str, torch.Tensor]:
    """Error energy in each band of |k| over the truth's total energy, per channel: (..., C, *grid) →
    {band: (..., C)}. Normalized by the whole-spectrum ‖true‖, so a channel's bands' squares add up to its nRMSE²."""
    space = _space(dims)
    err = spectral_norm_sq(pred - true, dims)
    ref = spectral_norm_sq(true, dims).sum(dim=space).clamp_min(EPS**2)
    k = radial_wavenumbers(tuple(true.shape[-dims:]), true.device)
    out = {}
    for band, (lo, hi) in BAND_EDGES.items():
        mask = (k >= lo) & (k < hi) if hi is not None else k >= lo
        out[band] = ((err * mask).sum(dim=space) / ref).sqrt()
    return out


def band_nrmse(pred: torch.Tensor, true: torch.Tensor, dims: int = 1) -> dict[str, torch.Tensor]:
    """`channel_band_nrmse`, then the mean over channels: (..., C, *grid) → {band: (...)}."""
    return {band: v.mean(dim=-1) for band, v in channel_band_nrmse(pred, true, dims).items()}


def pearson(pred: torch.Tensor, true: torch.Tensor, dims: int = 1) -> torch.Tensor:
    """Spatial Pearson correlation per channel, averaged over channels: (..., C, *grid) → (...)."""
    space = _space(dims)
    p = pred.double() - pred.double().mean(dim=space, keepdim=True)
    t = true.double() - true.double().mean(dim=space, keepdim=True)
    den = (p.square().sum(dim=space).sqrt() * t.square().sum(dim=space).sqrt()).clamp_min(EPS)
    return ((p * t).sum(dim=space) / den).mean(dim=-1)


CORR_THRESHOLD = 0.8
"""corr_time: the time until the correlation with the truth first drops below this (PDE-Refiner's measure)."""


def steps_above(corr: torch.Tensor) -> torch.Tensor:
    """Steps before a correlation curve (..., H) first drops below CORR_THRESHOLD (H if it never does)."""
    below = corr < CORR_THRESHOLD
    first = torch.where(
        below.any(dim=-1), below.double().argmax(dim=-1), torch.full_like(corr[..., 0], corr.shape[-1])
    )
    return first.double()


Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class PluginMetrics:
    """The spec's `eval.metrics` (catalogue rows), called as `fn(pred, true, ctx) -> (B,)` once per task on the
    rollout (and on persistence) over the `eval.horizon` frames after the context, in physical units."""

    def __init__(self, spec, datamodule) -> None:
        from ups import catalog
        from ups.spec.metrics import plugin_metrics

        self.fns = [(row.name, catalog.load(row.fn)) for row in plugin_metrics(spec)]
        self.task_names = spec.data.task_names()
        self.layout = tuple(getattr(datamodule, "layout", ()))
        sources = getattr(datamodule, "sources", None) or []
        self.coords = tuple(sources[0].coords) if sources else ()
        self.channels = tuple(sources[0].channels) if sources else ()
        self.names = sorted({n for s in sources for n in (*s.params, *s.trajectory_params)})

    def __bool__(self) -> bool:
        return bool(self.fns)

    def _params(self, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        from ups.data.params import parameter_from

        out = {}
        for name in self.names:
            try:
                out[name] = torch.tensor(
                    parameter_from(self.layout, vectors.tolist(), name), dtype=torch.float64
                )
            except KeyError:
                continue
        return out

    def compute(self, rollout, still, target, start, params, dt, task) -> dict[str, torch.Tensor]:
        """Per-sample values `metric:<name>` and `persistence_metric:<name>`, (B,) each."""
        from ups.plugin import MetricContext

        b = target.shape[0]
        out = {
            f"{p}metric:{n}": torch.zeros(b, dtype=torch.float64)
            for n, _ in self.fns
            for p in ("", "persistence_")
        }
        for k in task.unique().tolist():
            mask = task == k
            ctx = MetricContext(
                dt=float(dt[mask][0]),
                grid=tuple(target.shape[3:]),
                coords=self.coords,
                channels=self.channels,
                task=self.task_names[k] if self.task_names else None,
                params=self._params(params[mask]),
                u0=start[mask],
            )
            for name, fn in self.fns:
                for prefix, pred in (("", rollout), ("persistence_", still)):
                    value = torch.as_tensor(fn(pred[mask], target[mask], ctx)).double().reshape(-1)
                    if value.shape[0] != int(mask.sum()):
                        raise ValueError(
                            f"metric {name!r} must return one value per sample ({int(mask.sum())}), got {value.shape[0]}"
                        )
                    out[f"{prefix}metric:{name}"][mask.cpu()] = value.cpu()
        return out


_ONESTEP_CHUNK = 2048  # samples per one-step forward pass: long horizons make (B·H) large


@torch.no_grad()
def evaluate_batch(
    step: Step,
    traj: torch.Tensor,
    params: torch.Tensor,
    dt: torch.Tensor,
    *,
    context_frames: int,
    horizon: int,
    plugins: PluginMetrics | None = None,
    task: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-sample errors of a model and of persistence on a batch of trajectories (B, T, C, *grid).

    Returns `nrmse` (B,), `rollout_steps` (B, H), `corr_steps` (B, H), `band_<b>` (B,) and `persistence_*` of
    each (means over channels); with several channels also `channel_nrmse` and `channel_rollout` (B, C) and their
    `persistence_*`; with `plugins`, `metric:<name>` and `persistence_metric:<name>` (B,) of each plugin metric.
    """
    dims = traj.ndim - 3
    start = traj[:, context_frames - 1]  # (B, C, *grid): the last given frame
    target = traj[:, context_frames : context_frames + horizon]  # (B, H, C, *grid)
    b, h = target.shape[:2]

    # one step from true states, over the same window the rollout covers
    inputs = traj[:, context_frames - 1 : context_frames - 1 + horizon]  # (B, H, C, *grid)
    flat = inputs.reshape(b * h, *inputs.shape[2:])
    flat_params, flat_dt = params.repeat_interleave(h, dim=0), dt.repeat_interleave(h, dim=0)
    one = torch.cat(
        [
            step(
                flat[i : i + _ONESTEP_CHUNK],
                flat_params[i : i + _ONESTEP_CHUNK],
                flat_dt[i : i + _ONESTEP_CHUNK],
            )
            for i in range(0, b * h, _ONESTEP_CHUNK)
        ]
    ).reshape_as(target)

    preds = []
    u = start
    for _ in range(horizon):
        u = step(u, params, dt)
        preds.append(u)
    rollout = torch.stack(preds, dim=1)  # (B, H, C, *grid)
    still = start.unsqueeze(1).expand_as(target)  # (B, H, C, *grid): persistence

    out: dict[str, torch.Tensor] = {"dt": dt.double()}
    for prefix, first, pred in (("", one, rollout), ("persistence_", inputs, still)):
        one_c = channel_nrmse(first, target, dims)  # (B, H, C)
        roll_c = channel_nrmse(pred, target, dims)  # (B, H, C)
        out[f"{prefix}nrmse"] = one_c.mean(dim=-1).mean(dim=1)
        out[f"{prefix}rollout_steps"] = roll_c.mean(dim=-1)
        out[f"{prefix}corr_steps"] = pearson(pred, target, dims)
        for band, v in band_nrmse(pred, target, dims).items():
            out[f"{prefix}band_{band}"] = v.mean(dim=1)
        if target.shape[2] > 1:
            out[f"{prefix}channel_nrmse"] = one_c.mean(dim=1)
            out[f"{prefix}channel_rollout"] = roll_c.mean(dim=1)
    if plugins:
        task = task if task is not None else torch.zeros(b, dtype=torch.long)
        out.update(plugins.compute(rollout, still, target, start, params, dt, task))
    return out


def summarize(
    per_sample: dict[str, torch.Tensor], horizons: list[int], channels: tuple[str, ...] = ()
) -> dict[str, float]:
    """Per-sample errors (concatenated over batches) → the platform's metric names (without the split prefix);
    with several `channels`, also `nrmse.<channel>` and `rollout_nrmse.<channel>` (and their persistence)."""
    metrics: dict[str, float] = {}
    for prefix in ("", "persistence_"):
        if f"{prefix}channel_nrmse" in per_sample and len(channels) > 1:
            for c, name in enumerate(channels):
                metrics[f"{prefix}nrmse.{name}"] = per_sample[f"{prefix}channel_nrmse"][:, c].mean().item()
                metrics[f"{prefix}rollout_nrmse.{name}"] = (
                    per_sample[f"{prefix}channel_rollout"][:, c].mean().item()
                )
        steps = per_sample[f"{prefix}rollout_steps"]  # (B, H)
        metrics[f"{prefix}nrmse"] = per_sample[f"{prefix}nrmse"].mean().item()
        metrics[f"{prefix}rollout_nrmse"] = steps.mean().item()
        for h in horizons:
            metrics[f"{prefix}rollout_nrmse@{h}"] = steps[:, h - 1].mean().item()
        for band in BAND_EDGES:
            metrics[f"{prefix}nrmse_band_{band}"] = per_sample[f"{prefix}band_{band}"].mean().item()
        # DESIGN: the mean correlation curve over samples crosses the threshold; in the family's time units
        curve = per_sample[f"{prefix}corr_steps"].mean(dim=0)  # (H,)
        metrics[f"{prefix}corr_time"] = steps_above(curve).item() * per_sample["dt"].mean().item()
        if prefix == "":
            metrics["corr_time_censored"] = float(bool((curve >= CORR_THRESHOLD).all()))
        for key, values in per_sample.items():
            if key.startswith(f"{prefix}metric:"):
                metrics[prefix + key.split(":", 1)[1]] = values.mean().item()
    return metrics


def summarize_tasks(
    per_sample: dict[str, torch.Tensor],
    horizons: list[int],
    task_names: list[str],
    channels: tuple[str, ...] = (),
) -> dict[str, float]:
    """Like `summarize`, plus `<task>/<name>` per task; the un-prefixed value is then the unweighted mean over
    tasks (DESIGN.md), not the mean over samples."""
    values = {k: v for k, v in per_sample.items() if k != "task"}
    if not task_names:
        return summarize(values, horizons, channels)
    out: dict[str, float] = {}
    per_task = []
    for k, name in enumerate(task_names):
        mask = per_sample["task"] == k
        if not bool(mask.any()):
            raise ValueError(f"task {name!r} has no samples in this split")
        m = summarize({key: v[mask] for key, v in values.items()}, horizons, channels)
        per_task.append(m)
        out.update({f"{name}/{key}": v for key, v in m.items()})
    for key in per_task[0]:
        out[key] = sum(m[key] for m in per_task) / len(per_task)
    return out


def per_sample_metric(
    per_sample: dict[str, torch.Tensor], name: str, task_names: list[str] | None = None
) -> torch.Tensor:
    """One value per sample for a metric name (split prefix optional), e.g. `test/rollout_nrmse@10` → (B,);
    `test/<task>/...` keeps that task's samples only."""
    parts = name.split("/")
    if len(parts) == 3 and task_names:
        mask = per_sample["task"] == task_names.index(parts[1])
        per_sample = {k: v[mask] for k, v in per_sample.items()}
    name = parts[-1]
    prefix = "persistence_" if name.startswith("persistence_") else ""
    base = name.removeprefix("persistence_")
    if base.startswith("rollout_nrmse@"):
        return per_sample[f"{prefix}rollout_steps"][:, int(base.split("@")[1]) - 1]
    if base == "rollout_nrmse":
        return per_sample[f"{prefix}rollout_steps"].mean(dim=1)
    if base == "nrmse":
        return per_sample[f"{prefix}nrmse"]
    if base == "corr_time":
        return steps_above(per_sample[f"{prefix}corr_steps"]) * per_sample["dt"]
    if base.startswith("nrmse_band_"):
        return per_sample[f"{prefix}band_{base.removeprefix('nrmse_band_')}"]
    if f"{prefix}metric:{base}" in per_sample:
        return per_sample[f"{prefix}metric:{base}"]
    raise KeyError(name)
