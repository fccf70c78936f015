"""`ups-exp sweep`: an Optuna study whose trials are Lightning runs, with pruning, resume and parallel workers.

The command is the coordinator: it finds (or creates) the study and its MLflow parent run, starts `--workers`
worker processes (re-invocations of this command with `--worker-index`), and summarizes. Each worker runs
`study.optimize` (so RDB storages keep a heartbeat) until the study holds `sweep.trials` finished trials.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ups.spec.errors import SpecError, did_you_mean
from ups.spec.load import ResolvedSpec
from ups.spec.redact import redact
from ups.sweep.parent import best_trials, finish_parent, parent_run
from ups.sweep.slurm import SlurmOptions, check_storage, run_slurm_workers
from ups.tracking import workspace

log = logging.getLogger(__name__)

FINISHED = ("COMPLETE", "PRUNED")
INTERRUPTED_EXIT = 130

STORAGE_ENV = "UPS_SWEEP_STORAGE"
"""The Optuna storage URL a worker receives (and a user may set instead of --storage, to keep it out of argv)."""


class SweepFailed(RuntimeError):
    """The study reached `sweep.max_failures` failed trials."""


@dataclass
class SweepResult:
    study: str
    storage: str
    trials: dict[str, int]
    best: dict[str, Any] | list[dict[str, Any]] | None

    def to_json(self) -> dict[str, Any]:
        return {"study": self.study, "storage": self.storage, "trials": self.trials, "best": self.best}


def _check_sweepable(resolved: ResolvedSpec) -> None:
    spec = resolved.spec
    if resolved.search_space is None:
        from ups.spec.paths import ConfigPath

        choices = ConfigPath.for_spec(resolved.path).search_space_names()
        raise SpecError(
            "a sweep needs a search space",
            file=str(resolved.path),
            key="search_space",
            hint=did_you_mean("", choices).replace("Choices", "Name one of"),
        )
    if spec.hardware.num_nodes > 1:
        raise SpecError(
            "a sweep trial runs on one node (its devices there); sweep across nodes with one worker per node",
            file=str(resolved.path),
            key="hardware.num_nodes",
            got=spec.hardware.num_nodes,
            hint="Use --launcher slurm --workers N (one worker job per node), or start `ups-exp sweep` on each node.",
        )


def storage_url(given: str | None, configured: str | None, home) -> str:
    """--storage, then $UPS_SWEEP_STORAGE (what workers receive), then `sweep.storage`, then the workspace's sqlite."""
    from ups.sweep.study import default_storage

    return given or os.environ.get(STORAGE_ENV) or configured or default_storage(home)


def storage_key(given: str | None, configured: str | None) -> str | None:
    """Where `storage_url` took the URL from, as errors name it (None: the workspace's default)."""
    if given:
        return "--storage"
    if os.environ.get(STORAGE_ENV):
        return f"${STORAGE_ENV}"
    return "sweep.storage" if configured else None


def run_sweep(
    resolved: ResolvedSpec,
    *,
    trials: int | None = None,
    workers: int = 1,
    storage: str | None = None,
    study: str | None = None,
    new_study: bool = False,
    worker_index: int | None = None,
    launcher: str = "local",
    slurm: SlurmOptions | None = None,
) -> SweepResult | None:
    import optuna

    from ups.sweep.study import count_states, find_or_create_study, make_storage

    _check_sweepable(resolved)
    if trials is not None and trials < 1:
        raise SpecError("--trials must be >= 1", file="command line", got=trials)
    if workers < 1:
        raise SpecError("--workers must be >= 1", file="command line", got=workers)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = resolved.spec.sweep
    home = workspace.home()
    workspace.contain_environment(home)
    url = storage_url(storage, cfg.storage, home)
    if launcher == "slurm" and worker_index is None:
        check_storage(url)
    elif worker_index is None:
        worker_gpus(
            resolved, workers
        )  # enough GPUs for the workers: checked before the study or a run exists
    store = make_storage(url, cfg, key=storage_key(storage, cfg.storage))
    target = trials or cfg.trials

    if worker_index is not None:  # a worker started by a coordinator
        _work(resolved, store, study or resolved.spec.name, target, worker_index, url=url)
        return None

    name, _created = find_or_create_study(resolved, store, name=study, new_study=new_study)
    _queue_retries(store, name)  # before any worker starts: the retries go first, not fresh trials
    parent_run_id = parent_run(resolved, store, name, home)
    try:
        if launcher == "slurm":  # every worker is a job; this process only waits
            failed = None
            codes = run_slurm_workers(
                resolved,
                url=url,
                name=name,
                target=target,
                workers=workers,
                folder=home / "sweeps" / name / "jobs",
                options=slurm or SlurmOptions(),
                storage_env=STORAGE_ENV,
            )
        else:
            failed, codes = _run_local_workers(
                resolved, store, url=url, name=name, target=target, workers=workers
            )
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM to the coordinator: its workers were stopped
        _report_unsent(finish_parent(resolved, None, parent_run_id, home, status="KILLED"), parent_run_id)
        raise
    result_study = optuna.load_study(study_name=name, storage=store)
    counts = count_states(result_study)
    _report_unsent(finish_parent(resolved, result_study, parent_run_id, home), parent_run_id)
    # a worker stopped by a signal (a preempted job) re-queued its trial, and the others went on: not a failure
    if stopped := sum(1 for c in codes if c == INTERRUPTED_EXIT):
        log.warning("%d worker(s) were stopped by a signal; their trials were queued again", stopped)
    if failed is None and any(c not in (0, INTERRUPTED_EXIT) for c in codes):
        failed = SweepFailed(f"{sum(1 for c in codes if c not in (0, INTERRUPTED_EXIT))} worker(s) failed")
    if failed is None and counts["fail"] >= cfg.max_failures:
        failed = SweepFailed(
            f"the study holds {counts['fail']} failed trials (sweep.max_failures={cfg.max_failures})"
        )
    result = SweepResult(
        study=name,
        storage=redact(url),
        trials={"complete": counts["complete"], "pruned": counts["pruned"], "failed": counts["fail"]},
        best=best_trials(result_study),
    )
    if failed is not None:
        raise SweepFailed(f"{failed}; see `ups-exp status {resolved.path}`") from None
    return result


