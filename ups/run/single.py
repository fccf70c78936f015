"""`ups-exp run`: one training run of a spec, tracked, evaluated on val and test, summarized."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ups.run import starts
from ups.run.distributed import global_rank
from ups.spec.errors import SpecError
from ups.spec.load import ResolvedSpec
from ups.spec.schema import DEFAULT_BLOCKS
from ups.tracking import workspace
from ups.tracking.workspace import RunRecord

log = logging.getLogger(__name__)


class RunInterrupted(Exception):
    """SIGINT/SIGTERM stopped the run; `--resume` continues it from its last checkpoint."""


@dataclass
class RunHooks:
    """What a sweep or a pipeline adds to a run: callbacks, tags tying it to its parent, its W&B group."""

    callbacks: list = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    wandb_group: str | None = None
    on_start: Callable[[str], None] | None = None
    """Called with the run id as soon as it exists (so even failed trials point at their run)."""
    plots: bool = True
    """Draw the rollout/error-growth plots (`sweep.trial_plots` for trials); the spec and metrics always go."""
    test: bool = True
    """Evaluate the test split (sweep trials are scored on validation only: the test split never selects)."""
    upstream: str | None = None
    """The run id or model URI this stage builds on (a pipeline's previous stage); else the spec's `stage.from`."""


@dataclass
class RunResult:
    run_id: str
    experiment: str
    metrics: dict[str, float]
    checkpoint: str
    wall_seconds: float
    where: list[str] = field(default_factory=list)
    extras: dict[str, float] = field(default_factory=dict)
    """The model's size and speed (`model/num_params`, `model/inference_ms`: a batch-32 forward pass, possible sweep
    objectives; `model/rollout_ms` or, steady, `model/sample_ms`: what the coarse solves are compared with)."""
    stage: str = DEFAULT_BLOCKS["stage"]
    steps: int = 0
    """Optimizer steps taken."""
    planned_steps: int = 0
    """Optimizer steps the budget (`train.max_epochs` × batches per epoch) asked for."""
    unsent: int = 0
    """MLflow items spooled in the run's folder during a tracking outage (`ups-exp sync` sends them)."""
    stopped_by: str | None = None
    """`max_time` when `train.max_time_minutes` cut training short (quality then depends on the machine's speed),
    `early_stopping` when early stopping ended it, None when the step budget ran out."""

    def to_json(self) -> dict:
        return {
            "run_id": self.run_id,
            "experiment": self.experiment,
            "metrics": self.metrics,
            "checkpoint": self.checkpoint,
            "steps": self.steps,
            "planned_steps": self.planned_steps,
            "stopped_by": self.stopped_by,
            "unsent": self.unsent,
            "model": self.extras,
            "wall_seconds": round(self.wall_seconds, 1),
        }


class SigtermGuard:
    """SIGTERM during a run only sets a flag: inside `fit`/`validate`/`test` Lightning also sees it and stops at
    the next batch (never in the middle of writing a checkpoint); between them, we check the flag ourselves."""

    def __init__(self) -> None:
        self.requested = False

    def _handler(self, signum, frame) -> None:
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise RunInterrupted("SIGTERM")

    @contextlib.contextmanager
    def installed(self):
        previous = signal.getsignal(signal.SIGTERM)
        previous_int = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after it handled one
        signal.signal(signal.SIGTERM, self._handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)


