"""Metric names a stage produces, and which way each is better, so specs can be checked before anything runs.
Directions come from the catalogue's metric rows (a plugin's `fn.higher_is_better`)."""

from __future__ import annotations

from ups import catalog
from ups.spec.schema import Spec

SPLITS = ("val", "test")
BANDS = ("low", "mid", "high")


def report_horizons(spec: Spec) -> list[int]:
    """Steps reported as `rollout_nrmse@h`: the configured ones plus the final step, sorted."""
    return sorted(set(spec.eval.report_horizons) | {spec.eval.horizon})


def plugin_metrics(spec: Spec) -> list[catalog.MetricRow]:
    """The rows of `eval.metrics`, in order (a catalogue name or a `"pkg.module:fn"` path each)."""
    return [catalog.get("metrics", name) for name in spec.eval.metrics]


def plugin_metric_names(spec: Spec) -> list[str]:
    return [row.name for row in plugin_metrics(spec)]


def trajectory_metric_names(spec: Spec) -> list[str]:
    """What every time-stepping predictor is scored on (without persistence): the built-ins, then the plugins."""
    names = ["nrmse", "rollout_nrmse"]
    names += [f"rollout_nrmse@{h}" for h in report_horizons(spec)]
    names += [f"nrmse_band_{b}" for b in BANDS]
    return [*names, "corr_time", *plugin_metric_names(spec)]


def base_metric_names(spec: Spec) -> list[str]:
    """The stage's own metric names without split or task prefix (baselines included)."""
    row = catalog.get("stages", spec.stage.kind)
    return list(catalog.load(row.metric_names)(spec))


def metric_names(spec: Spec, split: str) -> list[str]:
    """Every `<split>/...` metric the spec's stage logs, baselines included; with several tasks, also
    `<split>/<task>/...` for each (the un-prefixed names are the unweighted mean over tasks)."""
    base = base_metric_names(spec)
    prefixes = [""] + [f"{task}/" for task in spec.data.task_names()]
    return [f"{split}/{p}{n}" for p in prefixes for n in base]


def sweep_direction(spec: Spec) -> str:
    return spec.sweep.direction or direction(spec.sweep.metric, spec)


def select_direction(spec: Spec) -> str:
    return spec.registry.select_direction or direction(spec.registry.select_metric, spec)


def direction(name: str, spec: Spec | None = None) -> str:
    """`maximize` or `minimize` for a metric name with or without its split/task prefix (a plugin metric's
    direction is its `higher_is_better`; with `spec`, `eval.metrics` paths are found by their names)."""
    base = name.rsplit("/", 1)[-1].removeprefix("persistence_")
    base = base.removeprefix("operator_").removeprefix("teacher_")
    if "@" in base:
        base = base.split("@")[0] + "@"
    rows = catalog.rows("metrics")
    if base in rows:
        return rows[base].direction()
    if spec is not None:
        for row in plugin_metrics(spec):
            if row.name == base:
                return row.direction()
    return "minimize"
