"""End-to-end `run` on a tiny spec: tracking identity, artifacts, PDEBench files, nothing in $HOME."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import mlflow_client, mlflow_runs

from ups.run.single import run_spec, summary
from ups.spec.load import load_spec


def test_run_is_tracked_in_mlflow_and_wandb_with_one_identity(workspace, tiny_spec):
    result = run_spec(load_spec(tiny_spec, ["train.max_epochs=10"]), progress_bar=False)
    for split in ("val", "test"):
        for name in ("nrmse", "rollout_nrmse", "rollout_nrmse@5", "nrmse_band_high"):
            assert np.isfinite(result.metrics[f"{split}/{name}"])
            assert np.isfinite(result.metrics[f"{split}/persistence_{name}"])
        # 20 steps of training beat "no change" clearly, one step ahead and over the rollout
        m = result.metrics
        assert m[f"{split}/nrmse"] < 0.8 * m[f"{split}/persistence_nrmse"], m
        assert m[f"{split}/rollout_nrmse"] < 0.6 * m[f"{split}/persistence_rollout_nrmse"], m

    assert result.stopped_by is None and result.steps == result.planned_steps > 0  # the step budget ran out
    printed = result.to_json()  # what --json prints: the model's size and speed too (tracking on or off)
    assert printed["model"]["model/num_params"] > 0 and printed["model"]["model/rollout_ms"] > 0
    assert printed["wall_seconds"] > 0

    # the coarse numerical solve, next to persistence: a cheap solve of Burgers beats "no change" by far
    for split in ("val", "test"):
        solver = result.metrics[f"{split}/solver_rollout_nrmse"]
        assert 0 < solver < 0.5 * result.metrics[f"{split}/persistence_rollout_nrmse"]
        assert result.metrics[f"{split}/solver_rollout_ms"] > 0
    assert "test/rollout_nrmse next to the coarse solver (4x coarser grid)" in summary(result)

    runs = mlflow_runs(workspace, "tiny")
    assert [r.info.run_id for r in runs] == [result.run_id]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.003" and run.data.params["data.num_trajectories"] == "40"
    for key in (
        "test/nrmse",
        "test/rollout_nrmse",
        "test/persistence_nrmse",
        "test/persistence_rollout_nrmse",
        "val/rollout_nrmse_at_5",
        "test/solver_rollout_nrmse",
        "test/solver_rollout_ms",
    ):
        assert key in run.data.metrics, key
    assert run.data.metrics["test/rollout_nrmse"] == pytest.approx(result.metrics["test/rollout_nrmse"])
    assert run.data.tags["wandb.run_id"] == result.run_id
    assert len(run.data.tags["ups.data_fingerprint"]) == 16
    assert run.data.tags["mlflow.source.git.commit"]
    artifacts = {a.path for a in mlflow_client(workspace).list_artifacts(result.run_id)}
    assert {"spec.yaml", "rollout_test.png", "error_growth_test.png", "checkpoints"} <= artifacts
    assert str(workspace / "mlartifacts") in run.info.artifact_uri

    wandb_runs = list((workspace / "wandb").glob(f"offline-run-*-{result.run_id}"))
    assert len(wandb_runs) == 1
    assert not any(Path(str(workspace.parent / "user_home")).iterdir()), "something was written to $HOME"


def test_tracking_none_writes_no_tracking_files(workspace, tmp_path):
    from conftest import write_tiny_spec

    spec = write_tiny_spec(tmp_path, name="quiet", epochs=1, tracking="none")
    result = run_spec(load_spec(spec), progress_bar=False)
    assert not (workspace / "mlflow.db").exists() and not (workspace / "wandb").exists()
    assert Path(result.checkpoint).is_file()


def test_a_pdebench_file_trains_through_data_path(workspace, tmp_path, tiny_spec):
    """A PDEBench-layout file (finer grid and frames, ν only in the file name) trains with no other change."""
    from ups.data.burgers import generate_burgers
    from ups.data.pdebench import write_pdebench

    fine = generate_burgers(
        nu=0.01, num_trajectories=40, num_points=128, num_frames=101, dt=0.01, solver_points=256, seed=3
    )
    path = tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5"
    attrs = {k: v for k, v in fine.attrs.items() if k != "Nu"}
    write_pdebench(path, tensor=fine.tensor, x=fine.x, t=fine.t, attrs=attrs)
    resolved = load_spec(tiny_spec, [f"data.path={path}", "data.nu=null", "train.max_epochs=1"])
    result = run_spec(resolved, progress_bar=False)
    assert np.isfinite(result.metrics["test/rollout_nrmse"])
    run = mlflow_client(workspace).get_run(result.run_id)
    assert run.data.params["data.path"] == str(path)


def test_a_run_cut_short_by_max_time_says_so(workspace, tiny_spec):
    result = run_spec(
        load_spec(tiny_spec, ["train.max_time_minutes=0.0001", "train.max_epochs=50"]), progress_bar=False
    )
    assert result.stopped_by == "max_time"
    assert 0 < result.steps < result.planned_steps
    assert result.to_json()["stopped_by"] == "max_time"
    assert f"stopped training after {result.steps} of {result.planned_steps} steps" in summary(result)
    tags = mlflow_runs(workspace, "tiny")[0].data.tags
    assert tags["ups.stopped_by"] == "max_time" and tags["ups.planned_steps"] == str(result.planned_steps)
