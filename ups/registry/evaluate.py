"""`ups-exp eval`: score a registered model on a spec's test split, next to its baselines."""

from __future__ import annotations

import dataclasses

from ups.registry.promote import _data
from ups.spec.errors import SpecError
from ups.spec.load import ResolvedSpec
from ups.tracking import workspace


def eval_registered(resolved: ResolvedSpec, model_uri: str) -> dict[str, float]:
    """`ups-exp eval`: a registered model's metrics on the spec's test split, next to its baselines."""
    import mlflow

    from ups.loading import from_registered
    from ups.tracking.session import mlflow_uri
    from ups.training.evaluate import evaluate_split

    home = workspace.home()
    workspace.contain_environment(home)
    uri = mlflow_uri(resolved.spec, home)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        loaded = from_registered(model_uri)
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
    metrics, _ = evaluate_split(loaded.predictor(), datamodule, spec, "test")
    return metrics
