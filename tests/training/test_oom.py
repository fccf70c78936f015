"""`hardware.oom`: a simulated out-of-memory (UPS_SIMULATE_OOM) in one process and under `cpu_ddp2`, where only
rank 1 runs out of memory and both ranks must take the same decision."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, mlflow_client, mlflow_runs, subprocess_env, write_tiny_spec

from ups.data.batches import MicroBatches
from ups.run.single import run_spec
from ups.spec.load import load_spec
from ups.training.oom import OutOfMemory, Simulation


def test_micro_batches_shrink_mid_epoch_and_cover_every_index_once():
    batches = MicroBatches(list(range(50)), 16)
    assert len(batches) == 4
    seen, it = [], iter(batches)
    seen.append(next(it))
    batches.size = 4  # halved twice after the first batch
    seen.extend(it)
    assert [len(b) for b in seen] == [16] + [4] * 8 + [2]
    assert sorted(i for b in seen for i in b) == list(range(50))
    assert len(batches) == 13


def test_simulation_spec_errors_name_the_variable(monkeypatch):
    monkeypatch.setenv("UPS_SIMULATE_OOM", "above=8,when=3")
    with pytest.raises(
        ValueError, match=r"UPS_SIMULATE_OOM='above=8,when=3': expected comma-separated above=N"
    ):
        Simulation.from_env()
    monkeypatch.setenv("UPS_SIMULATE_OOM", "above=8,rank=1")
    sim = Simulation.from_env()
    sim.check(16, 0, rank=0)  # another rank: nothing
    with pytest.raises(torch.OutOfMemoryError):
        sim.check(16, 0, rank=1)
    sim.check(8, 0, rank=1)  # small enough


def _run(workspace, tmp_path, monkeypatch, simulate: str, *overrides: str):
    monkeypatch.setenv("UPS_SIMULATE_OOM", simulate)
    return run_spec(load_spec(write_tiny_spec(tmp_path, name="oom"), list(overrides)), progress_bar=False)


def test_halve_batch_keeps_the_global_batch_and_the_step_budget(workspace, tmp_path, monkeypatch, caplog):
    result = _run(workspace, tmp_path, monkeypatch, "above=8", "hardware.oom=halve_batch")
    halvings = [r.getMessage() for r in caplog.records if "micro-batch" in r.getMessage()]
    assert len(halvings) == 2 and "micro-batch 8, gradient accumulation 4" in halvings[-1], halvings
    # 32 windows per step as 4 micro-batches of 8: the epoch has as many optimizer steps as planned
    assert result.steps == result.planned_steps == 38
    # validation keeps to once per epoch (Lightning's val_check_batch follows the doubled epoch)
    (run,) = mlflow_runs(workspace, "oom")
    history = mlflow_client(workspace).get_metric_history(run.info.run_id, "val/rollout_nrmse")
    assert len(history) == 2, [h.step for h in history]
    m = result.metrics
    assert m["test/rollout_nrmse"] < m["test/persistence_rollout_nrmse"], "it still trained"


def test_skip_batch_skips_one_step_and_trains_on(workspace, tmp_path, monkeypatch, caplog):
    result = _run(workspace, tmp_path, monkeypatch, "at=3", "hardware.oom=skip_batch")
    skipped = [r.getMessage() for r in caplog.records if "step skipped" in r.getMessage()]
    assert skipped == ["out of memory at training batch 3: step skipped (hardware.oom=skip_batch)"]
    assert result.steps == result.planned_steps
    assert result.metrics["test/rollout_nrmse"] < result.metrics["test/persistence_rollout_nrmse"]


def test_a_skipped_step_changes_no_parameter():
    """The skip path's zero loss still runs backward, then leaves every gradient empty: AdamW changes nothing."""
    from ups.training.oom import OOMGuard

    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1, weight_decay=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    guard = OOMGuard("skip_batch")
    loss = guard._skip(net, None)
    loss.backward()
    assert guard.after_closure(net) is True  # the closure then returns None: AMP's scaler skips its step
    assert guard.after_closure(net) is False  # the next step is not skipped
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_fail_policy_fails_the_run_with_the_reason(workspace, tmp_path, monkeypatch):
    with pytest.raises(OutOfMemory, match=r"hardware.oom=fail"):
        _run(workspace, tmp_path, monkeypatch, "at=2")
    (run,) = mlflow_runs(workspace, "oom")
    assert run.info.status == "FAILED" and "out of memory" in run.data.tags["ups.fail_reason"]


def test_halve_refuses_an_odd_micro_batch_that_would_change_the_global_batch(
    workspace, tmp_path, monkeypatch
):
    with pytest.raises(OutOfMemory, match="an odd micro-batch cannot halve and keep the global batch"):
        _run(workspace, tmp_path, monkeypatch, "above=2", "hardware.oom=halve_batch", "train.batch_size=24")


def test_halve_at_a_micro_batch_of_one_fails(workspace, tmp_path, monkeypatch):
    with pytest.raises(OutOfMemory, match="at a micro-batch of 1"):
        _run(workspace, tmp_path, monkeypatch, "above=0", "hardware.oom=halve_batch", "train.max_epochs=1")


@pytest.mark.slow  # a multi-process run: .ci/run runs it
@pytest.mark.parametrize(
    ("policy", "simulate", "says"),
    [
        ("halve_batch", "above=8,rank=1", "micro-batch 8, gradient accumulation 2"),
        ("skip_batch", "at=3,rank=1", "out of memory at training batch 3: step skipped"),
    ],
)
def test_cpu_ddp2_ranks_take_the_same_decision(tmp_path, policy, simulate, says):
    """Only rank 1 runs out of memory; both ranks log the decision and finish the planned steps (no hang)."""
    spec = write_tiny_spec(tmp_path, name="oomddp")
    env = subprocess_env(tmp_path / "home", UPS_SIMULATE_OOM=simulate)
    proc = subprocess.run(
        [sys.executable, "-m", "ups.cli", "run", str(spec), "hardware=cpu_ddp2", f"hardware.oom={policy}",
         "--json", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stderr + proc.stdout).count(says) == 2, "each rank took the decision"
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["steps"] == result["planned_steps"]
    assert result["metrics"]["test/rollout_nrmse"] < result["metrics"]["test/persistence_rollout_nrmse"]


@pytest.mark.slow  # a multi-process run: .ci/run runs it
def test_cpu_ddp2_fail_policy_records_the_oom_not_a_lost_peer(tmp_path):
    """Only rank 1 runs out of memory with `fail`: every rank stops with the reason, and rank 0 records it."""
    spec = write_tiny_spec(tmp_path, name="oomfail")
    env = subprocess_env(tmp_path / "home", UPS_SIMULATE_OOM="at=2,rank=1")
    proc = subprocess.run(
        [sys.executable, "-m", "ups.cli", "run", str(spec), "hardware=cpu_ddp2", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "out of memory in the training step on another rank (hardware.oom=fail)" in proc.stderr
    (run,) = mlflow_runs(tmp_path / "home", "oomfail")
    assert run.info.status == "FAILED"
    assert "out of memory" in run.data.tags["ups.fail_reason"], run.data.tags["ups.fail_reason"]
