"""SIGTERM mid-run, then `--resume-run RUN_ID`: same MLflow and W&B ids, same final metrics as an uninterrupted run
(deterministic CPU); a resume with a different resolved spec is refused naming the first differing key."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, mlflow_runs, subprocess_env, write_tiny_spec

EPOCHS = 8


def _cli(spec: Path, home: Path, *extra: str) -> subprocess.Popen:
    env = subprocess_env(home, OMP_NUM_THREADS="1")
    env.pop("UPS_RUN_ID", None)
    cmd = [
        sys.executable,
        "-m",
        "ups.cli",
        "run",
        str(spec),
        "--json",
        "--no-progress",
        "hardware.num_threads=1",
        *extra,
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _summary(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _epochs_done(home: Path) -> int:
    ckpts = list(home.glob("runs/*/checkpoints/epoch*.ckpt")) + list(
        home.glob("runs/*/checkpoints/last.ckpt")
    )
    if not ckpts:
        return 0
    import torch

    last = next(iter(home.glob("runs/*/checkpoints/last.ckpt")), None)
    try:
        return torch.load(last, map_location="cpu", weights_only=False)["epoch"] + 1 if last else 0
    except Exception:  # being written
        return 0


@pytest.mark.slow  # a multi-process run: .ci/run runs it
def test_sigterm_then_resume_matches_uninterrupted(tmp_path):
    spec = write_tiny_spec(tmp_path, name="resumable", epochs=EPOCHS)
    # each epoch is slow enough to interrupt reliably: more windows per epoch
    extra = ["train.batch_size=8", "train.max_time_minutes=null"]

    reference = _summary(_cli(spec, tmp_path / "a", *extra))

    home = tmp_path / "b"
    proc = _cli(spec, home, *extra)
    deadline = time.time() + 240
    while _epochs_done(home) < 2:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    interrupted_at = _epochs_done(home)
    assert 2 <= interrupted_at < EPOCHS
    record = json.loads(next(home.glob("runs/*/run.json")).read_text())
    run_id = record["run_id"]
    assert record["wandb_run_id"] == run_id
    wandb_runs = sorted(p.name for p in (home / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1 and wandb_runs[0].endswith(run_id)

    # another resolved spec may not continue this run: one line naming the first key that differs, nothing run
    other = _cli(spec, home, *extra, "train.lr=0.5", "--resume-run", run_id)
    out, err = other.communicate(timeout=120)
    assert other.returncode == 2, err[-3000:]
    assert "train.lr" in err and run_id in err and len(err.strip().splitlines()) == 1

    resumed = _summary(_cli(spec, home, *extra, "--resume-run", run_id))
    assert resumed["run_id"] == run_id
    # W&B keeps one folder per attempt, all of them the one run id
    assert all(p.name.endswith(run_id) for p in (home / "wandb").glob("offline-run-*"))
    assert len(list(home.glob("runs/*/run.json"))) == 1
    assert resumed["metrics"].keys() == reference["metrics"].keys()
    for name, value in reference["metrics"].items():
        if name.endswith("_ms"):  # wall time of the coarse solve: a measurement, not a result
            continue
        assert resumed["metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name

    runs = mlflow_runs(home, "resumable")
    assert [r.info.run_id for r in runs] == [run_id] and runs[0].info.status == "FINISHED"


def test_resume_without_an_unfinished_run_is_a_spec_error(tmp_path):
    spec = write_tiny_spec(tmp_path, name="nothing")
    proc = _cli(spec, tmp_path / "c", "--resume")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "--resume found no unfinished run of this resolved spec" in err
