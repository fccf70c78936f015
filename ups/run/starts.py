"""Where a run starts from: the upstream predictor a stage builds on (`stage.from`), the model a warm start loads
(`init.from`), and the unfinished run `--resume-run` names."""

from __future__ import annotations

import json
from pathlib import Path

from ups.spec.errors import SpecError
from ups.spec.load import ResolvedSpec
from ups.tracking.workspace import RunRecord


def _load(resolved: ResolvedSpec, home: Path, source: str, *, key: str):
    """A trained model by run id, checkpoint or registry URI; a bad source is one line naming `key`."""
    from ups.loading import load
    from ups.tracking.session import mlflow_uri

    spec = resolved.spec
    uri = mlflow_uri(spec, home) if spec.tracking.mlflow.enabled else None
    try:
        return load(source, home=home, tracking_uri=uri)
    except SpecError as exc:
        raise exc.located(file=str(resolved.path), key=key) from None


def upstream(resolved: ResolvedSpec, stage, home: Path, given: str | None):
    """The trained predictor a consuming stage builds on (None for a stage that consumes nothing)."""
    if not stage.consumes:
        return None
    source = given or resolved.spec.stage.upstream
    spec_file = str(resolved.path)
    if source is None:
        raise SpecError(
            f"the {stage.kind} stage needs the run it builds on", file=spec_file, key="stage.from"
        )
    loaded = _load(resolved, home, source, key="stage.from")
    if loaded.stage.kind not in stage.consumes:
        raise SpecError(
            f"the {stage.kind} stage builds on a {' or '.join(stage.consumes)} stage, and this is a "
            f"{loaded.stage.kind} stage",
            file=spec_file,
            key="stage.from",
            got=source,
        )
    return loaded


def check_upstream_shapes(loaded, datamodule, spec_file: str) -> None:
    """A stage builds on a predictor made for the same shapes of data (channels and grid)."""
    have = loaded.io
    if have is not None and (have.out_channels, have.grid) != (
        datamodule.io.out_channels,
        datamodule.io.grid,
    ):
        raise SpecError(
            f"the upstream predictor was made for {have.out_channels} channel(s) on a {have.grid} grid; this data "
            f"has {datamodule.io.out_channels} on {datamodule.io.grid}",
            file=spec_file,
            key="stage.from",
            got=loaded.source,
        )


def init_source(resolved: ResolvedSpec, stage, home: Path):
    """The model `init.from` names (None without one): same stage kind and model kind as this spec's."""
    spec = resolved.spec
    if spec.init.source is None:
        return None
    spec_file = str(resolved.path)
    loaded = _load(resolved, home, spec.init.source, key="init.from")
    if loaded.stage.kind != stage.kind:
        raise SpecError(
            f"a {stage.kind} stage starts from a model of its own stage; this is a {loaded.stage.kind} model",
            file=spec_file,
            key="init.from",
            got=spec.init.source,
        )
    have, want = loaded.spec.model.kind, spec.model.kind
    if have != want:
        raise SpecError(
            f"the source is a {have} model and this spec trains {want}",
            file=spec_file,
            key="init.from",
            got=spec.init.source,
            hint="Use the source's model settings (model.* as it was trained), or start without init.from.",
        )
    return loaded


def warm_start(module, loaded, spec_file: str) -> None:
    """Load `loaded`'s predictor weights (its normalization buffers included) into `module`'s predictor, except the
    frozen predictors it builds on (a refiner's operator comes from `stage.from`). A missing, extra or differently
    shaped tensor is exit 2 naming the first such key."""
    target = module.predictor()
    frozen = {t.data_ptr() for ref in module.references().values() for t in ref.state_dict().values()}
    mine = target.state_dict()
    trained = [k for k, v in mine.items() if v.data_ptr() not in frozen]
    theirs = loaded.predictor().state_dict()
    for key in [*trained, *sorted(set(theirs) - set(mine))]:
        if key not in theirs:
            problem = f"the source has no {key!r} (this model has {tuple(mine[key].shape)})"
        elif key not in mine:
            problem = f"the source has {key!r} {tuple(theirs[key].shape)}, which this model does not"
        elif theirs[key].shape != mine[key].shape:
            problem = f"{key!r} is {tuple(theirs[key].shape)} in the source and {tuple(mine[key].shape)} here"
        else:
            continue
        raise SpecError(
            f"the source's weights do not fit this model: {problem}",
            file=spec_file,
            key="init.from",
            got=loaded.source,
            hint="Train with the source's model settings and data shapes.",
        )
    target.load_state_dict({**mine, **{k: theirs[k] for k in trained}}, strict=True)
    module.warm_started()


def validate_before_training(trainer, module, datamodule, trial) -> dict[str, float]:
    """A warm-started run's validation before its first update (`init/val/<metric>`): the source's, on this data."""
    hooks = trial.callbacks if trial else []
    kept = trainer.callbacks
    trainer.callbacks = [c for c in kept if all(c is not t for t in hooks)]  # no pruning report for it
    try:
        trainer.validate(module, datamodule=datamodule, verbose=False)
    finally:
        trainer.callbacks = kept
    return {f"init/val/{k}": v for k, v in module.last_eval["val"]["metrics"].items()}


def named_run(resolved: ResolvedSpec, home: Path, run_id: str) -> RunRecord:
    """The unfinished run `--resume-run` names, made by this resolved spec; anything else is one line (exit 2)."""
    from ups.spec.layers import flatten_tree
    from ups.spec.names import check_safe_name
    from ups.spec.redact import redact_tree

    check_safe_name(run_id, key="--resume-run", file="command line")
    record = RunRecord.load(home, run_id)
    if record is None:
        raise SpecError(
            "no such run in this workspace",
            file="command line",
            key="--resume-run",
            got=run_id,
            hint=f"Runs are folders of {home / 'runs'}; `ups-exp runs SPEC` lists them.",
        )
    if record.status in ("FINISHED", "PRUNED"):
        raise SpecError(
            f"the run has {record.status.lower()}: there is nothing to resume",
            file="command line",
            key="--resume-run",
            got=run_id,
        )
    if record.spec_hash == resolved.fingerprint():
        return record
    if record.spec is None:
        raise SpecError(
            "the run was made by a different resolved spec (it predates recorded specs, so ups cannot say which "
            "key differs)",
            file=str(resolved.path),
            key="--resume-run",
            got=run_id,
        )
    mine = flatten_tree(json.loads(json.dumps(redact_tree(resolved.non_default_dict()), default=str)))
    theirs = flatten_tree(record.spec)
    for key in [*mine, *(k for k in theirs if k not in mine)]:
        if mine.get(key, "(default)") != theirs.get(key, "(default)"):
            raise SpecError(
                f"differs from the spec of run {run_id} ({theirs.get(key, '(default)')!r} there, "
                f"{mine.get(key, '(default)')!r} here)",
                file=str(resolved.path),
                key=key,
                hint="--resume-run continues a run with its own resolved spec: the same spec and overrides.",
            )
    return record
