"""First use and unreachable stores: processes that open a fresh sqlite workspace at the same instant all get a
working MLflow store and Optuna storage (the schema is created once, under a lock beside the file), and a store
that does not answer is one line within a bounded wait, never minutes of retries."""

from __future__ import annotations

import subprocess
import sys
import time

from conftest import ROOT, subprocess_env, sweep_spec, write_tiny_spec

OPEN_AT_ONCE = (
    """
import os, sys, time
from pathlib import Path
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
from ups.tracking.session import connect
client = connect(sys.argv[2])
exp = client.get_experiment_by_name("race") or client.get_experiment(client.create_experiment("race"))
"""
    + """
from ups.spec.schema import SweepConfig
from ups.sweep.study import make_storage
make_storage(sys.argv[3], SweepConfig()).get_all_studies()
print("OK")
"""
)


def test_processes_opening_a_fresh_workspace_at_once_all_succeed(tmp_path):
    """Four processes open the same new MLflow sqlite file and Optuna sqlite file at the same moment."""
    home = tmp_path / "home"
    home.mkdir()
    go = tmp_path / "go"
    mlflow_uri, optuna_uri = f"sqlite:///{home / 'mlflow.db'}", f"sqlite:///{home / 'optuna.db'}"
    env = subprocess_env(home, MLFLOW_DISABLE_TELEMETRY="true")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT_ONCE, str(go), mlflow_uri, optuna_uri],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(4)
    ]
    time.sleep(8)  # every process has imported what it needs and waits for the signal
    go.touch()
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    failed = [err[-1500:] for code, out, err in results if code != 0 or "OK" not in out]
    assert not failed, "\n---\n".join(failed)


def test_a_run_whose_database_store_does_not_answer_is_one_line_within_the_bound(tmp_path):
    """MLflow alone retries a dead database for about 100 s; ups waits $UPS_STORE_WAIT_S (here 2 s), says so,
    and exits 1 with one line naming the store, its password masked."""
    home = tmp_path / "home"
    spec = write_tiny_spec(tmp_path, name="deadstore", epochs=1)
    uri = "postgresql://ups:never-shown@127.0.0.1:9/db"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ups.cli", "run", str(spec), f"tracking.mlflow.uri={uri}", "--no-progress"],
        env=subprocess_env(home, UPS_STORE_WAIT_S="2"), cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr[-3000:]
    assert elapsed < 60, elapsed
    lines = done.stderr.strip().splitlines()
    assert any("waiting up to 2 s" in x for x in lines), lines
    assert lines[-1].startswith(
        "run failed: StoreUnavailable: tracking.mlflow.uri: the MLflow store at postgresql://ups:***@127.0.0.1:9/db "
        "does not answer"
    )
    assert "never-shown" not in done.stderr + done.stdout


def test_a_sweep_started_during_an_outage_waits_bounded_then_exits_1(tmp_path):
    home = tmp_path / "home"
    spec = sweep_spec(tmp_path, name="outagestart", tracking="local")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    done = subprocess.run(
        [sys.executable, "-m", "ups.cli", "sweep", str(spec)],
        env=subprocess_env(home, UPS_STORE_WAIT_S="2", MLFLOW_TRACKING_URI=dead), cwd=ROOT,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert any("waiting up to 2 s" in x for x in lines) and "Traceback" not in done.stderr, lines
    assert (
        lines[-1]
        == f"sweep failed: StoreUnavailable: the MLflow store at {dead} does not answer after 2 s: "
        + lines[-1].split("after 2 s: ", 1)[1]
    )
