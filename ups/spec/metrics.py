"""Metric names a stage produces (DESIGN.md, Metrics), and which way each is better, so specs can be checked
before anything runs."""

from __future__ import annotations

from ups.spec.schema import Spec

SPLITS = ("val", "test")
BANDS = ("low", "mid", "high")

HIGHER_IS_BETTER = (
    "corr_time",
    "gain_corr_time",
    "gain_kept_rollout_nrmse",
    "gain_kept_corr_time",
    "speedup",
)
"""Base names (the last part of `split/[task/]name`) that are maximized; every other metric is an error."""


def report_horizons(spec: Spec) -> list[int]:
    """Steps reported as `rollout_nrmse@h`: the configured ones plus the final step, sorted."""
    return sorted(set(spec.eval.report_horizons) | {spec.eval.horizon})


def trajectory_metric_names(spec: Spec) -> list[str]:
    """What every time-stepping predictor is scored on (without persistence)."""
    names = ["nrmse", "rollout_nrmse"]
    names += [f"rollout_nrmse@{h}" for h in report_horizons(spec)]
    names += [f"nrmse_band_{b}" for b in BANDS]
    return [*names, "corr_time"]


def base_metric_names(spec: Spec) -> list[str]:
    """The stage's own metric names without split or task prefix (baselines included)."""
    from ups.training.stages import stage_of

    return stage_of(spec).metric_names(spec)


def metric_names(spec: Spec, split: str) -> list[str]:
    """Every `<split>/...` metric the spec's stage logs, baselines included; with several tasks, also
    `<split>/<task>/...` for each (the un-prefixed names are the unweighted mean over tasks)."""
    base = base_metric_names(spec)
    prefixes = [""] + [f"{task}/" for task in spec.data.task_names()]
    return [f"{split}/{p}{n}" for p in prefixes for n in base]


def sweep_direction(spec: Spec) -> str:
    return spec.sweep.direction or direction(spec.sweep.metric)


def select_direction(spec: Spec) -> str:
    return spec.registry.select_direction or direction(spec.registry.select_metric)


def direction(name: str) -> str:
    """`maximize` or `minimize` for a metric name with or without its split/task prefix."""
    base = name.rsplit("/", 1)[-1].removeprefix("persistence_")
    base = base.removeprefix("operator_").removeprefix("teacher_")
    return "maximize" if base in HIGHER_IS_BETTER else "minimize"