def run_spec(
    resolved: ResolvedSpec,
    *,
    resume: bool = False,
    resume_run: str | None = None,
    progress_bar: bool = True,
    trial: RunHooks | None = None,
) -> RunResult | None:
    """Train, evaluate and track one run of one stage. Returns None on ranks other than 0 (rank 0 reports).

    `resume`: continue the latest unfinished run of this resolved spec; `resume_run`: continue that run (its
    resolved spec must be this one). With `trial` (a sweep or a pipeline), the run is a child of the parent's
    MLflow run.
    """
    resume = resume or resume_run is not None
    started = time.time()
    spec = resolved.spec
    home = workspace.home()
    workspace.contain_environment(home)
    rank = global_rank(spec.hardware.devices)

    def unfinished() -> RunRecord:
        if resume_run is not None:
            return starts.named_run(resolved, home, resume_run)
        found = RunRecord.latest_unfinished(home, resolved.fingerprint())
        if found is None:
            raise SpecError(
                "--resume found no unfinished run of this resolved spec",
                file=str(resolved.path),
                hint="The spec and every override must be identical to the interrupted run's; run without --resume to start afresh.",
            )
        return found

    import lightning.pytorch as L
    import torch

    from ups.run.distributed import agree_on_zero, broadcast_from_zero, rank_zero_first, start_process_group
    from ups.spec.redact import redact_tree
    from ups.tracking.session import RUN_ID_ENV, base_tags, start_tracking
    from ups.training.stages import stage_of
    from ups.training.trainer import build_trainer

    torch.set_flush_denormal(True)
    # every rank holds the same gathered metrics, so Lightning's advice to sync them does not apply
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    stage = stage_of(spec)
    launched = start_process_group(spec.hardware.accelerator)  # torchrun/srun started every rank: group first
    record = None
    if resume and launched:  # rank 0 decides; a refusal reaches every rank at once (none waits at a barrier)
        record = agree_on_zero(rank, unfinished)
    elif resume and rank == 0:
        record = unfinished()
    upstream = starts.upstream(resolved, stage, home, trial.upstream if trial else None)
    init = starts.init_source(resolved, stage, home)
    layout = upstream.layout if upstream else init.layout if init else None
    L.seed_everything(spec.seed, workers=True, verbose=False)
    datamodule, data_fingerprint = rank_zero_first(
        launched, rank, lambda: _datamodule(spec, stage, home, layout)
    )
    kwargs = {"upstream_state": upstream.state} if upstream else {}
    if upstream is not None:
        starts.check_upstream_shapes(upstream, datamodule, str(resolved.path))
    module = stage.load("module")(
        redact_tree(resolved.to_dict()),
        upstream.lineage if upstream else [],
        list(datamodule.layout),
        dataclasses.asdict(datamodule.io),
        {"families": [s.family for s in getattr(datamodule, "sources", None) or [datamodule.source]]},
        **kwargs,
    )
    module.setup_data(datamodule)
    if init is not None:  # the source's weights and normalization (a resumed run's checkpoint overrides them)
        starts.warm_start(module, init, str(resolved.path))
    tags = {**base_tags(resolved, data_fingerprint), **(trial.tags if trial else {})}
    if upstream is not None:
        tags["ups.upstream"] = upstream.run_id or upstream.source
    if init is not None:
        tags["ups.init_from"] = spec.init.source
        if init.run_id:
            tags["ups.init_run"] = init.run_id

    def track():
        return start_tracking(
            resolved,
            home,
            resume=record,
            rank=rank,
            tags=tags,
            wandb_group=trial.wandb_group if trial else None,
        )

    if launched:  # rank 0 makes the run; the others learn its id by broadcast (nobody exports UPS_RUN_ID)
        session, run_id = broadcast_from_zero(rank, track, lambda s: s.run_id)
        if rank != 0:
            os.environ[RUN_ID_ENV] = run_id
            session = track()
    else:
        session = track()
    try:  # from here on, the run exists: any way out marks it FINISHED, KILLED or FAILED, never left RUNNING
        if trial and trial.on_start:
            trial.on_start(session.run_id)
        last = session.run_dir / "checkpoints" / "last.ckpt"
        ckpt_path = str(last) if resume and last.is_file() else None
        if ckpt_path:
            from ups.loading import verify_checksum

            verify_checksum(last)
        if resume:
            log.info("resuming run %s from %s", session.run_id, ckpt_path or "the start (no checkpoint yet)")
        trainer, ckpt_cb = build_trainer(
            spec,
            run_dir=session.run_dir,
            loggers=session.loggers,
            progress_bar=progress_bar,
            callbacks=trial.callbacks if trial else [],
        )
        with SigtermGuard().installed() as guard:
            if init is not None and ckpt_path is None:
                init_metrics = starts.validate_before_training(trainer, module, datamodule, trial)
                session.log_metrics(init_metrics)
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            guard.check()
            if trainer.interrupted:
                raise RunInterrupted("training was interrupted")
            best = ckpt_cb.best_model_path or ckpt_cb.last_model_path
            if best:  # the checkpoint whose metrics are logged: what promote, export and pipelines use
                from ups.loading import verify_checksum

                verify_checksum(Path(best))
                session.remember_best(Path(best))
            budget = _training_budget(trainer)
            if trial is not None:  # training is over: the final validation must not report or prune again
                trainer.callbacks = [c for c in trainer.callbacks if all(c is not t for t in trial.callbacks)]
            trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)
            guard.check()
            if trial is None or trial.test:
                trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)
            guard.check()
    except (SystemExit, KeyboardInterrupt, RunInterrupted) as exc:  # Lightning exits on SIGTERM/SIGINT
        session.finish("KILLED")
        raise RunInterrupted(f"run {session.run_id} interrupted; continue it with --resume") from exc
    except BaseException as exc:
        pruned = type(exc).__name__ == "TrialPruned"
        reason = None if pruned else f"{exc.__class__.__name__}: {exc}"
        session.finish(
            "KILLED" if pruned else "FAILED", record_status="PRUNED" if pruned else None, reason=reason
        )
        raise
    try:
        result = _report(resolved, stage, module, datamodule, trainer, session, trial, started, best, budget)
        if result is not None and init is not None and ckpt_path is None:
            result.metrics.update(init_metrics)
        return result
    except BaseException as exc:  # after training: still never left RUNNING
        session.finish("FAILED", reason=f"{exc.__class__.__name__}: {exc}")
        raise


