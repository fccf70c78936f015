"""A tiny multi-task run: every task's metrics (and the aggregate) reach MLflow."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import mlflow_client

from ups.run.single import run_spec
from ups.spec import SpecError
from ups.spec.load import load_spec

SPEC = """\
name: multi
data:
  tasks:
    - {name: burgers, from: burgers1d, nu: 0.05, num_trajectories: 24, num_points: 64, num_frames: 21, generator: {solver_points: 128}, weight: 2.0}
    - {name: advection, from: advection1d, beta: 0.4, num_trajectories: 24, num_points: 64, num_frames: 21, generator: {solver_points: 128}}
    - {name: reacdiff, from: reaction_diffusion1d, nu: 0.5, rho: 1.0, num_trajectories: 24, num_points: 64, num_frames: 21, generator: {solver_points: 128}}
model: operator_tiny
train: {max_epochs: 2, batch_size: 16, unroll_steps: 2, batches_per_epoch: 5}
eval: {context_frames: 5, horizon: 10, report_horizons: [1, 5]}
"""


def test_per_task_metrics_exist_for_every_task(workspace, tmp_path):
    spec = tmp_path / "multi.yaml"
    spec.write_text(SPEC)
    result = run_spec(load_spec(spec), progress_bar=False)
    run = mlflow_client(workspace).get_run(result.run_id)
    tasks = ("burgers", "advection", "reacdiff")
    for split in ("val", "test"):
        for task in tasks:
            for name in ("nrmse", "rollout_nrmse", "persistence_rollout_nrmse", "rollout_nrmse_at_5"):
                assert f"{split}/{task}/{name}" in run.data.metrics, (split, task, name)
        mean = np.mean([result.metrics[f"{split}/{t}/rollout_nrmse"] for t in tasks])
        assert result.metrics[f"{split}/rollout_nrmse"] == pytest.approx(mean)  # unweighted mean over tasks
    artifacts = {a.path for a in mlflow_client(workspace).list_artifacts(result.run_id)}
    assert "tasks_test.png" in artifacts
    assert run.data.params["data.tasks"]  # the resolved task list is logged


def test_task_errors_name_the_task(tmp_path):
    spec = tmp_path / "multi.yaml"
    spec.write_text(SPEC.replace("from: advection1d", "from: advektion1d"))
    with pytest.raises(
        SpecError,
        match=r"data.tasks.1.from: unknown data block; got 'advektion1d'. Did you mean 'advection1d'\?",
    ):
        load_spec(spec)
    spec.write_text(SPEC.replace("name: advection", "name: burgers"))
    with pytest.raises(SpecError, match="data.tasks.1.name: task names must be unique"):
        load_spec(spec)
    spec.write_text(SPEC)
    with pytest.raises(
        SpecError, match="train.checkpoint_metric: not a metric.*got 'val/burger/rollout_nrmse'"
    ):
        load_spec(spec, ["train.checkpoint_metric=val/burger/rollout_nrmse"])
    assert load_spec(spec, ["train.checkpoint_metric=val/reacdiff/rollout_nrmse"])
