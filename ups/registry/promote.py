"""`ups-exp promote`: choose the best run on validation, judge it on test against gates and the champion,
register it in the MLflow Model Registry (models-from-code, no pickles) and move the alias atomically.

Two promotes on one workspace serialize on a lock file ($UPS_HOME/registry/<model>.lock) around
read-champion → evaluate → decide → register → move aliases, so they cannot both win.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ups import __version__
from ups.spec.errors import SpecError
from ups.spec.load import ResolvedSpec
from ups.tracking import workspace

log = logging.getLogger(__name__)


@dataclass
class PromoteResult:
    decision: str  # promoted | rejected | dry-run
    model: str
    version: str | None
    alias: str
    gates: dict[str, Any]
    lines: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "model": self.model,
            "version": self.version,
            "alias": self.alias,
            "gates": {k: g.to_json() for k, g in self.gates.items()},
        }


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _candidate_run(
    client, resolved: ResolvedSpec, *, study: str | None, run_id: str | None, storage: str | None = None
):
    from ups.spec.metrics import select_direction
    from ups.tracking.session import mlflow_metric_name
    from ups.tracking.store import is_not_found, unavailable

    reg = resolved.spec.registry
    if run_id:
        try:
            return client.get_run(run_id)
        except Exception as exc:  # only "not found" is bad input; a store that fails is exit 1
            if is_not_found(exc):
                raise SpecError("no such MLflow run", file="command line", key="--run", got=run_id) from None
            raise unavailable(exc, client.tracking_uri) from exc
    import optuna

    from ups.sweep.status import study_status

    status = study_status(resolved, study=study, storage=storage)
    ids = [t["run_id"] for t in status["trials"] if t["state"] == "COMPLETE" and t["run_id"]]
    if not ids:
        raise SpecError(
            f"study '{status['study']}' has no completed trial with an MLflow run",
            file=str(resolved.path),
            hint="Run `ups-exp sweep` first (with MLflow tracking on).",
        )
    metric = mlflow_metric_name(reg.select_metric)
    try:
        runs = [r for r in (client.get_run(i) for i in ids) if metric in r.data.metrics]
    except Exception as exc:
        raise unavailable(exc, client.tracking_uri) from exc
    if not runs:
        raise SpecError(
            f"no trial of study '{status['study']}' logged {reg.select_metric}",
            key="registry.select_metric",
            got=reg.select_metric,
        )
    sign = 1 if select_direction(resolved.spec) == "minimize" else -1
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return min(runs, key=lambda r: sign * r.data.metrics[metric])


def _data(loaded, home: Path):
    """The datamodule a loaded predictor is scored on (its own spec's data, its own parameter layout) and the
    data sources behind it (none for steady families)."""
    spec = loaded.spec
    if loaded.stage.steady:
        from ups.data.steady_datamodule import SteadyDataModule

        return SteadyDataModule(spec, layout=loaded.layout), []
    from ups.data.datamodule import PDEDataModule
    from ups.data.source import load_sources

    sources = load_sources(spec.data, home)
    return PDEDataModule(spec, sources, layout=loaded.layout), sources


def promote(
    resolved: ResolvedSpec,
    *,
    study: str | None = None,
    run_id: str | None = None,
    alias: str = "champion",
    dry_run: bool = False,
    storage: str | None = None,
) -> PromoteResult:
    """Register the best trial of `study` (in `storage`, default as `sweep`) or the run `run_id`, behind the gates."""
    import mlflow

    from ups.loading import from_checkpoint, run_checkpoint
    from ups.registry.aliases import check_alias
    from ups.tracking.session import mlflow_uri, uri_key
    from ups.tracking.store import open_store
    from ups.training.evaluate import evaluate_split

    check_alias(alias)  # before anything is read or registered
    spec = resolved.spec
    if not spec.tracking.mlflow.enabled:
        raise SpecError(
            "promotion needs MLflow (the Model Registry)",
            file=str(resolved.path),
            key="tracking.mlflow.enabled",
            got=False,
        )
    home = workspace.home()
    workspace.contain_environment(home)
    uri, key = mlflow_uri(spec, home), uri_key(spec)
    if not run_id:  # no study, no candidate: said before the tracking store is opened
        from ups.sweep.status import study_status

        study_status(resolved, study=study, storage=storage)
    client = open_store(uri, key=key, create=False)
    mlflow.set_tracking_uri(uri)  # (MLflow also exports it as $MLFLOW_TRACKING_URI)
    mlflow.set_registry_uri(uri)
    name = spec.registry.model_name or spec.name

    run = _candidate_run(client, resolved, study=study, run_id=run_id, storage=storage)
    with tempfile.TemporaryDirectory(prefix="ups-promote-") as scratch:
        ckpt = run_checkpoint(run.info.run_id, home=home, client=client, scratch=Path(scratch))
        candidate = from_checkpoint(ckpt, run_id=run.info.run_id)
        cand_spec, cand_model = candidate.spec, candidate.predictor()
        datamodule, sources = _data(candidate, home)
        cand_metrics, cand_samples = evaluate_split(cand_model, datamodule, cand_spec, "test")

        with _locked(home / "registry" / f"{name}.lock"):
            return _decide(
                client, resolved, name, alias, run, candidate, datamodule, sources, cand_metrics, cand_samples,
                dry_run, Path(scratch),
            )  # fmt: skip


def _alias_version(client, name: str, alias: str):
    """The version behind `alias`, or None when the registry answers that there is none. A registry that cannot be
    read is StoreUnavailable: "cannot read the champion" is never "no champion" (no gate passes on it, no alias
    moves)."""
    from ups.tracking.store import is_not_found, unavailable

    try:
        return client.get_model_version_by_alias(name, alias)
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise unavailable(exc, client.tracking_uri, "MLflow registry") from exc


def _decide(
    client,
    resolved,
    name,
    alias,
    run,
    candidate,
    datamodule,
    sources,
    cand_metrics,
    cand_samples,
    dry_run,
    scratch,
) -> PromoteResult:
    """Judge the candidate against the gates and the current champion; register it; move the alias if it passed.

    The file lock serializes promotes that share a workspace. Promotes on different machines against one tracking
    server compare and set instead: just before registering, the alias is read again, and if another promote moved
    it meanwhile, the candidate is judged again against the new champion (up to 3 times)."""
    from ups.loading import from_registered
    from ups.registry.gates import evaluate_gates
    from ups.training.evaluate import evaluate_split

    spec, cand_spec = resolved.spec, candidate.spec
    for _attempt in range(3):
        champion = champ_samples = None
        champ_version = _alias_version(client, name, alias)
        if champ_version is not None:
            champ = from_registered(f"models:/{name}@{alias}")
            champion, champ_samples = evaluate_split(champ.predictor(), datamodule, cand_spec, "test")
        gates = evaluate_gates(
            spec.registry.gates,
            cand_metrics,
            cand_samples,
            champion,
            champ_samples,
            cand_spec.data.task_names(),
            spec,
        )
        passed = all(g.passed for g in gates.values())
        shown = spec.registry.gates.champion_metric
        lines = [
            f"candidate: run {run.info.run_id} ({run.info.run_name}), {candidate.stage.kind}; {shown} {cand_metrics[shown]:.4g}"
        ]
        if champ_version is not None:
            lines.append(
                f"champion: {name} v{champ_version.version} on the same test split: {shown} {champion[shown]:.4g}"
            )
        lines += [f"gate {k}: {'pass' if g.passed else 'FAIL'} — {g.detail}" for k, g in gates.items()]
        if dry_run:
            return PromoteResult(
                "dry-run",
                name,
                None,
                alias,
                gates,
                lines + [f"dry run: would be {'promoted' if passed else 'rejected'}; nothing changed"],
            )
        now = _alias_version(client, name, alias)
        if passed and (now and now.version) != (champ_version and champ_version.version):
            log.info("another promote moved @%s meanwhile: judging the candidate again", alias)
            continue  # compare and set: never move an alias we did not judge against
        version = _register(
            client,
            name,
            run,
            candidate,
            sources,
            datamodule,
            cand_metrics,
            gates,
            champion,
            champ_version,
            passed,
            scratch,
        )
        if passed:
            if champ_version is not None:
                client.set_registered_model_alias(name, f"previous-{alias}", champ_version.version)
            client.set_registered_model_alias(name, alias, version)
            lines.append(f"promoted: {name} v{version} is now @{alias}")
            _wandb_artifact(spec, name, alias, scratch, run.info.run_id)
        else:
            failed = [k for k, g in gates.items() if not g.passed]
            lines.append(
                f"rejected: {name} v{version} registered without alias; failed gates: {', '.join(failed)}"
            )
        return PromoteResult("promoted" if passed else "rejected", name, version, alias, gates, lines)
    raise RuntimeError(f"@{alias} of {name} kept moving while this promote judged its candidate; try again")


def _register(
    client,
    name,
    run,
    candidate,
    sources,
    datamodule,
    metrics,
    gates,
    champion,
    champ_version,
    passed,
    scratch: Path,
) -> str:
    import mlflow
    import numpy as np
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    import ups.registry.pyfunc as code
    from ups.data.source import combined_fingerprint
    from ups.loading import sha256_of
    from ups.models.legacy import MODEL_FORMAT
    from ups.registry.plugins import plugins_of
    from ups.run.report import model_card
    from ups.tracking.session import git_commit

    spec = candidate.spec
    io = candidate.io
    weights = scratch / "weights.npz"
    state = candidate.predictor().state_dict()  # in today's format, whatever file it came from
    np.savez(weights, **{k: v.detach().cpu().numpy() for k, v in state.items()})
    fingerprint = combined_fingerprint(sources) if sources else getattr(datamodule, "fingerprint", "")
    plugins = plugins_of(candidate.specs)
    config = {
        "kind": candidate.stage.kind,
        "lineage": candidate.lineage,
        "layout": list(candidate.layout),
        "io": dataclasses.asdict(io),
        "meta": candidate.meta if candidate.meta is not None else {"families": [s.family for s in sources]},
        "model_format": MODEL_FORMAT,
        "plugins": plugins,
        "model": dataclasses.asdict(spec.model),
        "tasks": {
            task: {
                "params": src.vectors(candidate.layout)[0].tolist(),
                "dt": src.dt,
                "family": src.family,
                **src.params,
            }
            for task, src in zip(spec.data.task_names() or ["default"], sources)
        },
        "num_points": io.grid[0],
        "fields": list(io.channels),
        "data_fingerprint": fingerprint,
        "spec": dataclasses.asdict(spec),
        "run_id": run.info.run_id,
        "sha256": {"weights.npz": sha256_of(weights)},
        "ups_version": __version__,
    }
    cfg_path = scratch / "config.json"
    cfg_path.write_text(json.dumps(config, indent=1))
    flat = io.spatial_dims == 1 and io.out_channels == 1  # a 1D one-channel model keeps its (B, X) input
    if candidate.stage.steady:
        example = datamodule.tensors["test"][0][:2].numpy()  # (2, C_in, *grid)
        shape, out_shape = (
            (-1, io.in_channels, *io.grid),
            ((-1, *io.grid) if flat else (-1, io.out_channels, *io.grid)),
        )
    else:
        start = datamodule.states["test"][:2, spec.eval.context_frames - 1].numpy()  # (2, C, *grid)
        example = start[:, 0] if flat else start
        shape = (-1, *io.grid) if flat else (-1, io.out_channels, *io.grid)
        out_shape = shape
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), shape)]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), out_shape)]),
        params=ParamSchema(
            [
                ParamSpec("steps", "long", 1),
                ParamSpec("task", "string", (spec.data.task_names() or ["default"])[0]),
                ParamSpec("L", "double", 0.0),
            ]
        ),
    )
    with mlflow.start_run(run_id=run.info.run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(code.__file__)),
            artifacts={"weights": str(weights), "config": str(cfg_path)},
            signature=signature,
            input_example=example,
            registered_model_name=name,
            pip_requirements=[
                f"ups=={__version__}",
                f"torch=={torch.__version__.split('+')[0]}",
                f"mlflow=={mlflow.__version__}",
                "numpy",
                *sorted({p["distribution"] for p in plugins if p.get("distribution")}),
            ],
        )
    version = str(info.registered_model_version)
    tags = {
        "ups.run_id": run.info.run_id,
        "ups.study": run.data.tags.get("ups.study", ""),
        "ups.trial": run.data.tags.get("ups.trial", ""),
        "ups.git_commit": git_commit(),
        "ups.data_fingerprint": fingerprint,
        "ups.stage": candidate.stage.kind,
        "ups.decision": "promoted" if passed else "rejected",
        "ups.failed_gates": ",".join(k for k, g in gates.items() if not g.passed),
        **{
            f"metric.{k}": f"{v:.6g}"
            for k, v in metrics.items()
            if k in ("test/nrmse", "test/rollout_nrmse", "test/persistence_rollout_nrmse", "test/corr_time")
        },
    }
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
    card = model_card(name, version, run.info.run_id, sources, metrics, gates, champion, champ_version)
    client.update_model_version(name, version, description=card)
    return version


def _wandb_artifact(spec, name: str, alias: str, folder: Path, run_id: str) -> None:
    if not spec.tracking.wandb.enabled or spec.tracking.wandb.mode == "disabled":
        return
    import wandb

    run = wandb.init(
        project=spec.tracking.wandb.project or spec.name,
        entity=spec.tracking.wandb.entity,
        mode=spec.tracking.wandb.mode,
        job_type="promote",
        name=f"promote-{name}",
        config={"mlflow_run_id": run_id},
        dir=str(workspace.home()),
    )
    artifact = wandb.Artifact(name=name, type="model", metadata={"mlflow_run_id": run_id})
    artifact.add_file(str(folder / "weights.npz"))
    artifact.add_file(str(folder / "config.json"))
    run.log_artifact(artifact, aliases=[alias, "latest"])
    run.finish()