def _report_unsent(unsent: int, run_id: str | None) -> None:
    if unsent:  # the trials are recorded in the study; the parent's summary waits in its folder
        log.warning(
            "MLflow was unreachable: %d item(s) of the sweep's parent run %s await `ups-exp sync %s`",
            unsent,
            run_id,
            run_id,
        )


def _run_local_workers(
    resolved: ResolvedSpec, store, *, url: str, name: str, target: int, workers: int
) -> tuple[SweepFailed | None, list[int]]:
    """This process is worker 0 and starts workers 1..N-1; returns worker 0's failure and the others' exit codes."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    gpus = worker_gpus(resolved, workers)
    # this process is worker 0: it sees its own share only (set before CUDA starts; restored when the sweep ends)
    own = {"CUDA_VISIBLE_DEVICES": gpus[0]} if gpus is not None else {}
    procs = [
        _spawn_worker(resolved, url, name, target, k, threads, gpus=gpus[k] if gpus else None)
        for k in range(1, workers)
    ]
    try:
        failed = None
        try:
            with workspace.scoped_env(**own):
                _work(resolved, store, name, target, 0, threads=threads if workers > 1 else None, url=url)
        except SweepFailed as exc:
            failed = exc
        return failed, [p.wait() for p in procs]
    except KeyboardInterrupt:
        _stop_workers(procs)
        raise


def worker_gpus(resolved: ResolvedSpec, workers: int) -> list[str] | None:
    """Each worker's `CUDA_VISIBLE_DEVICES`: disjoint slices of `hardware.devices` visible GPUs (None for CPU)."""
    from ups.spec.machine import visible_gpu_ids

    hw = resolved.spec.hardware
    if hw.accelerator != "gpu":
        return None
    ids = visible_gpu_ids()
    if workers * hw.devices > len(ids):
        raise SpecError(
            f"--workers {workers} with {hw.devices} GPU(s) per trial needs {workers * hw.devices} GPUs; "
            f"{len(ids)} are visible",
            file="command line",
            key="--workers",
            got=workers,
            hint=f"Use --workers {max(1, len(ids) // hw.devices)}, or sweep from several machines on one storage.",
        )
    return [",".join(ids[k * hw.devices : (k + 1) * hw.devices]) for k in range(workers)]


def _spawn_worker(
    resolved: ResolvedSpec,
    url: str,
    name: str,
    target: int,
    index: int,
    threads: int,
    *,
    gpus: str | None = None,
) -> subprocess.Popen:
    cmd = worker_argv(resolved, name, target, index)
    # the storage URL and the overrides may hold a password: through the environment, never argv (`ps` and W&B
    # show argv)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), STORAGE_ENV: url, **worker_env(resolved, threads)}
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    env.pop("UPS_RUN_ID", None)
    return subprocess.Popen(cmd, env=env)


def worker_env(resolved: ResolvedSpec, threads: int | None) -> dict[str, str]:
    """The environment that hands a worker the coordinator's overrides (and its share of the threads)."""
    from ups.spec.overrides import child_env

    pinned = (
        [] if resolved.spec.hardware.num_threads or threads is None else [f"hardware.num_threads={threads}"]
    )
    return child_env([*resolved.overrides, *pinned])


def worker_argv(resolved: ResolvedSpec, name: str, target: int, index: int) -> list[str]:
    """The command of worker `index` (a local process or a SLURM job). Neither the storage URL nor the overrides
    are in it: they travel in the environment (`worker_env`)."""
    return [
        sys.executable,
        "-m",
        "ups.cli",
        "sweep",
        str(Path(resolved.path).resolve()),
        "--study",
        name,
        "--trials",
        str(target),
        "--worker-index",
        str(index),
    ]


