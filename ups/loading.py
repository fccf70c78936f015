"""One loader for every consumer (run, pipelines, promote, eval, export, the registered pyfunc): a checkpoint file,
an MLflow run id, an exported folder or a registered model (`models:/NAME@ALIAS`, `models:/NAME/VERSION`) → a
ready predictor.

What makes a predictor is stored with it: the lineage of resolved specs (the operator's first, the stage's own
last: they fix every network's architecture), the PDE-parameter layout, and the predictor's weights. Checkpoints
load with `weights_only=True`; registered models and exports are an .npz and JSON, so nothing is unpickled.

Integrity: every checkpoint ups writes has a `<file>.sha256` beside it, and every export and registered model
records its weights' sha256 in its config.json; a mismatch is a one-line error (exit 2). Files written before
checksums existed load with one warning. A store that cannot be read is `StoreUnavailable` (exit 1), never "no
such model"; temporary copies of downloaded models are removed once the weights are in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ups.data.params import LEGACY_LAYOUT
from ups.models.legacy import MODEL_FORMAT
from ups.spec.errors import SpecError
from ups.spec.load import spec_from_dict
from ups.training.stages import Stage, stage_named

log = logging.getLogger(__name__)

CHECKSUM_SUFFIX = ".sha256"
_warned: set[str] = set()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(2**20):
            digest.update(piece)
    return digest.hexdigest()


def write_checksum(path: Path) -> Path:
    """`<path>.sha256` beside a file ups wrote (written atomically)."""
    sidecar = path.with_name(path.name + CHECKSUM_SUFFIX)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(f"{sha256_of(path)}  {path.name}\n")
    tmp.replace(sidecar)
    return sidecar


def _warn_once(source: str, what: str) -> None:
    if source not in _warned:
        _warned.add(source)
        log.warning(
            "%s %s has no recorded checksum (written before checksums existed): not verified", what, source
        )


def verify_checksum(path: Path, expected: str | None = None, *, warn: bool = True) -> bool:
    """The file's sha256 against `expected`, else its sidecar (mismatch: SpecError). Returns whether a checksum
    was recorded; with none, one warning per file (unless `warn` is False: the caller warns once it knows the file
    is a checkpoint at all)."""
    path = Path(path)
    if expected is None:
        sidecar = path.with_name(path.name + CHECKSUM_SUFFIX)
        if not sidecar.is_file():
            if warn:
                _warn_once(str(path), "checkpoint")
            return False
        expected = sidecar.read_text().split()[0] if sidecar.read_text().split() else ""
    if sha256_of(path) != expected:
        raise SpecError(
            "the file is corrupt: its sha256 does not match the one recorded when it was written",
            got=str(path),
            hint="Use another checkpoint or model version, or train it again.",
        )
    return True


@dataclass
class Loaded:
    lineage: list[dict[str, Any]]
    """Resolved spec dicts, the operator's first and the predictor's own stage last."""
    layout: tuple[str, ...]
    state: dict[str, Any]
    """The predictor's state_dict (tensors)."""
    source: str
    run_id: str | None = None
    io_dict: dict | None = None
    """The data's shapes (`ModelIO` as a dict); None in files from before they were recorded."""
    meta: dict | None = None
    """The data's resolved families; None in files from before they were recorded."""
    model_format: int = MODEL_FORMAT

    @property
    def stage(self) -> Stage:
        return stage_named(self.lineage[-1]["stage"]["kind"])

    @property
    def specs(self) -> list:
        return [spec_from_dict(d) for d in self.lineage]

    @property
    def spec(self):
        return spec_from_dict(self.lineage[-1])

    @property
    def io(self):
        from ups.plugin import ModelIO
        from ups.training.predictors import legacy_io

        if self.io_dict is None:
            return legacy_io(self.spec, self.layout, steady=self.stage.steady)
        return ModelIO(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.io_dict.items()})

    def predictor(self):
        """The predictor with its weights (strict: every key must match), in eval mode. A model file from before
        the catalogue (format 1) is renamed into today's modules first (ups.models.legacy)."""
        from ups.models.legacy import migrate
        from ups.training.predictors import legacy_meta

        meta = self.meta if self.meta is not None else legacy_meta(self.spec)
        state = self.state
        if self.model_format < MODEL_FORMAT:
            refined = any(k.startswith("refiner.") for k in state)
            state = migrate(state, refined=refined, steady=self.stage.steady)
        try:
            model = self.stage.load("predictor")(self.specs, self.layout, self.io, meta)
            model.load_state_dict(state, strict=True)
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            first = " ".join(str(exc).split())[:300]
            raise SpecError(
                f"the weights do not fit the model they describe ({first})", got=self.source
            ) from None
        return model.eval()


