"""`ups-exp sweep --launcher slurm`: the study's workers as SLURM jobs, submitted through submitit.

The coordinator (the command the user runs) makes the study and its MLflow parent run as usual, then submits
`--workers` jobs instead of starting local processes. Each job runs one worker (`ups-exp sweep ... --worker-index
k`) on one node with the profile's GPUs; the workers share the study through its storage, which must be a server
every node reaches (PostgreSQL). The coordinator waits for the jobs; Ctrl-C or SIGTERM cancels them.

The storage URL may hold a password: it reaches the jobs through the environment at submission (sbatch exports
the submitter's environment; submitit's local executor starts its jobs with it), never through argv or the
pickled job, which submitit writes to disk. `UPS_SUBMITIT_CLUSTER=local` selects submitit's local executor (the
tests; a dry run on one machine).
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ups.spec.errors import SpecError
from ups.spec.load import ResolvedSpec
from ups.spec.redact import redact
from ups.tracking.workspace import scoped_env

log = logging.getLogger(__name__)

CLUSTER_ENV = "UPS_SUBMITIT_CLUSTER"
INTERRUPTED_EXIT = 130
POLL_S = 2.0
STOPPED_STATES = ("PREEMPTED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "REQUEUED")
"""SLURM states of a job stopped from outside: like a worker stopped by a signal, not a failure."""


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    timeout_min: int = 24 * 60
    cpus_per_worker: int | None = None
    max_requeues: int = 3
    """A worker job that SLURM preempts (or that runs out of time) is resubmitted at most this many times."""


class WorkerJobFailed(RuntimeError):
    """A worker job's `ups-exp sweep --worker-index` exited with an error."""


class WorkerJob:
    """What a submitted job runs: one worker, its output streamed to the job's log.

    submitit calls `checkpoint` when SLURM signals a preemption or the end of the job's time: the worker gets a
    SIGTERM (its trial is recorded as interrupted and queued again), and the job is resubmitted, with the same
    argv, while `requeues < max_requeues`. The study holds all progress, so a resubmitted worker just goes on."""

    def __init__(self, max_requeues: int = 3, requeues: int = 0) -> None:
        self.max_requeues, self.requeues = max_requeues, requeues
        self._proc: subprocess.Popen | None = None

    def __call__(self, argv: list[str]) -> int:
        self._proc = subprocess.Popen(argv)
        # polled, not wait(): a blocking wait holds the Popen's lock, and the preemption handler (`checkpoint`,
        # called from a signal while we are here) must be able to wait for the worker to stop
        while (code := self._proc.poll()) is None:
            time.sleep(0.5)
        if code not in (0, INTERRUPTED_EXIT):
            raise WorkerJobFailed(redact(f"worker exited {code}: {' '.join(argv[3:])}"))
        return code

    def checkpoint(self, argv: list[str]):
        self._stop_worker()
        if self.requeues >= self.max_requeues:
            log.warning("worker job preempted %d time(s): not resubmitted again", self.requeues + 1)
            return None
        import submitit

        return submitit.helpers.DelayedSubmission(WorkerJob(self.max_requeues, self.requeues + 1), argv)

    def _stop_worker(self, grace: float = 30.0) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __getstate__(self) -> dict:
        return {"max_requeues": self.max_requeues, "requeues": self.requeues, "_proc": None}


def cluster() -> str:
    return os.environ.get(CLUSTER_ENV, "").strip() or "slurm"


def check_storage(url: str) -> None:
    """Workers on other nodes need a storage server; a file only works for the local executor."""
    if cluster() == "local" or url.startswith(("postgresql", "mysql")):
        return
    raise SpecError(
        "--launcher slurm runs workers on other nodes: the study needs a storage server they all reach",
        file="command line",
        key="--storage",
        got=redact(url),
        hint="Use --storage postgresql://USER@HOST/DB (or set UPS_SWEEP_STORAGE); see docs/sweeps.md.",
    )


def run_slurm_workers(
    resolved: ResolvedSpec,
    *,
    url: str,
    name: str,
    target: int,
    workers: int,
    folder: Path,
    options: SlurmOptions,
    storage_env: str,
) -> list[int]:
    """Submit `workers` worker jobs, wait for them, and return their exit codes (1 for a job that failed)."""
    try:
        import submitit
    except ImportError:  # pragma: no cover - submitit is a dependency
        raise SpecError(
            "--launcher slurm needs submitit", file="command line", hint="pip install 'submitit>=1.5'"
        ) from None

    from ups.sweep.driver import worker_argv, worker_env

    hw = resolved.spec.hardware
    kind = cluster()
    executor = submitit.AutoExecutor(folder=folder, cluster=kind)
    params: dict = {
        "name": f"ups-sweep-{name}",
        "timeout_min": options.timeout_min,
        "nodes": 1,
        "tasks_per_node": 1,  # one worker per job; a multi-device trial starts its own ranks (torchrun)
    }
    if hw.accelerator == "gpu":
        params["gpus_per_node"] = hw.devices
    if options.cpus_per_worker:
        params["cpus_per_task"] = options.cpus_per_worker
    if options.partition:
        params["slurm_partition"] = options.partition
    executor.update_parameters(**params)
    threads = options.cpus_per_worker
    if kind == "local" and threads is None:  # one machine: share its cores as local workers do
        threads = max(1, (os.cpu_count() or 1) // workers)
    # the jobs' environment is taken at submission (the storage URL, the overrides); it is never pickled
    with scoped_env(**{storage_env: url}, **worker_env(resolved, threads)):
        jobs = [
            executor.submit(WorkerJob(options.max_requeues), worker_argv(resolved, name, target, k))
            for k in range(workers)
        ]
    log.warning(
        "submitted %d worker job(s) to %s: %s (logs in %s)",
        workers,
        kind,
        ", ".join(j.job_id for j in jobs),
        folder,
    )
    try:
        while not all(j.done() for j in jobs):
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        for j in jobs:
            if not j.done():
                j.cancel(check=False)
        log.warning("cancelled the sweep's worker jobs")
        raise
    codes = []
    for j in jobs:
        if (
            j.state.split()[0] in STOPPED_STATES
        ):  # preempted, cancelled, out of time: its trial is queued again
            log.warning("worker job %s ended %s; its trial runs again on the next sweep", j.job_id, j.state)
            codes.append(INTERRUPTED_EXIT)
            continue
        error = j.exception()
        if error is not None:
            log.error("worker job %s failed: %s", j.job_id, str(error).strip().splitlines()[-1:] or error)
            codes.append(1)
        else:
            codes.append(j.result())
    return codes
