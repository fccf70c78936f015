"""One run = one MLflow run = one W&B run, sharing one id and name (DESIGN.md, Tracking identity).

Only rank 0 creates runs and logs; other ranks only learn the run id (through `UPS_RUN_ID`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ups import __version__
from ups.spec.errors import SpecError
from ups.spec.load import ResolvedSpec, flatten_tree
from ups.spec.redact import redact, redact_tree
from ups.tracking.spool import GuardedClient
from ups.tracking.workspace import RunBusy, RunRecord, default_mlflow_uri, lock_run, new_record

log = logging.getLogger(__name__)

RUN_ID_ENV = "UPS_RUN_ID"


def mlflow_metric_name(name: str) -> str:
    """MLflow forbids `@` in metric names: `val/rollout_nrmse@10` is stored as `val/rollout_nrmse_at_10`.

    Everywhere else (W&B, JSON output, specs) the canonical DESIGN.md name is used.
    """
    return name.replace("@", "_at_")


def _mlflow_logger(guard):
    """Lightning's MLflow logger for one run, writing through the run's GuardedClient at `train.log_every_n_steps`:
    handed to its sender thread (a step never waits for the store), and spooled while the store is down.
    The flattened, redacted spec is the run's params (logged once by the session), so hparams are not re-logged."""
    from lightning.pytorch.loggers.logger import Logger
    from lightning.pytorch.utilities import rank_zero_only

    class UpsMLflowLogger(Logger):
        @property
        def name(self) -> str:
            return "mlflow"

        @property
        def version(self) -> str:
            return guard.run_id

        @property
        def experiment(self):
            return guard.client

        @rank_zero_only
        def log_metrics(self, metrics, step=None) -> None:
            guard.log_metrics({mlflow_metric_name(k): float(v) for k, v in metrics.items()}, step or 0)

        @rank_zero_only
        def log_hyperparams(self, params, *args, **kwargs) -> None:
            pass

    return UpsMLflowLogger()


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flat_params(resolved: ResolvedSpec) -> dict[str, str]:
    flat = flatten_tree(redact_tree(resolved.to_dict()))
    return {k: ("null" if v is None else str(v))[:6000] for k, v in flat.items()}


@dataclass
class TrackingSession:
    run_id: str
    run_name: str
    experiment: str
    home: Path
    record: RunRecord | None
    mlflow_uri: str | None = None
    loggers: list = field(default_factory=list)
    _client: Any = None
    _lock: Any = None
    _guard: GuardedClient | None = None

    @property
    def run_dir(self) -> Path:
        return self.home / "runs" / self.run_id

    @property
    def is_logging(self) -> bool:
        return self.record is not None

    @property
    def unsent(self) -> int:
        """MLflow items spooled during an outage, waiting for `ups-exp sync`."""
        return self._guard.spooled if self._guard is not None else 0

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self._guard is not None:
            self._guard.log_artifact(path, artifact_path)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._guard is not None:
            self._guard.log_metrics({mlflow_metric_name(k): float(v) for k, v in metrics.items()}, step or 0)
        for logger in self.loggers:
            if logger.__class__.__name__ == "WandbLogger":
                logger.experiment.summary.update(metrics)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self._guard is not None:
            self._guard.set_tags(tags)
        for logger in self.loggers:
            if logger.__class__.__name__ == "WandbLogger":
                logger.experiment.summary.update(tags)

    def remember_best(self, path: Path) -> None:
        """Record which checkpoint is the run's best (run.json and the MLflow tag `ups.best_checkpoint`)."""
        if self.record is None:
            return
        self.record.best_checkpoint = str(path)
        self.record.save(self.home)
        if self._guard is not None:
            self._guard.set_tags({"ups.best_checkpoint": path.name})

    def finish(self, status: str, *, record_status: str | None = None, reason: str | None = None) -> None:
        """status: FINISHED | FAILED | KILLED, in MLflow, W&B and run.json (which `--resume` reads; `record_status`
        overrides it there). `reason` (why it FAILED) goes to all three, redacted: tag `ups.fail_reason`.

        Each store is finished even when another one fails: an unreachable MLflow gets the status through the
        spool (`ups-exp sync`)."""
        if self.record is None:
            return
        reason = redact(reason)[:1000] if reason else None
        self.record.status = record_status or status
        self.record.reason = reason
        self.record.save(self.home)
        if self._guard is not None:
            if reason:
                self._guard.set_tags({"ups.fail_reason": reason})
            self._guard.set_terminated(status)
            self._guard.flush()  # what is still queued is sent, or spooled (bounded)
        for logger in self.loggers:
            if logger.__class__.__name__ == "WandbLogger":
                import wandb

                if wandb.run is not None:
                    if reason:
                        wandb.run.summary["ups.fail_reason"] = reason
                    wandb.finish(exit_code=0 if status == "FINISHED" else 1)
        from ups.tracking.workspace import release_run

        release_run(self._lock)


def connect(uri: str, *, key: str | None = None):
    """An MlflowClient whose store answers and has its schema (bounded wait, race-free first use)."""
    from ups.tracking.store import open_store

    return open_store(uri, key=key)


def uri_key(spec) -> str | None:
    """Where `mlflow_uri` took the URI from, as errors name it."""
    if spec.tracking.mlflow.uri:
        return "tracking.mlflow.uri"
    return "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else None


def mlflow_uri(spec, home: Path) -> str:
    """The spec's tracking URI, else $MLFLOW_TRACKING_URI, else the workspace's sqlite file."""
    return spec.tracking.mlflow.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_mlflow_uri(home)