def _report(
    resolved, stage, module, datamodule, trainer, session, trial, started, best, budget
) -> RunResult | None:
    """Metrics, the solver baseline, plots and artifacts of a trained run; finishes its tracking."""
    from ups.spec.redact import redact

    spec = resolved.spec
    rank = global_rank(spec.hardware.devices)
    steps, planned, stopped_by = budget
    metrics = {
        f"{split}/{k}": v
        for split in ("val", "test")
        if split in module.last_eval
        for k, v in module.last_eval[split]["metrics"].items()
    }
    from ups.run.extras import model_extras, steady_extras

    extras = (steady_extras if stage.steady else model_extras)(module.predictor(), datamodule, spec)
    solver: dict[str, float] = {}
    if rank == 0:
        from ups.training.evaluate import solver_baseline, steady_baselines

        for split in ("val", "test"):
            if split in module.last_eval:
                found = (
                    steady_baselines(datamodule, split)
                    if stage.steady
                    else solver_baseline(datamodule, spec, split)
                )
                solver.update({f"{split}/{k}": v for k, v in found.items()})
        metrics.update(solver)
    wall = time.time() - started
    where = [f"checkpoint: {best}"]
    if rank == 0 and session.is_logging:
        artifacts = session.run_dir / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        spec_yaml = artifacts / "spec.yaml"
        spec_yaml.write_text(resolved.to_yaml())
        split = "test" if "test" in module.last_eval else "val"
        plots = (
            _plots(spec, metrics, module.last_eval[split], split, artifacts, tuple(datamodule.io.channels))
            if (trial is None or trial.plots) and not stage.steady
            else []
        )
        session.log_metrics(
            {"wall_time_s": wall, "epochs": trainer.current_epoch, "steps": steps, **extras, **solver}
        )
        session.set_tags({"ups.stopped_by": stopped_by or "budget", "ups.planned_steps": str(planned)})
        for path in (spec_yaml, *plots):
            session.log_artifact(path)
        if spec.tracking.mlflow.log_checkpoint and best:
            session.log_artifact(Path(best), "checkpoints")
            sidecar = Path(best + ".sha256")
            if sidecar.is_file():
                session.log_artifact(sidecar, "checkpoints")
        if session.mlflow_uri:
            uri = redact(session.mlflow_uri)
            where.append(
                f"mlflow: run {session.run_id} in experiment '{spec.name}' — `mlflow ui --backend-store-uri {uri}`"
            )
        where.append(f"plots: {artifacts}")
    session.finish("FINISHED")
    if rank != 0:
        return None
    return RunResult(
        session.run_id, spec.name, metrics, best, wall, where, extras, stage=stage.kind,
        steps=steps, planned_steps=planned, stopped_by=stopped_by, unsent=session.unsent,
    )  # fmt: skip


def _training_budget(trainer) -> tuple[int, int, str | None]:
    """(steps taken, steps planned, what stopped training early: `max_time`, `early_stopping` or None)."""
    from lightning.pytorch.callbacks import EarlyStopping, Timer

    steps, planned = trainer.global_step, int(trainer.estimated_stepping_batches)
    if steps >= planned:
        return steps, planned, None
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is not None and timer.time_remaining("train") is not None and timer.time_remaining("train") <= 0:
        return steps, planned, "max_time"
    if any(isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in trainer.callbacks):
        return steps, planned, "early_stopping"
    return steps, planned, None


def _datamodule(spec, stage, home: Path, layout):
    """The stage's datamodule (trajectories or steady samples) and the fingerprint of its data."""
    if stage.steady:
        from ups.data.steady_datamodule import SteadyDataModule

        dm = SteadyDataModule(spec, home, layout=layout)
        return dm, dm.fingerprint
    from ups.data.datamodule import PDEDataModule
    from ups.data.source import combined_fingerprint, load_sources

    sources = load_sources(spec.data, home)
    return PDEDataModule(spec, sources, layout=layout), combined_fingerprint(sources)


def _plots(
    spec, metrics: dict[str, float], shown: dict, split: str, artifacts: Path, channels: tuple[str, ...] = ()
) -> list[Path]:
    from ups.run.report import plot_error_growth, plot_rollout, plot_task_bars
    from ups.spec.metrics import report_horizons

    example_pred, example_true = (t[0].numpy() for t in shown["example"])  # (T, C, *grid)
    plots = [
        plot_rollout(
            example_pred,
            example_true,
            context_frames=spec.eval.context_frames,
            path=artifacts / f"rollout_{split}.png",
            channels=channels,
            horizons=tuple(report_horizons(spec)),
        ),
        plot_error_growth(
            shown["per_sample"]["rollout_steps"].numpy(),
            shown["per_sample"]["persistence_rollout_steps"].numpy(),
            path=artifacts / f"error_growth_{split}.png",
        ),
    ]
    if spec.data.tasks:
        plots.append(plot_task_bars(metrics, split=split, path=artifacts / f"tasks_{split}.png"))
    return plots


def summary(result: RunResult) -> str:
    from ups.run.report import metrics_table

    table = metrics_table(
        result.metrics, wall_seconds=result.wall_seconds, where=result.where, extras=result.extras
    )
    if result.stopped_by == "max_time":
        table += (
            f"\nWARNING: train.max_time_minutes stopped training after {result.steps} of {result.planned_steps} "
            f"steps: these numbers depend on this machine's speed (budget in steps: raise or drop the cap)"
        )
    return table
