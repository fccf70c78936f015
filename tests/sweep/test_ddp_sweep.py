"""Sweeps whose trials use several devices (`cpu_ddp2`): each trial runs in its own torchrun launcher, rank 0 alone
talks to Optuna and the trackers, the prune decision reaches every rank, and a failing rank ends the trial FAILED."""

from __future__ import annotations

import time
import uuid

import optuna
import pytest
from conftest import mlflow_runs, postgres_url, sweep_spec

from ups.spec.load import load_spec
from ups.sweep.driver import SweepFailed, run_sweep


def _ddp_sweep(tmp_path, name: str, **kw):
    return sweep_spec(tmp_path, name=name, trials=2, epochs=3, tracking="local", sampler="random", **kw)


def _prunes_both(workspace, spec, storage: str, name: str) -> int:
    """Checks the sweep pruned both trials on every rank; returns how many trials were pruned."""
    started = time.monotonic()
    result = run_sweep(load_spec(spec, ["hardware=cpu_ddp2", "sweep.threshold=0.01"]), storage=storage)
    assert time.monotonic() - started < 300  # never hangs
    assert result.trials == {"complete": 0, "pruned": 2, "failed": 0}
    study = optuna.load_study(study_name=name, storage=storage)
    for t in study.trials:
        assert t.state.name == "PRUNED"
        # pruned after the first validation on every rank: one report, and no rank trained on
        assert list(t.intermediate_values) == [0], t.intermediate_values
        assert t.user_attrs["mlflow_run_id"], t.user_attrs  # rank 0 recorded its run
    runs = {r.info.run_id: r for r in mlflow_runs(workspace, name)}
    trials = [r for r in runs.values() if r.data.tags.get("ups.role") != "sweep"]
    assert len(trials) == 2, "one tracked run per trial (rank 0's), not one per rank"
    assert {r.info.run_id for r in trials} == {t.user_attrs["mlflow_run_id"] for t in study.trials}
    assert all(r.info.status == "KILLED" and r.data.tags["ups.trial_state"] == "PRUNED" for r in trials)
    return result.trials["pruned"]


@pytest.mark.slow  # a multi-process run: .ci/run runs it
def test_cpu_ddp2_sweep_prunes_on_every_rank(workspace, tmp_path):
    spec = _ddp_sweep(tmp_path, "ddpsweep", pruner="threshold")
    assert _prunes_both(workspace, spec, f"sqlite:///{workspace / 'optuna.db'}", "ddpsweep") == 2


@pytest.mark.postgres
def test_cpu_ddp2_sweep_prunes_with_postgres(workspace, tmp_path):
    url = postgres_url()
    name = f"ddppg{uuid.uuid4().hex[:8]}"
    assert _prunes_both(workspace, _ddp_sweep(tmp_path, name, pruner="threshold"), url, name) == 2


def test_a_failing_rank_fails_the_trial_with_its_reason_and_no_retry(workspace, tmp_path, monkeypatch):
    """Rank 1 alone runs out of memory (hardware.oom=fail): both ranks stop with the OOM, and the trial is FAILED with
    reason `oom`, within a bounded time, and not queued again."""
    monkeypatch.setenv("UPS_SIMULATE_OOM", "at=1,rank=1")
    spec = _ddp_sweep(tmp_path, "ddpfail", pruner="none")
    started = time.monotonic()
    with pytest.raises(SweepFailed, match="1 trials failed"):
        run_sweep(load_spec(spec, ["hardware=cpu_ddp2", "sweep.max_failures=1"]))
    assert time.monotonic() - started < 300
    study = optuna.load_study(study_name="ddpfail", storage=f"sqlite:///{workspace / 'optuna.db'}")
    assert [(t.state.name, t.user_attrs.get("fail_reason")) for t in study.trials] == [("FAIL", "oom")]
    (run,) = [r for r in mlflow_runs(workspace, "ddpfail") if r.data.tags.get("ups.role") != "sweep"]
    assert run.info.status == "FAILED" and run.data.tags["ups.trial_state"] == "FAIL"
