"""A sweep trial: sample parameters, compose the trial's spec, train it as a child run, report and prune."""

from __future__ import annotations

import logging
import os
import socket

import lightning.pytorch as L
import optuna
from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

from ups.spec.errors import SpecError
from ups.spec.load import ResolvedSpec, flatten_tree, with_values
from ups.spec.redact import redact
from ups.spec.search_space import suggest
from ups.sweep.study import INTERRUPTED_ATTR
from ups.training.metrics import per_sample_metric
from ups.training.stage_module import NonFiniteLossError, NonFiniteMetricError

log = logging.getLogger(__name__)


class PanelPruningCallback(L.Callback):
    """For the Wilcoxon pruner: the steps are the members of the (fixed) validation panel, not epochs.

    After each validation, trajectory i's rollout nRMSE is reported at step `epoch * panel + i`, so the pruner's
    paired test compares this trial with the best one member by member, at the same epochs.
    """

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial, self.metric = trial, metric

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val" not in module.last_eval:
            return
        values = per_sample_metric(module.last_eval["val"]["per_sample"], self.metric)
        base = trainer.current_epoch * len(values)
        for i, v in enumerate(values.tolist()):
            self.trial.report(float(v), step=base + i)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned by the Wilcoxon test after epoch {trainer.current_epoch}")


class Objective:
    def __init__(self, resolved: ResolvedSpec, *, study_name: str, parent_run_id: str | None) -> None:
        self.resolved = resolved
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
        except (optuna.TrialPruned, NonFiniteLossError, NonFiniteMetricError):
            raise
        except Exception as exc:
            reason = redact(f"{exc.__class__.__name__}: {exc}")  # a connection error may quote a URL
            trial.set_user_attr("fail_reason", reason[:500])
            log.warning("trial %d failed: %s", trial.number, reason)
            self._tag(trial, "FAIL")
            raise

    def _trial(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        from ups.run.single import RunHooks, run_spec

        cfg = self.resolved.spec.sweep
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which process ran it
        params = suggest(trial, list(self.resolved.search_space or ()), self.base)
        try:
            spec = with_values(self.resolved, params)  # frozen: a spec file edited mid-sweep changes nothing
        except SpecError as exc:
            raise SpecError(f"invalid trial spec: {exc}") from None
        callbacks: list = []
        if not cfg.objectives and cfg.pruner != "none":
            if cfg.pruner == "wilcoxon":
                callbacks.append(PanelPruningCallback(trial, cfg.metric))
            else:
                callbacks.append(PyTorchLightningPruningCallback(trial, monitor=cfg.metric))
        tags = {"ups.study": self.study_name, "ups.trial": str(trial.number)}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id

        def started(run_id: str) -> None:
            trial.set_user_attr("mlflow_run_id", run_id if spec.spec.tracking.mlflow.enabled else None)
            trial.set_user_attr("wandb_run_id", run_id if spec.spec.tracking.wandb.enabled else None)

        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # one line per trial is enough
        hooks = RunHooks(
            callbacks=callbacks,
            tags=tags,
            wandb_group=self.study_name,
            on_start=started,
            plots=cfg.trial_plots,
            test=False,
        )
        try:
            result = run_spec(spec, progress_bar=False, trial=hooks)
        except optuna.TrialPruned:
            self._tag(trial, "PRUNED")
            raise
        except NonFiniteLossError as exc:
            trial.set_user_attr("fail_reason", "nan")
            log.warning("trial %d failed: %s", trial.number, exc)
            self._tag(trial, "FAIL")
            raise
        except (
            NonFiniteMetricError
        ) as exc:  # a diverging rollout: the MLflow run says why too (ups.fail_reason)
            trial.set_user_attr("fail_reason", str(exc))
            log.warning("trial %d failed: %s", trial.number, exc)
            self._tag(trial, "FAIL")
            raise
        self._tag(trial, "COMPLETE")
        values = {**result.metrics, **result.extras}
        if cfg.objectives:
            return tuple(float(values[name]) for name in cfg.objectives)
        return float(values[cfg.metric])

    def _tag(self, trial: optuna.Trial, state: str) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if not run_id or not self.resolved.spec.tracking.mlflow.enabled:
            return
        from mlflow.tracking import MlflowClient

        from ups.tracking.session import mlflow_uri
        from ups.tracking.workspace import home

        MlflowClient(tracking_uri=mlflow_uri(self.resolved.spec, home())).set_tag(
            run_id, "ups.trial_state", state
        )
