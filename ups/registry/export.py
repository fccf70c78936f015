"""`ups-exp export RUN_ID|MODEL_URI|CHECKPOINT --out DIR`: a predictor for plain PyTorch, without ups's training
stack and without pickles.

DIR gets `weights.npz` (the predictor's state_dict as arrays; load with `allow_pickle=False`) and `config.json`
(the stage kind, the function that builds the predictor, the lineage of resolved specs that fixes its
architecture, the PDE-parameter layout, where it came from, and the weights' sha256). It is the same pair the
registry stores, so `ups.loading.from_export(DIR).predictor()` rebuilds the `nn.Module` and loads the weights with
`strict=True`. Both files are written into a temporary folder beside DIR that is then renamed: a reader sees the
old export or the whole new one. A DIR that holds anything is refused unless `force`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ups import __version__
from ups.spec.errors import SpecError


def store_uri(tracking_uri: str | None, home: Path) -> str:
    """DESIGN's order for commands without a spec: --tracking-uri, then $MLFLOW_TRACKING_URI, then $UPS_HOME."""
    from ups.tracking.workspace import default_mlflow_uri

    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_mlflow_uri(home)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SpecError("is a file, not a folder", file="command line", key="--out", got=str(out))
    if out.is_dir() and any(out.iterdir()) and not force:
        raise SpecError(
            "the folder is not empty",
            file="command line",
            key="--out",
            got=str(out),
            hint="Choose a new folder, or pass --force to replace what it holds.",
        )


def export(
    source: str, out: Path, *, home: Path, tracking_uri: str | None = None, force: bool = False
) -> dict[str, Any]:
    import mlflow
    import numpy as np

    from ups.loading import load, sha256_of
    from ups.models.legacy import MODEL_FORMAT

    _check_out(out, force)  # before anything is read or downloaded
    uri = store_uri(tracking_uri, home)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    loaded = load(source, home=home, tracking_uri=uri)
    model = loaded.predictor()  # every key must fit the architecture before anything is written
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}  # today's format
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with (staging / "weights.npz").open("wb") as fh:
            np.savez(fh, **arrays)
        config = {
            "format": "ups-export/1",
            "kind": loaded.stage.kind,
            "predictor": loaded.stage.predictor,
            "lineage": loaded.lineage,
            "layout": list(loaded.layout),
            "io": dataclasses.asdict(loaded.io),
            "meta": loaded.meta if loaded.meta is not None else {},
            "model_format": MODEL_FORMAT,
            "run_id": loaded.run_id,
            "source": source,
            "parameters": int(sum(a.size for a in arrays.values())),
            "sha256": {"weights.npz": sha256_of(staging / "weights.npz")},
            "ups_version": __version__,
        }
        (staging / "config.json").write_text(json.dumps(config, indent=1))
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"out": str(out), "kind": config["kind"], "run_id": loaded.run_id, "keys": len(arrays)}


def _replace(staging: Path, out: Path) -> None:
    """Put the finished `staging` folder where `out` is (an empty or --force'd folder is swapped out whole)."""
    if not out.exists():
        staging.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(old)
    try:
        staging.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
