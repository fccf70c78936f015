"""Tracking outages (issue 11, point 6) against a real `mlflow server` on 127.0.0.1, killed mid-run: training
finishes with exit 0 and a one-line warning, what could not be sent is spooled in the run's folder, and
`ups-exp sync` re-sends it once (running it again sends nothing twice)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import ROOT, mlflow_client, subprocess_env, sweep_spec, write_tiny_spec


def _cli(home, env_extra, *args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "ups.cli", *args], env=subprocess_env(home, **env_extra), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )  # fmt: skip


@pytest.mark.slow
def test_a_run_outlives_its_tracking_server_and_sync_sends_the_rest_once(tmp_path, mlflow_server):
    from mlflow.tracking import MlflowClient

    home = tmp_path / "home"
    spec = write_tiny_spec(tmp_path, name="outage", epochs=25)
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "OMP_NUM_THREADS": "1"}
    args = (
        "run",
        str(spec),
        "--json",
        "--no-progress",
        "tracking.wandb.enabled=false",
        "train.log_every_n_steps=1",
    )
    proc = _cli(home, env, *args)
    client = MlflowClient(tracking_uri=mlflow_server.url)
    deadline, run_id, before = time.time() + 180, None, 0
    while before < 5:  # the run exists and has sent a few losses: then the server dies
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "the run never logged to the server"
        time.sleep(0.5)
        exp = client.get_experiment_by_name("outage")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if runs:
            run_id = runs[0].info.run_id
            before = len(client.get_metric_history(run_id, "train/loss"))
    mlflow_server.kill()
    killed_at = time.time()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["run_id"] == run_id and result["unsent"] > 0
    warning = [line for line in err.splitlines() if line.startswith("WARNING: MLflow was unreachable")]
    assert warning == [f"WARNING: MLflow was unreachable: {result['unsent']} item(s) of run {run_id} await "
                       f"`ups-exp sync {run_id}`"]  # fmt: skip
    spool = home / "runs" / run_id / "spool.jsonl"
    entries = [json.loads(line) for line in spool.read_text().splitlines()]
    assert len(entries) == result["unsent"]
    assert {e["op"] for e in entries} >= {"metrics", "artifact", "terminate"}
    assert time.time() - killed_at < 300

    mlflow_server.start()
    sync = subprocess.run(
        [sys.executable, "-m", "ups.cli", "sync", "--tracking-uri", mlflow_server.url],
        env=subprocess_env(home), cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert sync.returncode == 0, sync.stderr
    assert f"run {run_id}: sent {len(entries)} spooled item(s)" in sync.stdout
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/rollout_nrmse"] == pytest.approx(
        result["metrics"]["test/rollout_nrmse"], rel=1e-6
    )
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"spec.yaml", "checkpoints"} <= artifacts
    history = client.get_metric_history(run_id, "train/loss")
    assert len(history) > before  # the losses logged during the outage arrived

    again = subprocess.run(
        [sys.executable, "-m", "ups.cli", "sync", run_id, "--tracking-uri", mlflow_server.url],
        env=subprocess_env(home), cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0 and f"run {run_id}: sent 0 spooled item(s)" in again.stdout, again.stderr
    # what sync sent, counted where it records it (the store itself would drop an exact duplicate silently)
    ledger = (home / "runs" / run_id / "spool.sent").read_text().split()
    assert sorted(ledger) == sorted(e["id"] for e in entries)


@pytest.mark.slow
def test_sync_uploads_offline_wandb_runs_only_with_a_key_and_reports_failures(tmp_path):
    """With no key, `sync` says how many W&B runs wait; with a key it runs `wandb sync` on each, bounded in time,
    and a server that answers but then stalls is a reported failure after that bound, exit 1. (A server that does not
    answer at all: tests/reliability/test_sync.py.)"""
    home = tmp_path / "home"
    spec = write_tiny_spec(tmp_path, name="offline", epochs=1)
    done = subprocess.run(
        [sys.executable, "-m", "ups.cli", "run", str(spec), "--no-progress"], env=subprocess_env(home), cwd=ROOT,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (offline,) = (home / "wandb").glob("offline-run-*")
    no_key = subprocess.run(
        [sys.executable, "-m", "ups.cli", "sync"], env=subprocess_env(home), cwd=ROOT, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert (
        no_key.returncode == 0
        and "W&B: 1 offline run(s)" in no_key.stdout
        and "WANDB_API_KEY" in no_key.stdout
    )
    import http.server
    import threading

    class Stalls(http.server.BaseHTTPRequestHandler):
        """Answers the reachability probe, then never answers an upload (a server that stopped mid-way)."""

        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def do_POST(self) -> None:
            time.sleep(120)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalls)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = subprocess_env(
        home, WANDB_API_KEY="k" * 40, WANDB_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}"
    )
    try:
        with_key = subprocess.run(
            [sys.executable, "-m", "ups.cli", "sync", "--wandb-timeout", "20"], env=env, cwd=ROOT,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        server.shutdown()
    assert with_key.returncode == 1, with_key.stdout + with_key.stderr
    assert f"W&B {offline.name}: FAILED: no answer within 20 s" in with_key.stdout, with_key.stdout
    assert "k" * 40 not in with_key.stdout + with_key.stderr


def test_a_sweep_closes_through_an_outage_and_sync_sends_its_summary_and_trial_states(
    workspace, tmp_path, monkeypatch
):
    """The trials are over when the sweep tags their final state and closes its parent run: a tracking server that
    stopped answering must neither fail the sweep nor lose the study's summary. The writes are spooled in the
    parent's (and the trial's) run folder and `ups-exp sync` delivers them once: the parent FINISHED with the best
    value, the best trial's number and the plots, the trial tagged COMPLETE."""
    import socket

    import optuna

    from ups.spec.load import load_spec
    from ups.sweep.objective import Objective
    from ups.sweep.parent import finish_parent
    from ups.tracking.session import mlflow_metric_name
    from ups.tracking.sync import sync

    resolved = load_spec(sweep_spec(tmp_path, name="outage_sweep", tracking="local"))
    live = f"sqlite:///{workspace / 'mlflow.db'}"
    client = mlflow_client(workspace)
    exp = client.create_experiment("outage_sweep")
    parent, child = (client.create_run(exp).info.run_id for _ in range(2))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="outage_sweep", direction="minimize")
    study.optimize(
        lambda t: (t.suggest_float("x", -1, 1) - 0.3) ** 2 + t.suggest_float("y", 0, 1), n_trials=6
    )
    trial = study.ask()
    trial.set_user_attr("mlflow_run_id", child)

    with socket.socket() as s:  # a port nothing listens on: the server is down
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    Objective(resolved, study_name="outage_sweep", parent_run_id=parent)._tag(trial, "COMPLETE")
    unsent = finish_parent(resolved, study, parent, workspace)

    plots = sorted(p.name for p in (workspace / "sweeps" / "outage_sweep").glob("*.png"))
    assert plots  # the study's plots were made (and spooled), not skipped
    assert unsent == len(plots) + 3  # the plots, the best value, the best trial's tag, the status
    assert client.get_run(parent).info.status == "RUNNING"  # nothing reached the store
    assert "ups.trial_state" not in client.get_run(child).data.tags

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    import ups.tracking.spool as spool_module

    sends: list[str] = []
    for name in ("_send_metrics", "_send_tags"):
        real = getattr(spool_module, name)

        def counted(client, run_id, payload, real=real, name=name):
            sends.append(f"{name}:{run_id}")
            return real(client, run_id, payload)

        monkeypatch.setattr(spool_module, name, counted)
    assert sync([], tracking_uri=live, wandb_timeout=5) is True  # both folders are found without naming them
    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    best = mlflow_metric_name(f"best/{resolved.spec.sweep.metric}")
    assert run.data.metrics[best] == pytest.approx(study.best_value)
    assert run.data.tags["ups.best_trial"] == str(study.best_trial.number)
    assert sorted(a.path for a in client.list_artifacts(parent)) == plots
    assert client.get_run(child).data.tags["ups.trial_state"] == "COMPLETE"
    sent_once = sorted(sends)
    assert sent_once == sorted([f"_send_metrics:{parent}", f"_send_tags:{parent}", f"_send_tags:{child}"])
    assert sync([parent, child], tracking_uri=live, wandb_timeout=5) is True
    assert sorted(sends) == sent_once  # the second sync sent nothing (counted as sent, not as stored)