def from_checkpoint(path: str | Path, *, run_id: str | None = None) -> Loaded:
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise SpecError("no such checkpoint file", got=str(path))
    recorded = verify_checksum(path, warn=False)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        hp = ckpt["hyper_parameters"]
        spec = hp["spec"]
        lineage = [*hp.get("lineage", ()), spec]
        stage = stage_named(spec["stage"]["kind"])
        state = stage.predictor_state(ckpt["state_dict"])
        layout = tuple(hp.get("layout", LEGACY_LAYOUT))  # checkpoints from before layouts were stored
        io_dict, meta, made = hp.get("io"), hp.get("meta"), int(hp.get("model_format", 1))
    except SpecError:
        raise
    except (
        OSError,
        RuntimeError,
        KeyError,
        EOFError,
        TypeError,
        AttributeError,
        pickle.UnpicklingError,
    ) as exc:
        raise SpecError(f"not a ups checkpoint ({exc.__class__.__name__})", got=str(path)) from None
    if not recorded:
        _warn_once(str(path), "checkpoint")
    return Loaded(
        lineage=lineage,
        layout=layout,
        state=state,
        source=str(path),
        run_id=run_id,
        io_dict=io_dict,
        meta=meta,
        model_format=made,
    )


def best_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint whose metrics the run logged: the one its run.json records; for runs from before that was
    recorded, the best path Lightning's checkpoint callback kept in last.ckpt; with one checkpoint, that one."""
    try:
        recorded = json.loads((run_dir / "run.json").read_text()).get("best_checkpoint")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    found = sorted((run_dir / "checkpoints").glob("epoch*.ckpt"))
    if len(found) <= 1:
        return found[0] if found else None
    best = _best_in_last(run_dir / "checkpoints" / "last.ckpt")
    if best is not None and best.is_file():
        return best
    log.warning("run folder %s does not say which checkpoint was best: using the newest", run_dir)
    return found[-1]


def _best_in_last(last: Path) -> Path | None:
    import torch

    if not last.is_file():
        return None
    try:
        state = torch.load(last, map_location="cpu", weights_only=True).get("callbacks", {})
    except Exception:  # noqa: BLE001 - an unreadable last.ckpt only loses this hint
        return None
    for value in state.values():  # the checkpoint callback's state (whatever its class is called)
        if isinstance(value, dict) and value.get("best_model_path"):
            return (
                last.parent / Path(value["best_model_path"]).name
            )  # in this folder, wherever it was written
    return None


def run_checkpoint(run_id: str, *, home: Path, client=None, scratch: Path | None = None) -> Path:
    """A run's best checkpoint: in the workspace, else downloaded into `scratch` from its MLflow artifacts.

    No such run, or no checkpoint: SpecError (exit 2). A store that cannot be read: StoreUnavailable (exit 1)."""
    local = best_checkpoint(home / "runs" / run_id)
    if local is not None:
        return local
    if client is not None and scratch is not None:
        from ups.tracking.store import is_not_found, unavailable

        try:
            client.get_run(run_id)
        except Exception as exc:
            if is_not_found(exc):
                raise SpecError("no such run", got=run_id) from None
            raise unavailable(exc, getattr(client, "tracking_uri", "")) from exc
        try:
            names = [a.path for a in client.list_artifacts(run_id, "checkpoints")]
            if names:
                folder = Path(client.download_artifacts(run_id, "checkpoints", str(scratch)))
                found = sorted(folder.glob("*.ckpt"))
                if found:
                    return found[-1]  # a run uploads its best checkpoint only
        except Exception as exc:
            raise unavailable(exc, getattr(client, "tracking_uri", "")) from exc
    raise SpecError(
        "the run has no checkpoint",
        got=run_id,
        hint="Runs keep their best checkpoint in $UPS_HOME/runs/RUN_ID and (tracking.mlflow.log_checkpoint) in MLflow.",
    )


