"""DDP on CPU (`cpu_ddp2`: 2 processes over gloo): one tracked run, metrics over the whole split, and the same
training as one process with the same global batch and seed."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import ROOT, mlflow_runs, subprocess_env, write_tiny_spec, write_waves_2d


@pytest.mark.slow  # three processes (make test's 12-minute budget): .ci/run runs it
def test_cpu_ddp2_run_tracks_once_and_evaluates_every_sample(tmp_path):
    spec = write_tiny_spec(tmp_path, name="ddp", epochs=1)
    env = subprocess_env(tmp_path / "home")
    env.pop("UPS_RUN_ID", None)

    def run(*extra):
        proc = subprocess.run(
            [sys.executable, "-m", "ups.cli", "run", str(spec), "--json", "--no-progress", *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]

    single = run()[-1]
    ddp = run("hardware=cpu_ddp2")
    assert len(ddp) == 1, "only rank 0 reports"
    # persistence does not depend on the model: equal values prove both ranks' shards were gathered
    for name in (
        "val/persistence_rollout_nrmse",
        "test/persistence_nrmse",
        "test/persistence_nrmse_band_high",
    ):
        assert ddp[0]["metrics"][name] == pytest.approx(single["metrics"][name], rel=1e-9)
    # train.batch_size is the global batch: both ranks' half batches are the single process's batch, and DDP
    # averages their gradients, so the model trains the same up to float summation order (Adam magnifies it where
    # a gradient is ~0). Tolerance: 1% relative on the model's test metrics.
    for name in ("test/nrmse", "test/rollout_nrmse", "val/rollout_nrmse"):
        assert ddp[0]["metrics"][name] == pytest.approx(single["metrics"][name], rel=1e-2), (
            name,
            ddp[0]["metrics"][name],
            single["metrics"][name],
        )
    runs = mlflow_runs(tmp_path / "home", "ddp")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert len(list((tmp_path / "home" / "runs").iterdir())) == 2


TWO_D = """\
name: ddp2d
seed: 0
data: {{path: {path}, num_trajectories: 32, num_points: null, dt: null, num_frames: null, val_fraction: 0.25,
        test_fraction: 0.25}}
model: {{kind: fno, width: 12, num_layers: 2, num_modes: 4, cond_dim: 8, projection_dim: 16}}
train: {{max_epochs: 4, batches_per_epoch: 8, batch_size: 8, lr: 5.0e-3, unroll_steps: 2, deterministic: true}}
eval: {{context_frames: 1, horizon: 5, report_horizons: [1, 5]}}
tracking: local
"""


@pytest.mark.slow  # two multi-process runs: .ci/run runs it
def test_cpu_ddp2_trains_a_2d_model_like_one_process(tmp_path):
    """In 2D too, the global batch split over two ranks trains the model one process trains (within 1%), and
    evaluation gathers every sample."""
    write_waves_2d(tmp_path / "waves.h5", n=32)
    spec = tmp_path / "ddp2d.yaml"
    spec.write_text(TWO_D.format(path=tmp_path / "waves.h5"))
    env = subprocess_env(tmp_path / "home")

    def run(*extra):
        proc = subprocess.run(
            [sys.executable, "-m", "ups.cli", "run", str(spec), "--json", "--no-progress", *extra],
            env=env, capture_output=True, text=True, timeout=600, cwd=ROOT,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]

    single, ddp = run()[-1], run("hardware=cpu_ddp2")
    assert len(ddp) == 1, "only rank 0 reports"
    m, s = ddp[0]["metrics"], single["metrics"]
    assert m["test/persistence_rollout_nrmse"] == pytest.approx(s["test/persistence_rollout_nrmse"], rel=1e-9)
    assert (
        s["test/rollout_nrmse"] < 0.9 * s["test/persistence_rollout_nrmse"]
    )  # it learned something to compare
    for name in ("test/nrmse", "test/rollout_nrmse", "val/rollout_nrmse", "test/nrmse_band_low"):
        assert m[name] == pytest.approx(s[name], rel=1e-2), (name, m[name], s[name])


@pytest.mark.slow  # a multi-process run: .ci/run runs it
def test_the_printed_torchrun_command_runs_one_tracked_run_without_exporting_a_run_id(tmp_path):
    """`--print-launch` prints the torchrun command; run as printed, every rank starts at once, rank 0 makes the
    tracked run and the other rank learns its id by broadcast (UPS_RUN_ID is exported by nobody)."""
    import shlex

    spec = write_tiny_spec(tmp_path, name="trun", epochs=1)
    env = subprocess_env(tmp_path / "home")
    env.pop("UPS_RUN_ID", None)

    def ups(*args):
        return subprocess.run(
            [sys.executable, "-m", "ups.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )

    printed = ups("run", str(spec), "hardware=cpu_ddp2", "--json", "--no-progress", "--print-launch")
    assert printed.returncode == 0, printed.stderr
    cmd = shlex.split(printed.stdout.strip())
    assert cmd[:3] == ["torchrun", "--standalone", "--nproc-per-node=2"], cmd
    assert cmd[3:] == ["-m", "ups.cli", "run", str(spec), "hardware=cpu_ddp2", "--json", "--no-progress"], cmd
    assert not (tmp_path / "home").exists() or not list((tmp_path / "home").rglob("*.db")), (
        "printing writes nothing"
    )

    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", *cmd[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    reports = [json.loads(line) for line in launched.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1, "only rank 0 reports"
    single = json.loads(ups("run", str(spec), "--json", "--no-progress").stdout.splitlines()[-1])
    for name in ("test/persistence_nrmse", "test/nrmse", "test/rollout_nrmse"):
        assert reports[0]["metrics"][name] == pytest.approx(single["metrics"][name], rel=1e-2), name
    runs = mlflow_runs(tmp_path / "home", "trun")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    assert reports[0]["run_id"] in {r.info.run_id for r in runs}

    # `--resume` with nothing to resume: rank 0's refusal reaches the other rank at once (none waits for it)
    started = time.monotonic()
    refused = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", *cmd[1:], "--resume"],
        env={**env, "UPS_DIST_TIMEOUT_S": "120"}, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert refused.returncode != 0
    assert time.monotonic() - started < 90, refused.stderr[-2000:]
    assert refused.stderr.count("--resume found no unfinished run of this resolved spec") == 2, (
        refused.stderr[-3000:]
    )


def test_print_launch_commands_for_nodes_and_srun(tmp_path):
    from ups.run.distributed import launch_command
    from ups.spec.load import load_spec

    spec = write_tiny_spec(tmp_path, name="pl", epochs=1)
    multi = load_spec(spec, ["hardware=4gpu_ddp", "hardware.num_nodes=2"]).spec
    assert launch_command(multi, "s.yaml", [], "torchrun") == (
        "torchrun --nnodes=2 --nproc-per-node=4 --rdzv-backend=c10d --rdzv-endpoint=$MAIN_NODE:29500 "
        "--rdzv-id=$JOB_ID -m ups.cli run s.yaml"
    )
    assert launch_command(multi, "s.yaml", ["train.lr=0.01"], "srun") == (
        "srun --nodes=2 --ntasks-per-node=4 --gpus-per-node=4 python -m ups.cli run s.yaml train.lr=0.01"
    )
    env = subprocess_env(tmp_path / "home")
    proc = subprocess.run(
        [sys.executable, "-m", "ups.cli", "run", str(spec), "--print-launch", "srun", "hardware=cpu_ddp2"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.strip()
        == f"srun --nodes=1 --ntasks-per-node=2 python -m ups.cli run {spec} hardware=cpu_ddp2"
    )
