"""The local workspace ($UPS_HOME, default ./experiments) and the environment that keeps tools inside it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path


def home(*, create: bool = True) -> Path:
    """$UPS_HOME (default ./experiments), made unless `create` is False (read-only commands make nothing)."""
    path = Path(os.environ.get("UPS_HOME", "experiments")).expanduser().resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def default_mlflow_uri(home_dir: Path) -> str:
    return f"sqlite:///{home_dir / 'mlflow.db'}"


_SET_BY_US: dict[str, str] = {}


@contextlib.contextmanager
def scoped_env(**values: str):
    """Set environment variables for the duration of a block (what child processes started in it inherit), then
    restore them: a library call leaves the caller's environment as it was."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def contain_environment(home_dir: Path) -> None:
    """Point every tool's files into the workspace and keep them off the network (unless asked).

    Only fills in variables the user has not set.
    """
    wandb = home_dir / "wandb"
    defaults = {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "WANDB_DIR": str(home_dir),  # W&B adds its own `wandb/` folder below this
        "WANDB_CACHE_DIR": str(wandb / ".cache"),
        "WANDB_CONFIG_DIR": str(wandb / ".config"),
        "WANDB_DATA_DIR": str(wandb / ".data"),
        "WANDB_ARTIFACT_DIR": str(wandb / ".artifacts"),
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
        "MPLCONFIGDIR": str(home_dir / ".matplotlib"),
        "GIT_PYTHON_REFRESH": "quiet",
        # a tracking server that is down costs a run a few seconds once (then it spools), not minutes per call
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    }
    for key, value in defaults.items():
        # a value we set for an earlier workspace in this process is ours to replace; the user's is not
        if key not in os.environ or os.environ[key] == _SET_BY_US.get(key):
            os.environ[key] = value
            _SET_BY_US[key] = value


@dataclass
class RunRecord:
    """`$UPS_HOME/runs/<run_id>/run.json`: what `--resume` looks for (independent of any tracking server)."""

    run_id: str
    run_name: str
    experiment: str
    spec_hash: str
    status: str  # RUNNING | FINISHED | FAILED | KILLED | PRUNED (a sweep stopped it)
    created: float
    wandb_run_id: str | None = None
    reason: str | None = None
    """Why it FAILED (redacted), or None."""
    best_checkpoint: str | None = None
    """The checkpoint whose metrics the run logged (the one promote, export and pipelines load)."""
    host: str | None = None
    pid: int | None = None
    """Where the process that last ran it lives (shown when `--resume` refuses a live run)."""
    spec: dict | None = None
    """The resolved spec's values that differ from the defaults, redacted (`--resume-run` names what differs)."""

    @staticmethod
    def path(home_dir: Path, run_id: str) -> Path:
        return home_dir / "runs" / run_id / "run.json"

    def save(self, home_dir: Path) -> None:
        path = self.path(home_dir, self.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, home_dir: Path, run_id: str) -> RunRecord | None:
        """The record of `run_id` in this workspace; None when there is none (or it cannot be read)."""
        try:
            return cls(**json.loads(cls.path(home_dir, run_id).read_text()))
        except (ValueError, TypeError, OSError):
            return None

    @classmethod
    def latest_unfinished(cls, home_dir: Path, spec_hash: str) -> RunRecord | None:
        found = []
        for path in (home_dir / "runs").glob("*/run.json"):
            try:
                rec = cls(**json.loads(path.read_text()))
            except (ValueError, TypeError, OSError):
                continue
            if rec.spec_hash == spec_hash and rec.status not in ("FINISHED", "PRUNED"):
                found.append(rec)
        return max(found, key=lambda r: r.created) if found else None


def new_record(
    run_id: str, run_name: str, experiment: str, spec_hash: str, spec: dict | None = None
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        run_name=run_name,
        experiment=experiment,
        spec_hash=spec_hash,
        status="RUNNING",
        created=time.time(),
        host=socket.gethostname(),
        pid=os.getpid(),
        spec=spec,
    )


class RunBusy(RuntimeError):
    """Another live process holds the run's lock."""


def lock_run(home_dir: Path, run_id: str):
    """Hold `runs/<id>/run.lock` for as long as this process runs the run (the OS drops it when the process dies,
    even on SIGKILL). Raises RunBusy when another live process holds it. Returns the open file: keep it."""
    import fcntl

    path = home_dir / "runs" / run_id / "run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held until release_run()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunBusy(run_id) from None
    return handle


def release_run(handle) -> None:
    if handle is not None and not handle.closed:
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