def from_registered(uri: str) -> Loaded:
    """A registered model. A version that does not exist is SpecError; a registry that fails, StoreUnavailable."""
    import mlflow

    from ups.tracking.store import is_not_found, unavailable

    with tempfile.TemporaryDirectory(prefix="ups-model-") as scratch:
        try:
            folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=scratch))
        except Exception as exc:
            if is_not_found(exc):
                raise SpecError(
                    "no such registered model or version",
                    key="--model",
                    got=uri,
                    hint="Use models:/NAME@ALIAS or models:/NAME/VERSION of a registered model.",
                ) from None
            raise unavailable(exc, mlflow.get_registry_uri(), "MLflow registry") from exc
        return _from_folder(folder, source=uri)


def _from_folder(folder: Path, *, source: str) -> Loaded:
    """config.json and weights.npz found anywhere under `folder` (a registered model's or an export's files)."""
    import numpy as np
    import torch

    config_path = next(folder.rglob("config.json"), None)
    weights_path = next(folder.rglob("weights.npz"), None)
    if config_path is None or weights_path is None:
        raise SpecError(
            "not a ups model: no config.json and weights.npz inside",
            got=source,
            hint="Give models:/NAME@ALIAS, models:/NAME/VERSION, a run id, a .ckpt file or a folder written by "
            "`ups-exp export`.",
        )
    try:
        config = json.loads(config_path.read_text())
        verify_weights(config, weights_path, source)
        with np.load(weights_path, allow_pickle=False) as weights:
            state = {k: torch.from_numpy(weights[k].copy()) for k in weights.files}
    except SpecError:
        raise
    except (OSError, ValueError) as exc:
        raise SpecError(f"not a ups model ({exc.__class__.__name__})", got=source) from None
    return from_registered_files(config, state, source=source)


def verify_weights(config: dict, weights: Path, source: str) -> None:
    expected = (config.get("sha256") or {}).get("weights.npz")
    if expected is None:
        _warn_once(source, "model")
        return
    verify_checksum(weights, expected)


def from_registered_files(config: dict[str, Any], state: dict[str, Any], *, source: str) -> Loaded:
    """A registered model's config.json and weights; models registered before lineages were stored hold an
    operator and its spec only."""
    try:
        lineage = config.get("lineage") or [config["spec"]]
        stage_named(lineage[-1]["stage"]["kind"])
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise SpecError(
            f"not a ups model: config.json lacks its lineage ({exc.__class__.__name__})", got=source
        ) from None
    return Loaded(
        lineage=lineage,
        layout=tuple(config.get("layout", LEGACY_LAYOUT)),
        state=state,
        source=source,
        run_id=config.get("run_id"),
        io_dict=config.get("io"),
        meta=config.get("meta"),
        model_format=int(config.get("model_format", 1)),
    )


def from_export(folder: str | Path) -> Loaded:
    """What `ups-exp export` wrote (the registry's files too): config.json and weights.npz, no pickles."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SpecError("no such folder", got=str(folder))
    return _from_folder(folder, source=str(folder))


def load(source: str, *, home: Path, tracking_uri: str | None = None) -> Loaded:
    """`models:/...`, a checkpoint file, an exported folder, or a run id (in the workspace, else in MLflow)."""
    if source.startswith("models:/"):
        return from_registered(source)
    path = Path(source)
    if path.is_dir():
        return from_export(path)
    if source.endswith(".ckpt") or path.is_file():
        return from_checkpoint(source)
    if "/" in source or not source.strip():
        raise SpecError(
            "not a model: no such file or folder, and not a run id or models:/ URI",
            got=source,
            hint="Give models:/NAME@ALIAS, models:/NAME/VERSION, a run id, a .ckpt file or an exported folder.",
        )
    local = best_checkpoint(home / "runs" / source)
    if local is not None:
        return from_checkpoint(local, run_id=source)
    client = None
    if tracking_uri is not None:
        from ups.tracking.store import open_store

        client = open_store(tracking_uri, create=False)
    with tempfile.TemporaryDirectory(prefix="ups-ckpt-") as scratch:
        ckpt = run_checkpoint(source, home=home, client=client, scratch=Path(scratch))
        return from_checkpoint(ckpt, run_id=source)