def ensure_experiment(client: Any, name: str, uri: str, home: Path) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    # a database store (sqlite or a server's PostgreSQL) has no artifact root of its own: the workspace's, not
    # ./mlruns in whatever folder the command ran from; a tracking server keeps its own
    served = uri.startswith(("http://", "https://", "databricks"))
    location = None if served else (home / "mlartifacts" / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def start_tracking(
    resolved: ResolvedSpec,
    home: Path,
    *,
    resume: RunRecord | None,
    rank: int,
    tags: dict[str, str],
    wandb_group: str | None = None,
) -> TrackingSession:
    spec = resolved.spec
    cfg = spec.tracking
    if rank != 0:
        run_id = os.environ.get(RUN_ID_ENV)
        if not run_id:
            raise RuntimeError(
                f"rank {rank} started without the run's id: launch through `ups-exp run` (Lightning starts the "
                "other ranks) or with the torchrun/srun command `ups-exp run SPEC --print-launch` prints (rank 0 "
                "then broadcasts the run id)"
            )
        return TrackingSession(run_id=run_id, run_name=run_id, experiment=spec.name, home=home, record=None)

    mlflow_on = cfg.mlflow.enabled
    wandb_on = cfg.wandb.enabled and cfg.wandb.mode != "disabled"
    uri = mlflow_uri(spec, home)
    client = None
    if mlflow_on:
        client = connect(uri, key=uri_key(spec))
    lock = None
    if resume is not None:
        run_id, run_name = resume.run_id, resume.run_name
        try:
            lock = lock_run(home, run_id)
        except RunBusy:
            raise SpecError(
                f"run {run_id} is still running (process {resume.pid} on {resume.host})",
                file=str(resolved.path),
                hint="Wait for it, or stop it first: --resume never attaches to a live run.",
            ) from None
        record = resume
        record.status, record.reason = "RUNNING", None
        record.host, record.pid = socket.gethostname(), os.getpid()
        if client is not None:
            client.update_run(run_id, status="RUNNING")
    else:
        run_name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if client is not None:
            exp_id = ensure_experiment(client, spec.name, uri, home)
            run_id = client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
            lock = lock_run(home, run_id)
        else:
            run_id = uuid.uuid4().hex
            lock = lock_run(home, run_id)
        recorded = json.loads(json.dumps(redact_tree(resolved.non_default_dict()), default=str))
        record = new_record(run_id, run_name, spec.name, resolved.fingerprint(), recorded)
    record.wandb_run_id = run_id if wandb_on else None
    record.save(home)
    os.environ[RUN_ID_ENV] = run_id  # Lightning's DDP launcher re-executes us with this environment
    session = TrackingSession(
        run_id=run_id,
        run_name=run_name,
        experiment=spec.name,
        home=home,
        record=record,
        mlflow_uri=uri if mlflow_on else None,
        _client=client,
        _lock=lock,
        _guard=GuardedClient(client, run_id, home / "runs" / run_id, background=True)
        if client is not None
        else None,
    )
    if resume is not None and session._guard is not None:
        if sent := session._guard.adopt():  # what the interrupted attempt spooled during an outage
            log.info("sent %d item(s) the earlier attempt of run %s had spooled", sent, run_id)
    try:
        if client is not None and resume is None:
            client.log_batch(run_id, params=[_param(k, v) for k, v in flat_params(resolved).items()])
        session.loggers = _loggers(resolved, session, uri, tags, wandb_group)
    except BaseException as exc:  # the run exists: it must not stay RUNNING
        session.finish("FAILED", reason=f"tracking could not start: {exc.__class__.__name__}: {exc}")
        raise
    log.info(
        "run %s (%s) tracking: mlflow=%s wandb=%s",
        run_name,
        run_id,
        redact(uri) if mlflow_on else "off",
        cfg.wandb.mode if wandb_on else "off",
    )
    return session


def _loggers(resolved: ResolvedSpec, session: TrackingSession, uri: str, tags: dict[str, str], wandb_group):
    """Lightning's MLflow and W&B loggers for the session's run."""
    spec, cfg, run_id = resolved.spec, resolved.spec.tracking, session.run_id
    client = session._client
    wandb_on = cfg.wandb.enabled and cfg.wandb.mode != "disabled"
    loggers: list = []
    if client is not None:
        client.set_tag(run_id, "wandb.run_id", run_id if wandb_on else "none")
        loggers.append(_mlflow_logger(session._guard))
    if wandb_on:
        from lightning.pytorch.loggers import WandbLogger

        wandb_logger = WandbLogger(
            id=run_id,
            name=session.run_name,
            project=cfg.wandb.project or spec.name,
            entity=cfg.wandb.entity,
            save_dir=str(session.home),
            mode=cfg.wandb.mode,
            resume="allow",
            group=wandb_group,
            config={
                "spec": redact_tree(resolved.to_dict()),
                "mlflow_run_id": run_id if client is not None else None,
                "mlflow_tracking_uri": redact(uri) if client is not None else None,
                **tags,
            },
        )
        loggers.append(wandb_logger)
        from ups.console import redacted_argv

        with redacted_argv():  # wandb.init records the command line
            folder = Path(wandb_logger.experiment.dir).parent
        if client is not None:
            client.set_tag(run_id, "wandb.dir", str(folder))
    return loggers


def _param(key: str, value: str):
    from mlflow.entities import Param

    return Param(key, value)


def base_tags(resolved: ResolvedSpec, data_fingerprint: str) -> dict[str, str]:
    return {
        "ups.version": __version__,
        "ups.stage": resolved.spec.stage.kind,
        "ups.spec_hash": resolved.fingerprint(),
        "ups.spec_file": str(resolved.path),
        "ups.data_fingerprint": data_fingerprint,
        "mlflow.source.git.commit": git_commit(),
    }
