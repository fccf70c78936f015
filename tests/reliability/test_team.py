"""A team setup with real servers (issue 11, point 12): an MLflow tracking server backed by PostgreSQL and a
PostgreSQL Optuna storage; `run`, `sweep`, `promote` and `eval` against them end to end, nothing in the workspace's
own sqlite files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, MlflowServer, postgres_database, subprocess_env, sweep_spec

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_run_sweep_promote_and_eval_against_a_postgres_backed_tracking_server(tmp_path):
    server = MlflowServer(tmp_path / "server", backend=postgres_database("team-tracking")).start()
    try:
        storage = postgres_database("team-optuna")
        home = tmp_path / "home"
        env = subprocess_env(
            home, MLFLOW_TRACKING_URI=server.url, UPS_SWEEP_STORAGE=storage, OMP_NUM_THREADS="1"
        )
        spec = sweep_spec(tmp_path, name="team", trials=2, epochs=2, tracking="local", pruner="none")

        def cli(*args: str) -> subprocess.CompletedProcess:
            done = subprocess.run(
                [sys.executable, "-m", "ups.cli", *args, "tracking.wandb.enabled=false"], env=env, cwd=ROOT,
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            return done

        single = json.loads(cli("run", str(spec), "--json", "--no-progress").stdout.strip().splitlines()[-1])
        cli("sweep", str(spec), "--workers", "2")
        cli("promote", str(spec))
        evaluated = json.loads(
            cli("eval", str(spec), "--model", "models:/team@champion", "--json").stdout.splitlines()[-1]
        )
        assert (
            evaluated["metrics"]["test/rollout_nrmse"]
            < evaluated["metrics"]["test/persistence_rollout_nrmse"]
        )

        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        exp = client.get_experiment_by_name("team")
        runs = client.search_runs([exp.experiment_id])
        assert single["run_id"] in {r.info.run_id for r in runs}
        assert sum(r.data.tags.get("ups.role") == "sweep" for r in runs) == 1
        assert all(r.info.status == "FINISHED" for r in runs if r.data.tags.get("ups.role") != "promote")
        champion = client.get_model_version_by_alias("team", "champion")
        assert champion.run_id or champion.tags.get("ups.run_id")
        assert {a.path for a in client.list_artifacts(single["run_id"])} >= {"spec.yaml", "checkpoints"}
        assert not (home / "mlflow.db").exists() and not (home / "optuna.db").exists()
    finally:
        server.kill()
