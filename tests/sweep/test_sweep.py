"""Sweeps on tiny trials: pruning, resume to a total, reproducibility, failures, changed specs, Pareto fronts."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import mlflow_client, mlflow_runs, sweep_spec

from ups.spec import SpecError
from ups.spec.load import load_spec
from ups.sweep.driver import SweepFailed, run_sweep


def _study(workspace: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workspace / 'optuna.db'}")


def test_pruned_sweep_resumes_to_the_total_and_tracks_parent_and_children(workspace, tmp_path):
    spec = sweep_spec(tmp_path, name="prune", tracking="local", trials=5, epochs=4)
    first = run_sweep(load_spec(spec))
    assert first.trials["complete"] + first.trials["pruned"] == 5
    assert first.trials["pruned"] >= 1, "a median pruner over these trials prunes some"
    study = _study(workspace, "prune")
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all(t.value is not None and t.intermediate_values for t in pruned), (
        "pruned trials keep their last value"
    )

    again = run_sweep(load_spec(spec), trials=7)  # the same command continues the same study to 7 in total
    assert again.study == "prune" and again.trials["complete"] + again.trials["pruned"] == 7
    assert len(_study(workspace, "prune").trials) == 7

    runs = mlflow_runs(workspace, "prune")
    parents = [r for r in runs if r.data.tags.get("ups.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 7
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    states = {r.data.tags["ups.trial_state"] for r in children}
    assert "PRUNED" in states and "COMPLETE" in states
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in _study(workspace, "prune").trials}
    for child in children:
        trial = by_run[child.info.run_id]
        assert trial.user_attrs["wandb_run_id"] == child.info.run_id
        assert float(child.data.params["train.lr"]) == pytest.approx(trial.params["train.lr"])
    artifacts = {a.path for a in mlflow_client(workspace).list_artifacts(parents[0].info.run_id)}
    assert "optimization_history.png" in artifacts
    complete = next(r for r in children if r.data.tags["ups.trial_state"] == "COMPLETE")
    kept = {a.path for a in mlflow_client(workspace).list_artifacts(complete.info.run_id)}
    assert "spec.yaml" in kept and "rollout_val.png" not in kept  # no per-trial plots unless asked
    assert not any((workspace.parent / "user_home").iterdir())


def test_same_seed_same_parameter_sequence(workspace, tmp_path):
    spec = sweep_spec(tmp_path, name="repro", trials=4, epochs=1, pruner="none")
    run_sweep(load_spec(spec), study="repro-a")
    run_sweep(load_spec(spec), study="repro-b")
    a = [t.params for t in _study(workspace, "repro-a").trials]
    b = [t.params for t in _study(workspace, "repro-b").trials]
    assert a == b and len(a) == 4
    run_sweep(load_spec(spec, ["sweep.seed=1"]), study="repro-c")
    assert [t.params for t in _study(workspace, "repro-c").trials] != a


def test_failing_trials_are_recorded_and_the_sweep_goes_on(workspace, tmp_path, monkeypatch):
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "explode.yaml").write_text("train.lr: {type: categorical, choices: [0.001, 1.0e+30]}\n")
    monkeypatch.setenv("UPS_SEARCH_SPACES", str(spaces))
    spec = sweep_spec(
        tmp_path, name="boom", space="explode", trials=4, epochs=1, pruner="none", sampler="random"
    )
    overrides = ["train.optimizer=sgd", "train.grad_clip=null", "sweep.max_failures=10"]
    result = run_sweep(load_spec(spec, overrides))
    study = _study(workspace, "boom")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and result.trials["complete"] == 4
    assert all(t.params["train.lr"] == 1e30 for t in failed)
    assert {t.user_attrs["fail_reason"] for t in failed} == {"nan"}

    with pytest.raises(SweepFailed, match="max_failures"):
        run_sweep(load_spec(spec, [*overrides[:2], "sweep.max_failures=1"]), study="boom-limited", trials=20)


def test_changed_spec_is_refused_until_new_study(workspace, tmp_path):
    spec = sweep_spec(tmp_path, name="changing", trials=1, epochs=1, pruner="none")
    run_sweep(load_spec(spec))
    with pytest.raises(SpecError, match="different spec or search space.*--new-study"):
        run_sweep(load_spec(spec, ["train.batch_size=16"]))
    run_sweep(load_spec(spec, ["sweep.max_failures=3"]), trials=2)  # budget/limits do not count as a change
    fresh = run_sweep(load_spec(spec, ["train.batch_size=16"]), new_study=True)
    assert fresh.study == "changing-2"
    again = run_sweep(load_spec(spec, ["train.batch_size=16"]), trials=2)
    assert again.study == "changing-2" and again.trials["complete"] == 2


def test_multi_objective_reports_the_pareto_front(workspace, tmp_path):
    spec = sweep_spec(tmp_path, name="pareto", trials=3, epochs=1, pruner="none")
    overrides = [
        "sweep.objectives=[val/rollout_nrmse, model/num_params]",
        "sweep.directions=[minimize, minimize]",
    ]
    result = run_sweep(load_spec(spec, overrides))
    assert isinstance(result.best, list) and result.best
    assert all(len(b["value"]) == 2 for b in result.best)


def test_a_sweep_needs_a_search_space(workspace, tmp_path):
    spec = sweep_spec(tmp_path, name="nospace")
    with pytest.raises(SpecError, match="search_space: a sweep needs a search space"):
        run_sweep(load_spec(spec, ["search_space=null"]))


def test_optuna_cli_reads_the_study(workspace, tmp_path):
    import subprocess
    import sys

    spec = sweep_spec(tmp_path, name="visible", trials=2, epochs=1, pruner="none")
    run_sweep(load_spec(spec))
    optuna_cli = Path(sys.executable).parent / "optuna"
    out = subprocess.run(
        [
            str(optuna_cli),
            "trials",
            "--study-name",
            "visible",
            "--storage",
            f"sqlite:///{workspace / 'optuna.db'}",
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    import json

    rows = json.loads(out.stdout)
    assert len(rows) == 2 and all(r["state"] == "COMPLETE" for r in rows)


def test_optuna_dashboard_reads_the_study(workspace, tmp_path):
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    spec = sweep_spec(tmp_path, name="dash", trials=2, epochs=1, pruner="none")
    run_sweep(load_spec(spec))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    storage = f"sqlite:///{workspace / 'optuna.db'}"
    proc = subprocess.Popen(
        [str(dashboard), storage, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    studies = json.load(r)["study_summaries"]
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None
                time.sleep(0.5)
        (study,) = [s for s in studies if s["study_name"] == "dash"]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/studies/{study['study_id']}", timeout=10
        ) as r:
            detail = json.load(r)
        assert len(detail["trials"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_completed_trials_report_once_per_epoch_and_resumes_do_not_repeat_parameters(workspace, tmp_path):
    spec = sweep_spec(tmp_path, name="fresh", trials=3, epochs=2, pruner="median", sampler="random")
    run_sweep(load_spec(spec, ["sweep.startup_trials=1", "sweep.warmup_epochs=0"]))
    run_sweep(load_spec(spec, ["sweep.startup_trials=1", "sweep.warmup_epochs=0"]), trials=6)
    trials = _study(workspace, "fresh").trials
    for t in trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert sorted(t.intermediate_values) == [0, 1], "one report per epoch, none after training"
    first, resumed = [t.params for t in trials[:3]], [t.params for t in trials[3:6]]
    assert not any(p in first for p in resumed), "a continued study must not redraw the first trials"


def test_trial_plots_on_request(workspace, tmp_path):
    spec = sweep_spec(tmp_path, name="plots", tracking="local", trials=1, epochs=1, pruner="none")
    run_sweep(load_spec(spec, ["sweep.trial_plots=true"]))
    child = next(r for r in mlflow_runs(workspace, "plots") if r.data.tags.get("mlflow.parentRunId"))
    kept = {a.path for a in mlflow_client(workspace).list_artifacts(child.info.run_id)}
    assert {"spec.yaml", "rollout_val.png", "error_growth_val.png"} <= kept
