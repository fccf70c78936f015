"""One run = one MLflow run = one W&B run, sharing one id and name (DESIGN.md, Tracking identity).

Only rank 0 creates runs and logs; other ranks only learn the run id (through `UPS_RUN_ID`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ups import __version__
from ups.spec.load import ResolvedSpec, flatten_tree
from ups.spec.redact import redact, redact_tree
from ups.tracking.workspace import RunRecord, default_mlflow_uri, new_record

log = logging.getLogger(__name__)

RUN_ID_ENV = "UPS_RUN_ID"


def mlflow_metric_name(name: str) -> str:
    """MLflow forbids `@` in metric names: `val/rollout_nrmse@10` is stored as `val/rollout_nrmse_at_10`.

    Everywhere else (W&B, JSON output, specs) the canonical DESIGN.md name is used.
    """
    return name.replace("@", "_at_")


def _mlflow_logger_class():
    from lightning.pytorch.loggers import MLFlowLogger

    class UpsMLFlowLogger(MLFlowLogger):
        def log_metrics(self, metrics, step=None):
            super().log_metrics({mlflow_metric_name(k): v for k, v in metrics.items()}, step)

    return UpsMLFlowLogger


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

    @property
    def run_dir(self) -> Path:
        return self.home / "runs" / self.run_id

    @property
    def is_logging(self) -> bool:
        return self.record is not None

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self._client is not None:
            self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._client is not None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            batch = [Metric(mlflow_metric_name(k), float(v), now, step or 0) for k, v in metrics.items()]
            self._client.log_batch(self.run_id, metrics=batch)
        for logger in self.loggers:
            if logger.__class__.__name__ == "WandbLogger":
                logger.experiment.summary.update(metrics)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self._client is not None:
            for key, value in tags.items():
                self._client.set_tag(self.run_id, key, value)
        for logger in self.loggers:
            if logger.__class__.__name__ == "WandbLogger":
                logger.experiment.summary.update(tags)

    def finish(self, status: str, *, record_status: str | None = None) -> None:
        """status: FINISHED | FAILED | KILLED (also recorded in run.json for `--resume`, unless `record_status`)."""
        if self.record is None:
            return
        self.record.status = record_status or status
        self.record.save(self.home)
        if self._client is not None:
            import mlflow

            mlflow.flush_async_logging()
            self._client.set_terminated(self.run_id, status=status)
        for logger in self.loggers:
            if logger.__class__.__name__ == "WandbLogger":
                import wandb

                if wandb.run is not None:
                    wandb.finish(exit_code=0 if status == "FINISHED" else 1)


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
                f"rank {rank} started without {RUN_ID_ENV}: launch through `ups-exp run` (Lightning starts the "
                f"other ranks), or export {RUN_ID_ENV} to every rank when a cluster launcher starts them"
            )
        return TrackingSession(run_id=run_id, run_name=run_id, experiment=spec.name, home=home, record=None)

    mlflow_on = cfg.mlflow.enabled
    wandb_on = cfg.wandb.enabled and cfg.wandb.mode != "disabled"
    uri = mlflow_uri(spec, home)
    client = None
    if mlflow_on:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
    if resume is not None:
        run_id, run_name = resume.run_id, resume.run_name
        record = resume
        record.status = "RUNNING"
        if client is not None:
            client.update_run(run_id, status="RUNNING")
    else:
        run_name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if client is not None:
            exp_id = ensure_experiment(client, spec.name, uri, home)
            run_id = client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
            client.log_batch(run_id, params=[_param(k, v) for k, v in flat_params(resolved).items()])
        else:
            run_id = uuid.uuid4().hex
        record = new_record(run_id, run_name, spec.name, resolved.fingerprint())
    record.wandb_run_id = run_id if wandb_on else None
    record.save(home)
    os.environ[RUN_ID_ENV] = run_id  # Lightning's DDP launcher re-executes us with this environment

    loggers: list = []
    if client is not None:
        client.set_tag(run_id, "wandb.run_id", run_id if wandb_on else "none")
        loggers.append(
            _mlflow_logger_class()(
                experiment_name=spec.name, tracking_uri=uri, run_id=run_id, synchronous=False
            )
        )
    if wandb_on:
        from lightning.pytorch.loggers import WandbLogger

        wandb_logger = WandbLogger(
            id=run_id,
            name=run_name,
            project=cfg.wandb.project or spec.name,
            entity=cfg.wandb.entity,
            save_dir=str(home),
            mode=cfg.wandb.mode,
            resume="allow",
            group=wandb_group,
            config={
                "spec": redact_tree(resolved.to_dict()),
                "mlflow_run_id": run_id if mlflow_on else None,
                "mlflow_tracking_uri": redact(uri) if mlflow_on else None,
                **tags,
            },
        )
        loggers.append(wandb_logger)
        if client is not None:
            client.set_tag(run_id, "wandb.dir", str(Path(wandb_logger.experiment.dir).parent))
    log.info(
        "run %s (%s) tracking: mlflow=%s wandb=%s",
        run_name,
        run_id,
        redact(uri) if mlflow_on else "off",
        cfg.wandb.mode if wandb_on else "off",
    )
    return TrackingSession(
        run_id=run_id,
        run_name=run_name,
        experiment=spec.name,
        home=home,
        record=record,
        mlflow_uri=uri if mlflow_on else None,
        loggers=loggers,
        _client=client,
    )


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
