"""Failures after tracking starts (issue 11, points 5 and 7): a diverging rollout with a finite loss, a trainer
that cannot be built, and `--resume` of a run whose process is alive. Nothing stays RUNNING, the reason is kept."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import optuna
import pytest
import torch
from conftest import mlflow_runs, subprocess_env, sweep_spec, write_tiny_spec
from torch import nn

from ups.run.single import run_spec
from ups.spec.errors import SpecError
from ups.spec.load import load_spec
from ups.sweep.driver import SweepFailed, run_sweep
from ups.sweep.status import status_table, study_status
from ups.tracking.workspace import new_record


class Diverging(nn.Module):
    """The trained predictor, with each step's output blown up: its rollout overflows, its loss is untouched."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, u, params, dt):
        return self.inner(u, params, dt) * 1e30


def _diverge_in_evaluation(monkeypatch) -> None:
    import ups.training.stage_module as stage_module

    original = stage_module.evaluate_batch

    def evaluate(model, *args, **kwargs):
        return original(Diverging(model), *args, **kwargs)

    monkeypatch.setattr(stage_module, "evaluate_batch", evaluate)


def test_a_diverging_rollout_fails_the_trial_with_its_reason(workspace, tmp_path, monkeypatch):
    _diverge_in_evaluation(monkeypatch)
    spec = sweep_spec(tmp_path, name="diverge", trials=2, epochs=1, tracking="local", pruner="none")
    with pytest.raises(SweepFailed, match="max_failures"):
        run_sweep(load_spec(spec, ["sweep.max_failures=2", "tracking.wandb.enabled=false"]))
    study = optuna.load_study(study_name="diverge", storage=f"sqlite:///{workspace / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    reasons = [t.user_attrs["fail_reason"] for t in study.trials]
    assert all("non-finite validation metrics" in r and "rollout_nrmse" in r for r in reasons), reasons
    runs = [r for r in mlflow_runs(workspace, "diverge") if r.data.tags.get("ups.trial") is not None]
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FAILED"}
    assert all("non-finite validation metrics" in r.data.tags["ups.fail_reason"] for r in runs)
    table = status_table(study_status(load_spec(spec)))
    assert table.count("non-finite validation metrics") == 2 and "FAIL" in table, table


def test_a_failure_after_tracking_starts_marks_every_store_failed(workspace, tmp_path, monkeypatch):
    import ups.training.trainer as trainer

    def no_gpu(*args, **kwargs):
        raise RuntimeError("no CUDA device on this machine")

    monkeypatch.setattr(trainer, "build_trainer", no_gpu)
    spec = write_tiny_spec(tmp_path, name="orphan", epochs=1)
    with pytest.raises(RuntimeError, match="no CUDA"):
        run_spec(load_spec(spec), progress_bar=False)
    (run,) = mlflow_runs(workspace, "orphan")
    assert run.info.status == "FAILED"
    assert run.data.tags["ups.fail_reason"] == "RuntimeError: no CUDA device on this machine"
    record = json.loads((workspace / "runs" / run.info.run_id / "run.json").read_text())
    assert record["status"] == "FAILED" and "no CUDA" in record["reason"]
    (wandb_run,) = (workspace / "wandb").glob("offline-run-*")
    summary = subprocess.run(  # the W&B run was finished with a failure (exit code 1 in its record)
        ["grep", "-rl", "no CUDA device", str(wandb_run)], capture_output=True, text=True
    )
    assert summary.stdout, "the W&B run does not hold the reason"


def test_resume_never_attaches_to_a_live_run(workspace, tmp_path):
    spec = write_tiny_spec(tmp_path, name="alive", epochs=1, tracking="none")
    resolved = load_spec(spec)
    record = new_record("a" * 32, "alive-run", "alive", resolved.fingerprint())
    record.save(workspace)
    lock = workspace / "runs" / record.run_id / "run.lock"
    holder = subprocess.Popen(  # another process runs it: it holds the run's lock
        [sys.executable, "-c", f"import fcntl,time; f=open({str(lock)!r},'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, env=subprocess_env(workspace),
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SpecError, match=f"run {record.run_id} is still running \\(process \\d+ on "):
            run_spec(resolved, resume=True, progress_bar=False)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    # its process is gone (as after a SIGKILL): now --resume takes it over and finishes it
    result = run_spec(resolved, resume=True, progress_bar=False)
    assert result.run_id == record.run_id
    assert json.loads((workspace / "runs" / record.run_id / "run.json").read_text())["status"] == "FINISHED"
    assert torch.isfinite(torch.tensor(result.metrics["test/nrmse"]))
