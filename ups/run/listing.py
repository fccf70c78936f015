"""`ups-exp runs [SPEC | --experiment NAME] [--sort METRIC] [--limit N] [--json]`: an experiment's runs from MLflow,
as a table (run id, stage, model kind, status, start, key metrics next to persistence). Read-only: a store that
does not exist yet is one line, and nothing is created."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from ups.spec.errors import SpecError

HEADLINES = ("rollout_nrmse", "corr_time", "nrmse")
"""Metrics shown when `--sort` names none, the first a run has (test split, else val)."""


@dataclass
class RunRow:
    run_id: str
    run_name: str
    experiment: str
    role: str
    """The stage's kind, or `pipeline` / `sweep` for a parent run."""
    model: str
    status: str
    start: float
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "run_name": self.run_name,
            "experiment": self.experiment,
            "stage": self.role,
            "model": self.model,
            "status": self.status,
            "start": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.start)),
            "metrics": self.metrics,
            "init_from": self.tags.get("ups.init_from"),
            "upstream": self.tags.get("ups.upstream"),
            "study": self.tags.get("ups.study"),
        }


def _canonical(name: str) -> str:
    """MLflow stores `@` as `_at_` (ups.tracking.session.mlflow_metric_name): back to the metric's own name."""
    return name.replace("_at_", "@")


def list_runs(client, experiments: list[str]) -> list[RunRow]:
    rows = []
    for name in experiments:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            continue
        for run in client.search_runs([exp.experiment_id], max_results=5000):
            tags, params = run.data.tags, run.data.params
            role = tags.get("ups.role") or tags.get("ups.stage") or params.get("stage.kind", "-")
            rows.append(
                RunRow(
                    run_id=run.info.run_id,
                    run_name=run.info.run_name or "",
                    experiment=name,
                    role=role,
                    model=params.get("model.kind", "-"),
                    status=run.info.status,
                    start=(run.info.start_time or 0) / 1000,
                    metrics={_canonical(k): v for k, v in run.data.metrics.items()},
                    tags={k: v for k, v in tags.items() if k.startswith("ups.")},
                )
            )
    return rows


def _direction(metric: str) -> str:
    from ups.spec.metrics import direction

    try:
        return direction(metric)
    except (SpecError, KeyError, ValueError):
        return "minimize"


def sort_rows(rows: list[RunRow], metric: str | None) -> list[RunRow]:
    """Best first by `metric` in its own direction (runs without it last), else newest first."""
    if metric is None:
        return sorted(rows, key=lambda r: -r.start)
    sign = -1.0 if _direction(metric) == "maximize" else 1.0

    def key(r: RunRow):
        v = r.metrics.get(metric)
        missing = v is None or (isinstance(v, float) and math.isnan(v))
        return (missing, sign * v if not missing else 0.0, -r.start)

    return sorted(rows, key=key)


def shown_metrics(rows: list[RunRow], metric: str | None) -> list[str]:
    """The metric columns: `metric` (and its other split) or the first headline any run has, each next to its
    persistence value where the runs logged one."""
    if metric is not None:
        split, _, name = metric.partition("/")
        other = {"val": "test", "test": "val"}.get(split)
        names = [metric, *([f"{other}/{name}"] if other else [])]
    else:
        have = {k for r in rows for k in r.metrics}
        names = next(
            ([f"test/{h}", f"val/{h}"] for h in HEADLINES if f"test/{h}" in have or f"val/{h}" in have), []
        )
    columns = []
    for n in names:
        split, _, name = n.partition("/")
        columns.append(n)
        baseline = f"{split}/persistence_{name}"
        if any(baseline in r.metrics for r in rows):
            columns.append(baseline)
    return columns


def table(rows: list[RunRow], columns: list[str]) -> str:
    head = ["run_id", "stage", "model", "status", "start", *columns]
    body = [
        [
            r.run_id,
            r.role,
            r.model,
            r.status,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r.start)),
            *(f"{r.metrics[c]:.4g}" if c in r.metrics else "-" for c in columns),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(line.rstrip() for line in lines)
