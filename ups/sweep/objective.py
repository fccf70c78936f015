"""A sweep trial: sample parameters, compose the trial's spec, train it as a child run, report and prune."""

from __future__ import annotations

import logging
import os
import socket

import lightning.pytorch as L
import optuna

from ups.run.single import RunHooks, run_spec
from ups.spec.errors import SpecError
from ups.spec.load import ResolvedSpec, flatten_tree, with_values
from ups.spec.redact import redact
from ups.spec.search_space import suggest
from ups.sweep.study import INTERRUPTED_ATTR
from ups.training.metrics import per_sample_metric
from ups.training.stage_module import NonFiniteLossError, NonFiniteMetricError

log = logging.getLogger(__name__)


class Pruning(L.Callback):
    """Report each validation to the trial and stop when the pruner says so, on every rank at once.

    Only rank 0 holds the trial (it alone talks to Optuna); its decision is broadcast, so all ranks stop together.
    With `panel` (the Wilcoxon pruner) the steps are the members of the fixed validation panel, not epochs: after each
    validation, trajectory i's error is reported at step `epoch * panel + i`, so the pruner's paired test compares this
    trial with the best one member by member, at the same epochs.
    """

    def __init__(self, trial: optuna.Trial | None, metric: str, *, panel: bool = False) -> None:
        self.trial, self.metric, self.panel = trial, metric, panel

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val" not in module.last_eval:
            return
        prune = self.trial is not None and self._report(trainer, module)
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            raise optuna.TrialPruned(f"pruned after epoch {trainer.current_epoch}")

    def _report(self, trainer: L.Trainer, module: L.LightningModule) -> bool:
        epoch = trainer.current_epoch
        if self.panel:
            values = per_sample_metric(module.last_eval["val"]["per_sample"], self.metric).tolist()
            for i, v in enumerate(values):
                self.trial.report(float(v), step=epoch * len(values) + i)
        else:
            value = trainer.callback_metrics.get(self.metric)
            if value is None:
                log.warning("sweep.metric %s was not logged at epoch %d: not reported", self.metric, epoch)
                return False
            self.trial.report(float(value), step=epoch)
        return self.trial.should_prune()


def pruning_callbacks(trial: optuna.Trial | None, cfg) -> list[L.Callback]:
    """The trial's pruning callback (none for multi-objective studies or `pruner: none`)."""
    if cfg.objectives or cfg.pruner == "none":
        return []
    return [Pruning(trial, cfg.metric, panel=cfg.pruner == "wilcoxon")]


def trial_hooks(
    trial: optuna.Trial | None, spec: ResolvedSpec, *, tags: dict[str, str], study: str
) -> RunHooks:
    """What a trial adds to its run: pruning, the study's tags and W&B group, validation only, and the run ids
    recorded on the trial as soon as the run exists (where this process holds the trial: rank 0)."""

    def started(run_id: str) -> None:
        trial.set_user_attr("mlflow_run_id", run_id if spec.spec.tracking.mlflow.enabled else None)
        trial.set_user_attr("wandb_run_id", run_id if spec.spec.tracking.wandb.enabled else None)

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # one line per trial is enough
    return RunHooks(
        callbacks=pruning_callbacks(trial, spec.spec.sweep),
        tags=tags,
        wandb_group=study,
        on_start=started if trial is not None else None,
        plots=spec.spec.sweep.trial_plots,
        test=False,
    )


def known_reason(exc: BaseException) -> str | None:
    """The reason a trial records for failures it understands (`nan`, `oom`, a diverging rollout), else None."""
    from ups.sweep.launch import LaunchedTrialFailed
    from ups.training.oom import is_oom

    if isinstance(exc, NonFiniteLossError):
        return "nan"
    if is_oom(exc):
        return "oom"
    if isinstance(exc, LaunchedTrialFailed):
        return exc.reason
    if isinstance(exc, NonFiniteMetricError):  # the MLflow run says why too (ups.fail_reason)
        return str(exc)
    return None


