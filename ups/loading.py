"""One loader for every consumer (run, pipelines, promote, eval, export, the registered pyfunc): a checkpoint file,
an MLflow run id or a registered model (`models:/NAME@ALIAS`, `models:/NAME/VERSION`) → a ready predictor.

What makes a predictor is stored with it: the lineage of resolved specs (the operator's first, the stage's own
last: they fix every network's architecture), the PDE-parameter layout, and the predictor's weights. Checkpoints
load with `weights_only=True`; registered models are an .npz and JSON, so nothing is unpickled.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ups.data.params import LEGACY_LAYOUT
from ups.spec.errors import SpecError
from ups.spec.load import spec_from_dict
from ups.training.stages import Stage, stage_named


@dataclass
class Loaded:
    lineage: list[dict[str, Any]]
    """Resolved spec dicts, the operator's first and the predictor's own stage last."""
    layout: tuple[str, ...]
    state: dict[str, Any]
    """The predictor's state_dict (tensors)."""
    source: str
    run_id: str | None = None

    @property
    def stage(self) -> Stage:
        return stage_named(self.lineage[-1]["stage"]["kind"])

    @property
    def specs(self) -> list:
        return [spec_from_dict(d) for d in self.lineage]

    @property
    def spec(self):
        return spec_from_dict(self.lineage[-1])

    def predictor(self):
        """The predictor with its weights (strict: every key must match), in eval mode."""
        model = self.stage.load("predictor")(self.specs, self.layout)
        model.load_state_dict(self.state, strict=True)
        return model.eval()


def from_checkpoint(path: str | Path, *, run_id: str | None = None) -> Loaded:
    import pickle

    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        hp = ckpt["hyper_parameters"]
        spec = hp["spec"]
    except (OSError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as exc:
        raise SpecError(f"not a ups checkpoint ({exc.__class__.__name__})", got=str(path)) from None
    lineage = [*hp.get("lineage", ()), spec]
    stage = stage_named(spec["stage"]["kind"])
    return Loaded(
        lineage=lineage,
        layout=tuple(hp.get("layout", LEGACY_LAYOUT)),  # checkpoints from before layouts were stored
        state=stage.predictor_state(ckpt["state_dict"]),
        source=str(path),
        run_id=run_id,
    )


def run_checkpoint(run_id: str, *, home: Path, client=None) -> Path:
    """A run's best checkpoint: in the workspace, else downloaded from its MLflow artifacts."""
    local = sorted((home / "runs" / run_id / "checkpoints").glob("epoch*.ckpt"))
    if local:
        return local[-1]
    if client is not None:
        try:
            folder = Path(
                client.download_artifacts(run_id, "checkpoints", tempfile.mkdtemp(prefix="ups-ckpt-"))
            )
            found = sorted(folder.glob("*.ckpt"))
            if found:
                return found[-1]
        except Exception:  # no such run or no artifacts: reported below
            pass
    raise SpecError(
        "the run has no checkpoint",
        got=run_id,
        hint="Runs keep their best checkpoint in $UPS_HOME/runs/RUN_ID and (tracking.mlflow.log_checkpoint) in MLflow.",
    )


def from_registered(uri: str) -> Loaded:
    import mlflow
    import numpy as np
    import torch

    try:
        folder = Path(
            mlflow.artifacts.download_artifacts(uri, dst_path=tempfile.mkdtemp(prefix="ups-model-"))
        )
    except Exception as exc:
        raise SpecError(
            f"cannot load the model ({exc.__class__.__name__})",
            key="--model",
            got=uri,
            hint="Use models:/NAME@ALIAS or models:/NAME/VERSION.",
        ) from None
    config = json.loads(next(folder.rglob("config.json")).read_text())
    weights = np.load(next(folder.rglob("weights.npz")), allow_pickle=False)
    return from_registered_files(config, {k: torch.from_numpy(weights[k]) for k in weights.files}, source=uri)


def from_registered_files(config: dict[str, Any], state: dict[str, Any], *, source: str) -> Loaded:
    """A registered model's config.json and weights; models registered before lineages were stored hold an
    operator and its spec only."""
    lineage = config.get("lineage") or [config["spec"]]
    return Loaded(
        lineage=lineage,
        layout=tuple(config.get("layout", LEGACY_LAYOUT)),
        state=state,
        source=source,
        run_id=config.get("run_id"),
    )


def from_export(folder: str | Path) -> Loaded:
    """What `ups-exp export` wrote (the registry's files too): config.json and weights.npz, no pickles."""
    import numpy as np
    import torch

    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
        weights = np.load(folder / "weights.npz", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SpecError(f"not an exported model ({exc.__class__.__name__})", got=str(folder)) from None
    state = {k: torch.from_numpy(weights[k]) for k in weights.files}
    return from_registered_files(config, state, source=str(folder))


def load(source: str, *, home: Path, tracking_uri: str | None = None) -> Loaded:
    """`models:/...`, a checkpoint file, or a run id (found in the workspace, else in MLflow)."""
    if source.startswith("models:/"):
        return from_registered(source)
    if source.endswith(".ckpt") or Path(source).is_file():
        return from_checkpoint(source)
    client = None
    if tracking_uri is not None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
    return from_checkpoint(run_checkpoint(source, home=home, client=client), run_id=source)
