"""Interrupts (issue 11, point 2, with DESIGN's "Reliability details"): SIGTERM or Ctrl-C to a sweep's
coordinator stops the whole sweep within seconds with exit 130; the running trials are recorded as interrupted
(not failures that count toward `sweep.max_failures`) and re-queued, no new trial starts, and the same command
continues the study. SIGTERM to one worker (a preempted job) ends that worker and re-queues its trial; the
other workers go on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, subprocess_env, sweep_spec

pytestmark = pytest.mark.slow  # minutes of real sweeps killed mid-trial: .ci/run runs them after `make test`


def _as_a_terminal_job() -> None:
    """The sweep runs as a terminal's foreground job, where Ctrl-C is SIGINT. A shell script's background job
    (`cmd &`, as a CI runner may start this suite) inherits SIGINT ignored, and a program keeps an ignored signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(spec: Path, home: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ups.cli", "sweep", str(spec), *extra]
    env = subprocess_env(home, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=_as_a_terminal_job,
    )  # fmt: skip


def _wait_running(proc: subprocess.Popen, storage: str, name: str, count: int) -> optuna.Study:
    deadline = time.time() + 240
    while True:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "the trials never started"
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except Exception:  # the storage or the study does not exist yet
            continue
        if sum(t.state.name == "RUNNING" for t in study.trials) >= count:
            return study


def _workers(pgid: int) -> list[int]:
    """pids of the `--worker-index` processes in a process group."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            if b"--worker-index" in (stat.parent / "cmdline").read_bytes():
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):  # the process ended
            pass
    return pids


def _run_again(proc: subprocess.Popen, home: Path) -> None:
    """The same sweep command again, to the end: it must succeed."""
    again = subprocess.run(
        proc.args, env=subprocess_env(home, OMP_NUM_THREADS="1"), cwd=ROOT, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_coordinator_stops_the_whole_sweep_and_the_study_continues(tmp_path, sig):
    home = tmp_path / "home"
    name = f"intr-{sig.name.lower()}"
    spec = sweep_spec(tmp_path, name=name, trials=2, epochs=40, pruner="none", sampler="random")
    storage = f"sqlite:///{home / 'optuna.db'}"
    proc = _start(spec, home, "--workers", "2", "sweep.max_failures=1")
    started = _wait_running(proc, storage, name, 2)
    before = len(started.trials)
    time.sleep(1.0)  # both trials are training
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C in a terminal reaches the whole process group
    else:
        proc.send_signal(sig)  # `kill PID` reaches the coordinator only
    signalled = time.time()
    out, err = proc.communicate(timeout=60)
    stopped_after = time.time() - signalled
    assert proc.returncode == 130, err[-3000:]
    assert stopped_after < 30, f"the sweep took {stopped_after:.0f} s to stop"
    deadline = time.time() + 10
    while _group_alive(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _group_alive(proc.pid), "a worker outlived its sweep"
    assert "interrupted" in err.splitlines()[-1]

    study = optuna.load_study(study_name=name, storage=storage)
    started_trials = [t for t in study.trials if t.state.name != "WAITING"]
    states = [t.state.name for t in started_trials]
    assert len(started_trials) == before, f"a new trial started after the interrupt: {states}"
    assert states == ["FAIL", "FAIL"], states
    assert all(t.user_attrs.get("interrupted") for t in started_trials), [t.user_attrs for t in study.trials]
    status = subprocess.run(
        [sys.executable, "-m", "ups.cli", "status", str(spec)], env=subprocess_env(home), cwd=ROOT,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert status.returncode == 0 and status.stdout.count("INTERRUPTED") == 2, status.stdout + status.stderr
    if sig == signal.SIGINT:
        return

    # the same command continues: max_failures=1, so had the two interruptions counted, it would refuse
    _run_again(proc, home)
    study = optuna.load_study(study_name=name, storage=storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 2 and len(study.trials) == 4
    # the interrupted trials' parameters are the ones run again
    interrupted = sorted(str(t.params) for t in study.trials if t.user_attrs.get("interrupted"))
    assert sorted(str(t.params) for t in complete) == interrupted


def test_sigterm_to_one_worker_requeues_its_trial_and_the_others_go_on(tmp_path):
    """A preempted worker (SIGTERM, as SLURM sends) ends within seconds; its trial is re-queued with the same
    parameters and the rest of the sweep finishes the total (DESIGN, Reliability details)."""
    home = tmp_path / "home"
    name = "preempted"
    spec = sweep_spec(tmp_path, name=name, trials=3, epochs=20, pruner="none", sampler="random")
    storage = f"sqlite:///{home / 'optuna.db'}"
    proc = _start(spec, home, "--workers", "2", "sweep.max_failures=1")
    _wait_running(proc, storage, name, 2)
    time.sleep(1.0)
    (worker,) = _workers(proc.pid)
    os.kill(worker, signal.SIGTERM)
    deadline = time.time() + 30
    while Path(f"/proc/{worker}").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert (
        not Path(f"/proc/{worker}").exists() or b"Z" in Path(f"/proc/{worker}/stat").read_bytes().split()[2]
    ), "the worker did not stop within 30 s"
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name=name, storage=storage)
    (interrupted,) = [t for t in study.trials if t.user_attrs.get("interrupted")]
    (retry,) = [t for t in study.trials if t.user_attrs.get("ups.retry_of") == interrupted.number]
    assert retry.params == interrupted.params and retry.state.name == "COMPLETE"
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 3
    assert "RUNNING" not in {t.state.name for t in study.trials}


def test_a_restart_within_the_grace_period_reaches_the_total(tmp_path):
    """SIGKILL the whole sweep mid-trial and start it again at once (the default grace period is 90 s): the dead
    trial is failed as `killed` at once, retried with its parameters, and does not count toward max_failures."""
    home = tmp_path / "home"
    name = "restart"
    spec = sweep_spec(tmp_path, name=name, trials=2, epochs=30, pruner="none", sampler="random")
    storage = f"sqlite:///{home / 'optuna.db'}"
    proc = _start(spec, home, "sweep.max_failures=1")
    running = _wait_running(proc, storage, name, 1)
    (dead,) = [t for t in running.trials if t.state.name == "RUNNING"]
    deadline = time.time() + 60
    while not optuna.load_study(study_name=name, storage=storage).trials[dead.number].params:
        assert time.time() < deadline, "the trial never drew its parameters"
        time.sleep(0.2)
    time.sleep(1.0)  # training
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    _run_again(proc, home)
    study = optuna.load_study(study_name=name, storage=storage)
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states and states.count("COMPLETE") == 2, states
    dead = study.trials[dead.number]  # (caught RUNNING before it had drawn its parameters)
    retry = [t for t in study.trials if t.user_attrs.get("ups.retry_of") == dead.number]
    assert (
        dead.params
        and len(retry) == 1
        and retry[0].params == dead.params
        and retry[0].state.name == "COMPLETE"
    )
    from ups.sweep.study import outcome

    assert outcome(study.trials[dead.number]) == "killed"
