"""Several machines on one study (issue 11, point 4): two coordinators started at the same instant on one
PostgreSQL study both finish, never draw the same parameters (no shared sampler seed), and the study has one
MLflow parent run that every trial's run hangs from."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from conftest import ROOT, postgres_database, subprocess_env, sweep_spec

from ups.sweep.study import TrialSeededSampler


@pytest.mark.postgres
@pytest.mark.slow
def test_two_coordinators_at_once_share_one_study_and_one_parent_run(tmp_path):
    storage = postgres_database("coordinators")
    tracking = postgres_database("coordinators")
    name = "twin"
    spec = sweep_spec(
        tmp_path, name=name, trials=4, epochs=2, tracking="local", pruner="none", sampler="random"
    )
    procs = []
    for machine in ("a", "b"):  # two workspaces, as on two machines; one study store and one tracking server
        env = subprocess_env(
            tmp_path / f"home-{machine}",
            OMP_NUM_THREADS="1",
            MLFLOW_TRACKING_URI=tracking,
            WANDB_MODE="disabled",
            UPS_SWEEP_STORAGE=storage,
        )
        cmd = [sys.executable, "-m", "ups.cli", "sweep", str(spec), "tracking.wandb.enabled=false"]
        procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-8000:]

    study = optuna.load_study(study_name=name, storage=storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) >= 4 and len(study.trials) <= 5, [t.state.name for t in study.trials]
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2, workers  # both coordinators ran trials
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == len(params), "two trials drew the same parameters"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("ups.role") == "sweep"]
    assert len(parents) == 1, [r.info.run_id for r in parents]
    children = [r for r in runs if r.data.tags.get("ups.trial") is not None]
    assert len(children) == len(study.trials)
    assert {r.data.tags.get("mlflow.parentRunId") for r in children} == {parents[0].info.run_id}


def test_trial_seeds_follow_trial_numbers_not_workers():
    """Two workers with the same `sweep.seed` on one study draw different values (their trials differ in number),
    and a fresh study replays the same values for the same numbers."""

    def draws(study: optuna.Study, sampler) -> list[float]:
        s = optuna.load_study(study_name=study.study_name, storage=study._storage, sampler=sampler)
        trial = s.ask()
        value = trial.suggest_float("x", 0.0, 1.0)
        s.tell(trial, value)
        return [trial.number, value]

    def make(seed):
        return optuna.samplers.RandomSampler(seed=seed)

    first = optuna.create_study()
    a, b = TrialSeededSampler(make, 0), TrialSeededSampler(make, 0)  # two machines, one configured seed
    seen = [draws(first, a), draws(first, b), draws(first, a)]
    assert len({v for _, v in seen}) == 3
    again = optuna.create_study()
    replay = [draws(again, TrialSeededSampler(make, 0)) for _ in range(3)]
    assert replay == seen
