"""The pruning replay that benchmarks/pruning_replay.py uses to compare pruners on recorded curves."""

import importlib.util
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("pruning_replay", ROOT / "benchmarks" / "pruning_replay.py")
replay = importlib.util.module_from_spec(spec)
spec.loader.exec_module(replay)

GOOD = [0.5, 0.4, 0.3, 0.2]
BAD = [0.9, 0.9, 0.9, 0.9]
BEST = [0.5, 0.4, 0.3, 0.19]


def test_replay_charges_pruned_trials_their_epochs():
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    ended = replay.replay_sweep([GOOD, BAD, BEST], pruner)
    assert ended == [(True, 0.2, 4), (False, 0.9, 1), (True, 0.19, 4)]


def test_ratio_counts_epochs_to_the_first_trial_near_the_unpruned_best():
    curves = [GOOD, BAD, BAD, BAD, BAD, BEST]
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    # unpruned: 6 trials x 4 epochs to reach 0.19; pruned: 4 + 4 x 1 + 4 epochs
    assert replay.ratio(curves, 6, pruner, 0.02) == (24 / 12, True)
    # a pruner that stops every trial in its last epoch never reaches the target: the ratio is only a bound
    late = optuna.pruners.ThresholdPruner(upper=0.15, n_warmup_steps=3)
    assert replay.ratio(curves, 6, late, 0.02) == (1.0, False)


def test_a_timed_out_arm_takes_its_whole_process_group_with_it(tmp_path):
    """gpu_check's arms start torchrun (which starts ranks) or `ups-exp run` (which starts wandb-core): a timeout
    kills all of them, not only the direct child."""
    import os
    import subprocess
    import sys
    import time

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _ups import run_group

    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
        f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(300)"
    )
    started = time.monotonic()
    try:
        run_group([sys.executable, "-c", script], timeout=3)
        raise AssertionError("the command should have timed out")
    except subprocess.TimeoutExpired:
        pass
    assert time.monotonic() - started < 30
    grandchild = int(pidfile.read_text())
    time.sleep(0.5)
    try:
        os.kill(grandchild, 0)
        alive = open(f"/proc/{grandchild}/stat").read().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        alive = False
    assert not alive, "the grandchild outlived the timeout"


@pytest.mark.slow  # a fresh process training two arms: .ci/run runs it
def test_the_refiner_gpu_script_runs_its_arms_at_equal_steps_on_cpu(tmp_path):
    """benchmarks/refiner_gpu.sh's CPU dry run: the same code as on the GPU (data made by the batched solver,
    both arms, equal steps, the paired interval), at toy sizes."""
    import json
    import subprocess

    out = tmp_path / "refiner_gpu.json"
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "refiner_gpu.sh"), "--device", "cpu", "--dry-run", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    op, pr = result["arms"]["op"], result["arms"]["pr"]
    assert op["steps"] == pr["steps"] >= 20  # equal steps
    assert pr["params"] > op["params"]  # the refiner's network also sees the noised state and the level
    point, lo, hi = result["ratio"]
    assert lo <= point <= hi and point == pr["corr_time"] / op["corr_time"]
    assert "pde_refiner / MSE operator corr_time" in done.stdout
