"""`ups-exp eval`: score a model (registered, a run's, a checkpoint or an export) on a spec's test split, next to
its baselines."""

from __future__ import annotations

import dataclasses

from ups.registry.promote import _data
from ups.spec.errors import SpecError
from ups.spec.load import ResolvedSpec
from ups.tracking import workspace


def eval_model(resolved: ResolvedSpec, model_uri: str) -> dict[str, float]:
    """A model's metrics on the spec's test split, next to its baselines. A source that does not exist is exit 2;
    a store that cannot be read, exit 1."""
    import mlflow

    from ups.loading import load
    from ups.tracking.session import mlflow_uri, uri_key
    from ups.training.evaluate import evaluate_split

    home = workspace.home()
    workspace.contain_environment(home)
    uri = mlflow_uri(resolved.spec, home)
    if model_uri.startswith("models:/"):
        from ups.tracking.store import require_file, wait_for

        require_file(uri, what="MLflow registry", key=uri_key(resolved.spec))
        wait_for(uri, what="MLflow registry")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        loaded = load(model_uri, home=home, tracking_uri=uri)
        model = loaded.predictor()
    except SpecError as exc:
        raise exc.located(file="command line", key="--model") from None
    want = loaded.spec.data.sources()[0].num_points
    if want != resolved.spec.data.sources()[0].num_points:
        raise SpecError(
            f"the model was made for {want} points",
            key="data.num_points",
            got=resolved.spec.data.sources()[0].num_points,
        )
    # the model's own stage and parameter layout, on this spec's data and evaluation protocol
    spec = dataclasses.replace(resolved.spec, stage=loaded.spec.stage)
    datamodule, _ = _data(
        dataclasses.replace(loaded, lineage=[*loaded.lineage[:-1], dataclasses.asdict(spec)]), home
    )
    metrics, _ = evaluate_split(model, datamodule, spec, "test")
    return metrics
