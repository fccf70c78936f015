"""What trained models cost per prediction, measured afterwards on an idle machine: the same `model/*` figures a run
reports (ups.run.extras: parameters; a trajectory model's ms per rollout over `eval.horizon` and per batch-32 step; a
steady model's ms per sample), from each run's best checkpoint and its workspace's data cache, one after the other in
one process, so that models trained while the cores were shared are compared at equal conditions.

    .venv/bin/python benchmarks/model_cost.py --home HOME CKPT [CKPT ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _ups import provenance_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="the $UPS_HOME holding the runs' data cache")
    parser.add_argument("checkpoints", nargs="+")
    args = parser.parse_args()
    from ups.loading import from_checkpoint
    from ups.run.extras import model_extras, steady_extras
    from ups.run.single import _datamodule

    print(provenance_line(), flush=True)
    for ckpt in args.checkpoints:
        loaded = from_checkpoint(ckpt)
        spec, stage = loaded.spec, loaded.stage
        dm, _ = _datamodule(spec, stage, args.home, loaded.layout)
        dm.setup("fit")
        model = loaded.predictor()
        with torch.no_grad():
            cost = (steady_extras if stage.steady else model_extras)(model, dm, spec)
        print(
            json.dumps({"checkpoint": ckpt, "name": spec.name, "model": spec.model.kind, **cost}), flush=True
        )


if __name__ == "__main__":
    main()
