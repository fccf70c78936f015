"""Metric names a stage produces (DESIGN.md, Metrics), so specs can be checked before anything runs."""

from __future__ import annotations

from ups.spec.schema import Spec

SPLITS = ("val", "test")
BANDS = ("low", "mid", "high")


def report_horizons(spec: Spec) -> list[int]:
    """Steps reported as `rollout_nrmse@h`: the configured ones plus the final step, sorted."""
    return sorted(set(spec.eval.report_horizons) | {spec.eval.horizon})


def base_metric_names(spec: Spec) -> list[str]:
    names = ["nrmse", "rollout_nrmse"]
    names += [f"rollout_nrmse@{h}" for h in report_horizons(spec)]
    names += [f"nrmse_band_{b}" for b in BANDS]
    return names


def metric_names(spec: Spec, split: str) -> list[str]:
    """Every `<split>/...` metric the spec's stage logs, persistence baselines included; with several tasks,
    also `<split>/<task>/...` for each (the un-prefixed names are the unweighted mean over tasks)."""
    base = base_metric_names(spec)
    names = base + [f"persistence_{n}" for n in base]
    prefixes = [""] + [f"{task}/" for task in spec.data.task_names()]
    return [f"{split}/{p}{n}" for p in prefixes for n in names]
