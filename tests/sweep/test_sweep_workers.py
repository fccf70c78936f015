"""Sweep processes: parallel workers, a worker killed with SIGKILL, PostgreSQL-backed studies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, postgres_url, subprocess_env, sweep_spec

from ups.spec.load import load_spec
from ups.sweep.driver import run_sweep

TERMINAL = {"COMPLETE", "PRUNED", "FAIL"}


def _env(home: Path) -> dict:
    env = subprocess_env(home, OMP_NUM_THREADS="1")
    env.pop("UPS_RUN_ID", None)
    return env


def _check_accounted(study: optuna.Study, target: int) -> None:
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states and "WAITING" not in states, states
    assert set(states) <= TERMINAL
    assert sum(s in ("COMPLETE", "PRUNED") for s in states) >= target
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))


def test_two_workers_share_one_study_without_duplicates(workspace, tmp_path):
    spec = sweep_spec(tmp_path, name="pair", trials=6, epochs=2, pruner="none", sampler="random")
    result = run_sweep(load_spec(spec), workers=2)
    study = optuna.load_study(study_name="pair", storage=f"sqlite:///{workspace / 'optuna.db'}")
    _check_accounted(study, 6)
    assert result.trials["complete"] >= 6
    assert len(study.trials) <= 6 + 1  # overshoot is bounded by workers - 1
    workers = {t.user_attrs["worker"] for t in study.trials}  # host:pid of the process that ran it
    assert 1 <= len(workers) <= 2 and all(w.split(":")[-1].isdigit() for w in workers), workers


@pytest.mark.slow  # a multi-process run: .ci/run runs it
def test_sigkilled_worker_trial_is_failed_and_retried(tmp_path):
    home = tmp_path / "home"
    spec = sweep_spec(tmp_path, name="killed", trials=2, epochs=60, pruner="none", sampler="random")
    cmd = [
        sys.executable,
        "-m",
        "ups.cli",
        "sweep",
        str(spec),
        "sweep.heartbeat_seconds=1",
        "sweep.grace_seconds=3",
    ]
    proc = subprocess.Popen(
        cmd,
        env=_env(home),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    storage = f"sqlite:///{home / 'optuna.db'}"
    deadline = time.time() + 180
    running = None
    while running is None:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="killed", storage=storage)
            running = next((t for t in study.trials if t.state.name == "RUNNING"), None)
        except Exception:  # the storage or study does not exist yet
            continue
    time.sleep(1.5)  # mid-trial: training has started
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="killed", storage=storage)
    assert [t.state.name for t in study.trials].count("RUNNING") == 1
    time.sleep(4)  # let the heartbeat go stale (grace 3 s)

    again = subprocess.run(cmd, env=_env(home), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="killed", storage=storage)
    _check_accounted(study, 2)
    stale = study.trials[running.number]
    assert stale.state.name == "FAIL"
    # retried by ups at once (its pid is gone on this machine) or by Optuna once the heartbeat is stale
    retries = [
        t
        for t in study.trials
        if running.number
        in (
            t.user_attrs.get("ups.retry_of"),
            optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t),
        )
    ]
    assert len(retries) == 1 and retries[0].params == stale.params and retries[0].state.name == "COMPLETE"


@pytest.mark.postgres
def test_postgres_study_with_two_workers(workspace, tmp_path):
    url = postgres_url()
    name = f"pg-{uuid.uuid4().hex[:8]}"
    spec = sweep_spec(tmp_path, name=name, trials=4, epochs=2, pruner="none", sampler="random")
    result = run_sweep(load_spec(spec), workers=2, storage=url)
    assert "***" in result.storage or "@" not in result.storage  # the password is never printed
    study = optuna.load_study(study_name=name, storage=url)
    _check_accounted(study, 4)
    assert result.trials["complete"] >= 4


def test_workers_get_the_storage_url_through_their_environment_not_argv(tmp_path, monkeypatch):
    from ups.sweep import driver

    seen = {}

    class FakePopen:
        def __init__(self, cmd, env):
            seen["cmd"], seen["env"] = cmd, env

    monkeypatch.setattr(driver.subprocess, "Popen", FakePopen)
    url = "postgresql://ups:canary-Pa55word@127.0.0.1:5432/optuna"
    override = "tracking.mlflow.uri=postgresql://u:over/ride-Pw@127.0.0.1:5432/mlflow"
    resolved = load_spec(sweep_spec(tmp_path, name="argv"), [override, "train.lr=0.002"])
    driver._spawn_worker(resolved, url, "argv", target=4, index=1, threads=1)
    assert not any("canary-Pa55word" in part or "ride-Pw" in part for part in seen["cmd"])
    assert "--storage" not in seen["cmd"] and not any("=" in part for part in seen["cmd"])  # no override
    assert seen["env"][driver.STORAGE_ENV] == url
    # the overrides (and the worker's thread share) reach it through its environment, in order
    from ups.spec.overrides import OVERRIDES_ENV

    assert json.loads(seen["env"][OVERRIDES_ENV]) == [override, "train.lr=0.002", "hardware.num_threads=1"]
    # and the worker reads it back; --storage still wins
    monkeypatch.setenv(driver.STORAGE_ENV, url)
    assert driver.storage_url(None, "sqlite:///configured.db", tmp_path) == url
    assert driver.storage_url("sqlite:///given.db", None, tmp_path) == "sqlite:///given.db"


def test_workers_split_the_visible_gpus(tmp_path, monkeypatch):
    """`--workers N` with a GPU profile: each worker sees its own `hardware.devices` GPUs (faked device list)."""
    from ups.spec.errors import SpecError
    from ups.sweep import driver

    monkeypatch.setenv("UPS_FAKE_GPUS", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6,7")
    path = sweep_spec(tmp_path, name="gpus")
    assert driver.worker_gpus(load_spec(path, ["hardware=2gpu_ddp"]), 2) == ["3,5", "6,7"]
    assert driver.worker_gpus(load_spec(path, ["hardware=1gpu"]), 4) == ["3", "5", "6", "7"]
    assert driver.worker_gpus(load_spec(path), 2) is None  # CPU: threads only
    with pytest.raises(SpecError, match=r"--workers 3 with 2 GPU\(s\) per trial needs 6 GPUs; 4 are visible"):
        driver.worker_gpus(load_spec(path, ["hardware=2gpu_ddp"]), 3)

    seen = {}

    class FakePopen:
        def __init__(self, cmd, env):
            seen["env"] = env

    monkeypatch.setattr(driver.subprocess, "Popen", FakePopen)
    resolved = load_spec(path, ["hardware=2gpu_ddp"])
    driver._spawn_worker(resolved, "sqlite:///x.db", "gpus", target=4, index=1, threads=1, gpus="6,7")
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "6,7"
