"""A study's MLflow parent run (one per study, however many coordinators) and its best trial(s)."""

from __future__ import annotations

import logging
import time
from typing import Any

from ups.spec.load import ResolvedSpec

log = logging.getLogger(__name__)


def best_trials(study) -> dict[str, Any] | list[dict[str, Any]] | None:
    def row(t) -> dict[str, Any]:
        return {
            "number": t.number,
            "value": t.values if len(t.values) > 1 else t.value,
            "params": t.params,
            "run_id": t.user_attrs.get("mlflow_run_id"),
        }

    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    if len(study.directions) > 1:
        return [row(t) for t in study.best_trials]  # the Pareto front
    return row(study.best_trial)


def parent_run(resolved: ResolvedSpec, store, name: str, home) -> str | None:
    """The study's MLflow parent run (made once; its id lives in the study's user attributes)."""
    import optuna

    spec = resolved.spec
    if not spec.tracking.mlflow.enabled:
        return None

    from ups.tracking.session import connect, ensure_experiment, flat_params, mlflow_uri

    study = optuna.load_study(study_name=name, storage=store)
    uri = mlflow_uri(spec, home)
    client = connect(uri)
    run_id = study.user_attrs.get("mlflow_parent_run_id")
    if run_id is None:
        exp_id = ensure_experiment(client, spec.name, uri, home)
        run = client.create_run(
            exp_id, run_name=f"sweep-{name}", tags={"ups.study": name, "ups.role": "sweep"}
        )
        mine = run.info.run_id
        # coordinators started at the same instant (other machines) each made one: the earliest wins, the others
        # delete theirs, so the study has one parent run
        time.sleep(1.0)
        found = client.search_runs(
            [exp_id], filter_string=f"tags.`ups.study` = '{name}' and tags.`ups.role` = 'sweep'"
        )
        run_id = min(found, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id if found else mine
        if run_id != mine:
            client.delete_run(mine)
            log.info("joined the sweep's parent run %s (another coordinator made it)", run_id)
        else:
            from mlflow.entities import Param

            client.log_batch(run_id, params=[Param(k, v) for k, v in flat_params(resolved).items()])
        study.set_user_attr("mlflow_parent_run_id", run_id)
    else:
        client.update_run(run_id, status="RUNNING")
    return run_id


def finish_parent(resolved: ResolvedSpec, study, run_id: str | None, home, status: str = "FINISHED") -> int:
    """Close the parent run: the study's plots, its best value and trial, its status. Returns the number of those
    writes spooled because MLflow did not answer (they wait in `runs/<parent id>/` for `ups-exp sync`); the trials
    are done by now, so an outage must not fail the sweep or lose its summary."""
    if run_id is None:
        return 0
    from mlflow.tracking import MlflowClient

    from ups.sweep.plots import save_study_plots
    from ups.tracking.session import mlflow_metric_name, mlflow_uri
    from ups.tracking.spool import GuardedClient

    client = GuardedClient(
        MlflowClient(tracking_uri=mlflow_uri(resolved.spec, home)), run_id, home / "runs" / run_id
    )
    if study is None:  # interrupted: the next sweep of this study reopens it
        client.set_terminated(status)
        return client.spooled
    folder = home / "sweeps" / study.study_name
    folder.mkdir(parents=True, exist_ok=True)
    for path in save_study_plots(study, folder):
        client.log_artifact(path)
    best = best_trials(study)
    if isinstance(best, dict) and isinstance(best["value"], float):
        client.log_metrics({mlflow_metric_name(f"best/{resolved.spec.sweep.metric}"): best["value"]})
        client.set_tags({"ups.best_trial": str(best["number"])})
    client.set_terminated("FINISHED")
    return client.spooled