def _stop_workers(procs: list[subprocess.Popen], grace: float = 20.0) -> None:
    """SIGTERM each live worker (each records its trial as interrupted), wait up to `grace` s, then SIGKILL."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker %d did not stop within %.0f s: killed", p.pid, grace)
            p.kill()
            p.wait()


def _work(
    resolved: ResolvedSpec, store, name: str, target: int, index: int, threads: int | None = None, *, url: str
) -> None:
    """One worker: optimize until the study holds `target` finished (or in-flight) trials."""
    import torch

    previous_threads = torch.get_num_threads()
    if threads is not None and not resolved.spec.hardware.num_threads:  # the spec's own setting wins
        torch.set_num_threads(threads)
    try:
        _optimize(resolved, store, name, target, index, url)
    finally:
        torch.set_num_threads(previous_threads)


def _optimize(resolved: ResolvedSpec, store, name: str, target: int, index: int, url: str) -> None:
    import optuna

    from ups.sweep.objective import Objective
    from ups.sweep.study import (
        TrialSeededSampler,
        comparable_hash,
        counts_as_failure,
        fail_dead_local_trials,
        make_pruner,
        make_sampler,
    )

    cfg = resolved.spec.sweep
    made_for = optuna.load_study(study_name=name, storage=store).user_attrs.get("ups.comparable_hash")
    if made_for is not None and made_for != comparable_hash(
        resolved
    ):  # e.g. a file edited since the sweep began
        raise SpecError(
            f"study '{name}' was made from a different spec or search space than this worker read",
            file=str(resolved.path),
            hint="Keep spec and search-space files unchanged while a sweep runs; start a new study for changes.",
        )
    grid = {p.key: p.grid() for p in resolved.search_space} if cfg.sampler == "grid" else None
    # seeded by trial number: one worker replays the seed's sequence, and no two workers (or machines) share a
    # seed; QMC draws point k of one scrambled sequence, so every worker needs the same seed, and the grid sampler
    # remade per trial revisits grid points (measured: two trials of a two-point grid both drew the same point)
    if cfg.sampler in ("qmc", "grid"):
        sampler = make_sampler(cfg, seed=cfg.seed, grid=grid)
    else:
        sampler = TrialSeededSampler(lambda seed: make_sampler(cfg, seed=seed, grid=grid), cfg.seed)
    study = optuna.load_study(
        study_name=name, storage=store, sampler=sampler, pruner=make_pruner(cfg, resolved.spec)
    )
    heartbeat = isinstance(store, optuna.storages.RDBStorage)

    def finished(s) -> int:
        return sum(1 for t in s.get_trials(deepcopy=False) if t.state.name in FINISHED)

    def enough(s) -> bool:
        trials = s.get_trials(deepcopy=False)
        busy = sum(1 for t in trials if t.state.name in FINISHED or t.state.name == "RUNNING")
        return busy >= target

    def failures(s) -> int:
        return sum(1 for t in s.get_trials(deepcopy=False) if counts_as_failure(t))

    stopped_by_failures = False

    def callback(s, _trial) -> None:
        nonlocal stopped_by_failures
        if failures(s) >= cfg.max_failures:
            stopped_by_failures = True
            s.stop()
        elif enough(s):
            s.stop()

    objective = Objective(
        resolved, study_name=name, parent_run_id=study.user_attrs.get("mlflow_parent_run_id"), storage=url
    )
    while True:
        # a dead worker's RUNNING trial: FAIL at once when it ran on this machine (its pid is gone), else when its
        # heartbeat goes stale; either way it is retried with the same parameters, and never counts as a failure
        fail_dead_local_trials(study)
        if heartbeat:
            optuna.storages.fail_stale_trials(study)
        if index == 0:
            _queue_retries(store, name)
        if finished(study) >= target:
            return
        if failures(study) >= cfg.max_failures:
            raise SweepFailed(
                f"the study holds {failures(study)} failed trials (sweep.max_failures={cfg.max_failures})"
            )
        if enough(study):  # the rest are RUNNING in other workers: wait for them, they may yet die
            if not heartbeat and not _any_running_here(study):
                return  # a journal storage cannot tell a dead remote worker from a slow one
            time.sleep(min(5.0, cfg.heartbeat_seconds))
            continue
        study.optimize(
            objective, n_trials=None, callbacks=[callback], catch=(Exception,), gc_after_trial=True
        )
        if stopped_by_failures:
            raise SweepFailed(f"{failures(study)} trials failed (sweep.max_failures={cfg.max_failures})")


def _queue_retries(store, name: str) -> None:
    import optuna

    from ups.sweep.study import fail_dead_local_trials, retry_interrupted

    study = optuna.load_study(study_name=name, storage=store)
    fail_dead_local_trials(study)
    if queued := retry_interrupted(study):
        log.info("queued %d interrupted or killed trial(s) of study %s to run again", queued, name)


def _any_running_here(study) -> bool:
    host = socket.gethostname()
    return any(
        t.state.name == "RUNNING" and str(t.user_attrs.get("worker", "")).rpartition(":")[0] == host
        for t in study.get_trials(deepcopy=False)
    )
