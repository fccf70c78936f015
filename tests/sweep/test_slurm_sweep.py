"""`ups-exp sweep --launcher slurm`: worker jobs submitted through submitit (its local executor here) share one
study; the storage URL never reaches argv or the pickled jobs; a storage other nodes cannot reach is refused."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest
from conftest import mlflow_runs, postgres_database, sweep_spec

from ups.spec.errors import SpecError
from ups.spec.load import load_spec
from ups.sweep.driver import run_sweep


def _jobs_sweep(workspace, tmp_path, monkeypatch, name: str, storage: str):
    monkeypatch.setenv("UPS_SUBMITIT_CLUSTER", "local")
    spec = sweep_spec(
        tmp_path, name=name, trials=3, epochs=2, tracking="local", pruner="none", sampler="random"
    )
    result = run_sweep(load_spec(spec), storage=storage, workers=2, launcher="slurm")
    assert "UPS_SWEEP_STORAGE" not in os.environ, "the coordinator's environment is left as it was"
    study = optuna.load_study(study_name=name, storage=storage)
    # one study: 3 trials in total (at most workers - 1 = 1 more in flight at the end), not 3 per job
    assert result.trials["complete"] >= 3 and result.trials["failed"] == 0, result.trials
    assert sorted(t.number for t in study.trials) == list(range(len(study.trials))) and len(study.trials) <= 4
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    # each trial was run by a job's worker process, not by the coordinator
    assert all(str(t.user_attrs["worker"]).rpartition(":")[2] != str(os.getpid()) for t in study.trials)
    jobs = workspace / "sweeps" / name / "jobs"
    outs = sorted(jobs.glob("*_log.out"))
    assert len(outs) == 2, f"two worker jobs, got {[p.name for p in jobs.iterdir()]}"
    runs = [r for r in mlflow_runs(workspace, name) if r.data.tags.get("ups.role") != "sweep"]
    assert sorted(int(r.data.tags["ups.trial"]) for r in runs) == [t.number for t in study.trials]
    assert all(r.info.status == "FINISHED" for r in runs)
    return jobs


@pytest.mark.slow  # a multi-process run: .ci/run runs it
def test_slurm_launcher_local_executor_completes_trials_on_one_study(workspace, tmp_path, monkeypatch):
    jobs = _jobs_sweep(workspace, tmp_path, monkeypatch, "slurmlocal", f"sqlite:///{workspace / 'optuna.db'}")
    assert jobs == workspace / "sweeps" / "slurmlocal" / "jobs"


@pytest.mark.postgres
def test_slurm_launcher_shares_one_postgres_study_and_keeps_its_password_off_disk(
    workspace, tmp_path, monkeypatch
):
    secret = "jobPw5x9q"
    url = postgres_database(secret)
    jobs = _jobs_sweep(workspace, tmp_path, monkeypatch, "slurmpg", url)
    written = [p for p in jobs.rglob("*") if p.is_file()]
    assert any(p.suffix == ".pkl" for p in written), [p.name for p in written]
    leaked = [p.name for p in written if secret.encode() in p.read_bytes()]
    assert not leaked, f"the storage password is in {leaked}"


def test_slurm_launcher_refuses_a_storage_other_nodes_cannot_reach(workspace, tmp_path, monkeypatch):
    monkeypatch.delenv("UPS_SUBMITIT_CLUSTER", raising=False)
    spec = sweep_spec(tmp_path, name="slurmfile")
    with pytest.raises(SpecError, match="needs a storage server they all reach") as info:
        run_sweep(load_spec(spec), workers=2, launcher="slurm")
    assert "postgresql://" in str(info.value)
    assert not (workspace / "optuna.db").exists(), "refused before the study was made"


def test_slurm_launcher_skips_the_local_gpu_check(workspace, tmp_path):
    """The submitting host need not have the profile's GPUs: the jobs run where they are. (Stops at the storage.)"""
    spec = sweep_spec(tmp_path, name="slurmgpu")
    cmd = [sys.executable, "-m", "ups.cli", "sweep", str(spec), "hardware=1gpu", "--launcher", "slurm"]
    local = subprocess.run(cmd[:-2], capture_output=True, text=True, env={"UPS_FAKE_GPUS": "0", **_env()})
    assert local.returncode == 2 and "needs 1 GPU" in local.stderr
    slurm = subprocess.run(cmd, capture_output=True, text=True, env={"UPS_FAKE_GPUS": "0", **_env()})
    assert slurm.returncode == 2 and "needs a storage server" in slurm.stderr, slurm.stderr


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "UPS_SUBMITIT_CLUSTER"}


def test_a_preempted_worker_job_is_resubmitted_up_to_its_bound(tmp_path):
    """submitit's local executor stands in for SLURM: its job gets the signal SLURM sends before a preemption or
    the end of the job's time (here after 2 s), the worker is stopped and the job resubmitted with the same argv,
    at most `max_requeues` times (then it ends)."""
    import time

    import submitit

    from ups.sweep.slurm import WorkerJob

    starts = tmp_path / "starts.txt"
    script = f"import time; open({str(starts)!r}, 'a').write('start\\n'); time.sleep(120)"
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs", max_num_timeout=10)
    executor.update_parameters(timeout_min=4 / 60, signal_delay_s=2)
    job = executor.submit(WorkerJob(max_requeues=2), [sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while not job.done():
        assert time.monotonic() < deadline, "the job was resubmitted past its bound"
        time.sleep(0.2)
    assert starts.read_text().count("start") == 3  # the first run and two resubmissions
    assert "checkpoint function returned None" in job.stderr() + job.stdout()
