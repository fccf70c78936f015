"""`ups-exp run` of a `stages:` spec: one MLflow parent run, a child run per stage, one W&B group.

Each stage consumes the previous stage's predictor through that stage's recorded run id (never a guessed path).
A stage's identity is the hash of its resolved spec plus the run id it consumes; a finished stage with the same
identity is skipped when the pipeline runs again, so a failed stage leaves the earlier ones usable and the same
command resumes. `--from-stage NAME` trains NAME and every later stage again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ups.run.single import RunHooks, run_spec
from ups.spec.errors import SpecError, did_you_mean
from ups.spec.load import ResolvedPipeline
from ups.tracking import workspace

log = logging.getLogger(__name__)


@dataclass
class StageRecord:
    """`$UPS_HOME/pipelines/<name>/<identity>.json`: a finished stage, what a later run may skip."""

    stage: str
    identity: str
    run_id: str
    checkpoint: str
    metrics: dict[str, float]
    wall_seconds: float
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "run_id": self.run_id,
            "metrics": self.metrics,
            "wall_seconds": self.wall_seconds,
            "skipped": self.skipped,
        }


@dataclass
class PipelineResult:
    run_id: str
    experiment: str
    stages: list[StageRecord] = field(default_factory=list)
    wall_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        last = self.stages[-1]
        return {
            "run_id": self.run_id,
            "experiment": self.experiment,
            "metrics": last.metrics,
            "checkpoint": last.checkpoint,
            "stages": [s.to_json() for s in self.stages],
        }


def _identity(fingerprint: str, upstream: str | None) -> str:
    return hashlib.sha256(f"{fingerprint}:{upstream or ''}".encode()).hexdigest()[:16]


def _read(path: Path) -> StageRecord | None:
    try:
        return StageRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write(path: Path, record: StageRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=1))
    os.replace(tmp, path)


def run_pipeline(
    pipeline: ResolvedPipeline, *, from_stage: str | None = None, progress_bar: bool = True
) -> PipelineResult:
    started = time.time()
    names, stages = pipeline.names, pipeline.stages
    spec_file = str(pipeline.path)
    if from_stage is not None and from_stage not in names:
        raise SpecError("no such stage", file="command line", key="--from-stage", got=from_stage,
                        hint=did_you_mean(from_stage, names))  # fmt: skip
    home = workspace.home()
    workspace.contain_environment(home)
    name = stages[0].spec.name
    folder = home / "pipelines" / name
    whole = hashlib.sha256("".join(r.fingerprint() for r in stages).encode()).hexdigest()[:16]
    parent = _Parent(stages[0], home, name, whole)
    result = PipelineResult(run_id=parent.run_id or whole, experiment=name)
    upstream: str | None = None
    restarting = False
    try:
        for i, (stage_name, resolved) in enumerate(zip(names, stages)):
            identity = _identity(resolved.fingerprint(), upstream)
            record_path = folder / f"{identity}.json"
            restarting = restarting or stage_name == from_stage
            record = None if restarting else _read(record_path)
            if record is not None and not Path(record.checkpoint).is_file():
                raise SpecError(
                    f"stage {stage_name!r} finished as run {record.run_id}, but its checkpoint is gone",
                    file=spec_file,
                    key="stages",
                    got=record.checkpoint,
                    hint=f"Train it again: --from-stage {stage_name}.",
                )
            if record is not None:
                log.info("stage %s: finished before (run %s), skipped", stage_name, record.run_id)
                record.skipped = True
                result.stages.append(record)
                upstream = record.run_id
                continue
            if from_stage is not None and not restarting:
                raise SpecError(
                    f"stage {stage_name!r} before {from_stage!r} has not finished for this resolved spec",
                    file=spec_file,
                    key="--from-stage",
                    hint=f"Run the pipeline without --from-stage first, or restart from {stage_name!r}.",
                )
            if upstream is not None:
                _require_checkpoint(home, names[i - 1], upstream, stage_name, spec_file)
            hooks = RunHooks(
                tags={"ups.pipeline": name, "ups.pipeline_stage": stage_name, "ups.stage_identity": identity,
                      **({"mlflow.parentRunId": parent.run_id} if parent.run_id else {})},
                wandb_group=f"{name}-{whole[:8]}",
                upstream=upstream,
            )  # fmt: skip
            log.info("stage %s (%d/%d): %s", stage_name, i + 1, len(names), resolved.spec.stage.kind)
            run = run_spec(resolved, progress_bar=progress_bar, trial=hooks)
            if run is None:  # a non-zero DDP rank
                continue
            record = StageRecord(
                stage_name, identity, run.run_id, run.checkpoint, run.metrics, run.wall_seconds
            )
            _write(record_path, record)
            result.stages.append(record)
            upstream = run.run_id
    except BaseException:
        parent.finish("FAILED")
        raise
    parent.finish("FINISHED", result)
    result.wall_seconds = time.time() - started
    return result


def finished_stages(pipeline: ResolvedPipeline) -> list[StageRecord]:
    """The pipeline's stages that finished for this resolved spec, in order, up to the first that did not."""
    folder = workspace.home() / "pipelines" / pipeline.stages[0].spec.name
    found, upstream = [], None
    for resolved in pipeline.stages:
        record = _read(folder / f"{_identity(resolved.fingerprint(), upstream)}.json")
        if record is None:
            break
        found.append(record)
        upstream = record.run_id
    return found


def _require_checkpoint(home: Path, previous: str, run_id: str, stage: str, spec_file: str) -> None:
    from ups.loading import run_checkpoint

    try:
        run_checkpoint(run_id, home=home)
    except SpecError:
        raise SpecError(
            f"stage {stage!r} builds on stage {previous!r}, whose run {run_id} has no checkpoint",
            file=spec_file,
            key="stages",
            hint=f"Restart from it: --from-stage {previous}.",
        ) from None


class _Parent:
    """The pipeline's MLflow parent run: made once per resolved pipeline, reopened when it runs again."""

    def __init__(self, first, home: Path, name: str, whole: str) -> None:
        self.client = None
        self.run_id: str | None = None
        if not first.spec.tracking.mlflow.enabled:
            return
        from mlflow.tracking import MlflowClient

        from ups.tracking.session import ensure_experiment, mlflow_uri

        uri = mlflow_uri(first.spec, home)
        self.client = MlflowClient(tracking_uri=uri)
        exp_id = ensure_experiment(self.client, name, uri, home)
        found = self.client.search_runs(
            [exp_id], filter_string=f"tags.`ups.pipeline_hash` = '{whole}'", max_results=1
        )
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {"ups.role": "pipeline", "ups.pipeline_hash": whole, "ups.spec_file": str(first.path)}
            self.run_id = self.client.create_run(exp_id, run_name=f"{name}-pipeline", tags=tags).info.run_id

    def finish(self, status: str, result: PipelineResult | None = None) -> None:
        if self.client is None:
            return
        if result is not None:
            for record in result.stages:
                self.client.set_tag(self.run_id, f"ups.stage.{record.stage}", record.run_id)
        self.client.set_terminated(self.run_id, status=status)