class Objective:
    def __init__(
        self,
        resolved: ResolvedSpec,
        *,
        study_name: str,
        parent_run_id: str | None,
        storage: str | None = None,
    ) -> None:
        self.resolved = resolved
        self.storage = storage
        """The study's storage URL: a multi-device trial's rank 0 opens it (through its environment)."""
        self.study_name = study_name
        self.parent_run_id = parent_run_id
        self.base = flatten_tree(resolved.to_dict())

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        """Train one trial. An interrupt (Ctrl-C, SIGTERM) is recorded as such and stops the worker: Optuna then
        marks the trial FAIL, but `outcome()` reads it as interrupted and it never counts toward max_failures."""
        from ups.run.single import RunInterrupted

        try:
            return self._trial(trial)
        except (KeyboardInterrupt, RunInterrupted) as exc:
            trial.set_user_attr(INTERRUPTED_ATTR, True)
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C or SIGTERM); its parameters run again")
            # re-queued at once: the other workers (or the next sweep) run these parameters first
            trial.study.enqueue_trial(trial.params, user_attrs={"ups.retry_of": trial.number})
            self._tag(trial, "INTERRUPTED")
            raise KeyboardInterrupt from exc  # not an Exception: study.optimize stops instead of going on
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            if getattr(exc, "ups_recorded", False):  # its reason is already recorded
                raise
            reason = redact(f"{exc.__class__.__name__}: {exc}")  # a connection error may quote a URL
            trial.set_user_attr("fail_reason", reason[:500])
            log.warning("trial %d failed: %s", trial.number, reason)
            self._tag(trial, "FAIL")
            raise

    def _trial(self, trial: optuna.Trial) -> float | tuple[float, ...]:

        cfg = self.resolved.spec.sweep
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which process ran it
        params = suggest(trial, list(self.resolved.search_space or ()), self.base)
        try:
            spec = with_values(self.resolved, params)  # frozen: a spec file edited mid-sweep changes nothing
        except SpecError as exc:
            raise SpecError(f"invalid trial spec: {exc}") from None
        tags = {"ups.study": self.study_name, "ups.trial": str(trial.number)}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        hooks = trial_hooks(trial, spec, tags=tags, study=self.study_name)
        try:
            if spec.spec.hardware.devices > 1:  # its own launcher: Lightning's would re-execute the sweep
                from ups.sweep.launch import run_launched
                from ups.tracking.workspace import home

                out = home() / "sweeps" / self.study_name / "trials" / str(trial.number)
                values = run_launched(
                    trial, spec, study=self.study_name, storage=self.storage, tags=tags, out=out
                )
            else:
                result = run_spec(spec, progress_bar=False, trial=hooks)
                values = {**result.metrics, **result.extras}
        except optuna.TrialPruned:
            self._tag(trial, "PRUNED")
            raise
        except Exception as exc:
            reason = known_reason(exc)
            if reason is None:
                raise
            trial.set_user_attr("fail_reason", reason)  # `nan` and `oom` are never retried
            log.warning("trial %d failed: %s", trial.number, reason)
            self._tag(trial, "FAIL")
            exc.ups_recorded = True
            raise
        self._tag(trial, "COMPLETE")
        if cfg.objectives:
            return tuple(float(values[name]) for name in cfg.objectives)
        return float(values[cfg.metric])

    def _tag(self, trial: optuna.Trial, state: str) -> None:
        # from the storage: a launched trial's rank 0 (another process) recorded the run id
        run_id = trial.storage.get_trial_user_attrs(trial._trial_id).get("mlflow_run_id")
        if not run_id or not self.resolved.spec.tracking.mlflow.enabled:
            return
        from mlflow.tracking import MlflowClient

        from ups.tracking.session import mlflow_uri
        from ups.tracking.spool import GuardedClient
        from ups.tracking.workspace import home

        # the trial is over: an unreachable MLflow must not turn it into a failure, so the tag is spooled in the
        # trial's run folder for `ups-exp sync`
        client = MlflowClient(tracking_uri=mlflow_uri(self.resolved.spec, home()))
        GuardedClient(client, run_id, home() / "runs" / run_id).set_tags({"ups.trial_state": state})
