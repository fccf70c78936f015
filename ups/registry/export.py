"""`ups-exp export RUN_ID|MODEL_URI|CHECKPOINT --out DIR`: a predictor for plain PyTorch, without ups's training
stack and without pickles.

DIR gets `weights.npz` (the predictor's state_dict as arrays; load with `allow_pickle=False`) and `config.json`
(the stage kind, the function that builds the predictor, the lineage of resolved specs that fixes its
architecture, the PDE-parameter layout, where it came from). It is the same pair the registry stores, so
`ups.loading.from_export(DIR).predictor()` rebuilds the `nn.Module` and loads the weights with `strict=True`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ups import __version__


def store_uri(tracking_uri: str | None, home: Path) -> str:
    """DESIGN's order for commands without a spec: --tracking-uri, then $MLFLOW_TRACKING_URI, then $UPS_HOME."""
    from ups.tracking.workspace import default_mlflow_uri

    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_mlflow_uri(home)


def export(source: str, out: Path, *, home: Path, tracking_uri: str | None = None) -> dict[str, Any]:
    import mlflow
    import numpy as np

    from ups.loading import load

    uri = store_uri(tracking_uri, home)
    mlflow.set_tracking_uri(uri)
    loaded = load(source, home=home, tracking_uri=uri)
    loaded.predictor()  # every key must fit the architecture before anything is written
    out.mkdir(parents=True, exist_ok=True)
    arrays = {k: v.detach().cpu().numpy() for k, v in loaded.state.items()}
    tmp = out / "weights.npz.tmp"
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)
    tmp.replace(out / "weights.npz")
    config = {
        "format": "ups-export/1",
        "kind": loaded.stage.kind,
        "predictor": loaded.stage.predictor,
        "lineage": loaded.lineage,
        "layout": list(loaded.layout),
        "run_id": loaded.run_id,
        "source": source,
        "parameters": int(sum(a.size for a in arrays.values())),
        "ups_version": __version__,
    }
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return {"out": str(out), "kind": config["kind"], "run_id": loaded.run_id, "keys": len(arrays)}
