"""Errors everywhere as DESIGN says (issue 11, points 8, 9 and 10): expected failures of promote, eval, status,
sweep and run are one line with their exit code and no traceback; a task's data error names the task's key;
names that become paths stay inside $UPS_HOME; promote takes --storage like sweep and status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, subprocess_env, sweep_spec, write_tiny_spec

from ups.data.source import load_sources
from ups.spec import SpecError
from ups.spec.load import load_spec


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ups.cli", *args], env=subprocess_env(home, UPS_STORE_WAIT_S="1"), cwd=ROOT,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _one_line(done: subprocess.CompletedProcess, code: int, *needles: str, waited: bool = False) -> str:
    """The command's error, one line (after the one line that says it waits for a store, when it did)."""
    err = done.stderr.strip()
    assert done.returncode == code, done.stdout + done.stderr
    lines = err.splitlines()
    if waited:
        assert "waiting up to 1 s" in lines[0], err
        lines = lines[1:]
    err = "\n".join(lines)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_expected_failures_are_one_line_with_their_exit_code(tmp_path):
    home = tmp_path / "home"
    spec = sweep_spec(tmp_path, name="errs", trials=1, epochs=1, tracking="local")
    _one_line(_cli(home, "status", str(spec)), 2, "no study yet for this spec")
    _one_line(_cli(home, "promote", str(spec)), 2, "no study yet for this spec")
    # a workspace where nothing was tracked: no store to read (and none is created by asking)
    _one_line(_cli(home, "promote", str(spec), "--run", "f" * 32), 2, "no MLflow store")
    _one_line(_cli(home, "eval", str(spec), "--model", "models:/nothing@champion"), 2, "no MLflow registry")
    assert not (home / "mlflow.db").exists() and not (home / "optuna.db").exists()
    # a storage server that does not answer: a bounded wait, then exit 1 naming the flag, the password masked
    unreachable = "postgresql://ups:canary-secret@127.0.0.1:9/none"
    err = _one_line(_cli(home, "sweep", str(spec), "--storage", unreachable), 1, "--storage", waited=True)
    assert "canary-secret" not in err and "***" in err and "does not answer" in err
    err = _one_line(_cli(home, "status", str(spec), "--storage", unreachable), 1, "--storage", waited=True)
    assert "canary-secret" not in err


@pytest.mark.slow
def test_promote_takes_the_storage_of_its_study(workspace, tmp_path):
    from ups.registry.promote import promote
    from ups.sweep.driver import run_sweep

    storage = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    spec = sweep_spec(tmp_path, name="away", trials=1, epochs=1, tracking="local", pruner="none")
    resolved = load_spec(spec, ["tracking.wandb.enabled=false"])
    run_sweep(resolved, storage=storage)
    with pytest.raises(SpecError, match="no study yet"):  # not in the workspace's default storage
        promote(resolved, dry_run=True)
    result = promote(resolved, dry_run=True, storage=storage)
    assert result.decision == "dry-run" and any("would be promoted" in line for line in result.lines)
    home = workspace
    done = _cli(home, "promote", str(spec), "--dry-run", "--storage", storage, "tracking.wandb.enabled=false")
    assert done.returncode in (0, 3) and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["name=../../etc"], "name"),
        (["registry.model_name=a/b"], "registry.model_name"),
        (["--study", "../escape"], "--study"),
        (["--study", ".hidden"], "--study"),
    ],
)
def test_names_cannot_leave_the_workspace(tmp_path, args, key):
    spec = sweep_spec(tmp_path, name="paths", trials=1, epochs=1)
    command = "status" if "--study" in args else "validate"
    err = _one_line(_cli(tmp_path / "home", command, str(spec), *args), 2, key, "letters, digits")
    assert "got" in err


def test_a_task_data_error_names_the_task_key(workspace, tmp_path):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"not hdf5 at all")
    spec = write_tiny_spec(tmp_path, name="tasks")
    spec.write_text(
        spec.read_text().replace(
            "data:\n  from: burgers1d\n",
            "data:\n  tasks:\n    - {name: a, from: burgers1d, num_trajectories: 40, num_points: 64, num_frames: 21}\n"
            f"    - {{name: b, from: burgers1d, path: {bad}, num_trajectories: 40, num_points: 64, num_frames: 21}}\n"
            "  from: burgers1d\n",
        )
    )
    resolved = load_spec(spec)
    with pytest.raises(SpecError) as info:
        load_sources(resolved.spec.data, workspace)
    assert info.value.key == "data.tasks.1.path" and str(bad) in str(info.value)
