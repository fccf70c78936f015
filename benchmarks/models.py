"""The three built-in models side by side on the flagship: the same data, split, recipe and step budget.

Each model trains `specs/burgers.yaml` (PDEBench 1D Burgers, ν = 0.01, generated data; 4 epochs × 250 steps) with
only the model block changed — `ups-exp run specs/burgers.yaml model=M tracking=none --json` — one after the other
in one `$UPS_HOME` (the data is generated once, by the first). Then, in this process, each run's best checkpoint
is loaded and timed on the run's own test split:

- test one-step nRMSE, rollout nRMSE (31 steps from the 10th frame) and corr_time, from the run's own metrics,
  next to persistence and the coarse solve (the family's solver on a 4× coarser grid) the run reported;
- ms / rollout: wall time of rolling out the whole test split over the horizon divided by its trajectories,
  in batches of `eval.batch_size`, all models at the same thread count;
- parameters, and training steps/s (optimizer steps over the fit's training seconds from Lightning's Timer state,
  in-fit validations excluded).

The acceptance for the FNO and the U-Net: test rollout nRMSE at least 10× below persistence's.

    .venv/bin/python benchmarks/models.py                    # ≈ 20 min on 2 idle cores
    .venv/bin/python benchmarks/models.py --quick            # smoke: 10 steps on 64 trajectories
    .venv/bin/python benchmarks/models.py --models fno_small unet_small --json /tmp/models.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from _ups import provenance, provenance_line
from quality import QUICK, neural_arm, run_operator, training_seconds

MODELS = ("operator_small", "fno_small", "unet_small")
TARGET = 10.0
"""Acceptance: persistence's test rollout nRMSE over the model's, at least this."""


def measure(model: str, home: Path, extra: list[str]) -> dict:
    from ups.data.datamodule import PDEDataModule
    from ups.data.source import load_sources
    from ups.loading import from_checkpoint

    out, wall = run_operator(0, [f"model={model}", *extra], home)
    checkpoint = Path(out["checkpoint"])
    loaded = from_checkpoint(checkpoint)
    spec = loaded.spec
    torch.set_num_threads(spec.hardware.num_threads or torch.get_num_threads())
    timed = training_seconds(checkpoint, spec)
    train_seconds = timed[1] if timed else wall
    dm = PDEDataModule(spec, load_sources(spec.data, home), layout=loaded.layout)
    arm, _ = neural_arm(loaded.predictor(), dm, spec)
    m = out["metrics"]
    row = {
        "model": model,
        "kind": spec.model.kind,
        "nrmse": m["test/nrmse"],
        "rollout_nrmse": m["test/rollout_nrmse"],
        "corr_time": m["test/corr_time"],
        "persistence_rollout_nrmse": m["test/persistence_rollout_nrmse"],
        "solver_rollout_nrmse": m.get("test/solver_rollout_nrmse", float("nan")),
        "solver_ms_per_rollout": m.get("test/solver_rollout_ms", float("nan")),
        "ms_per_rollout": arm["ms_per_rollout"],
        "params": arm["params"],
        "steps": out["steps"],
        "stopped_by": out["stopped_by"],
        "steps_per_s": out["steps"] / train_seconds,
        "wall_s": wall,
    }
    row["persistence_over_model"] = row["persistence_rollout_nrmse"] / row["rollout_nrmse"]
    row["met"] = row["persistence_over_model"] >= TARGET
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| model | kind | params | test nRMSE | test rollout nRMSE | persistence | solver (4× coarser) | "
        "persistence / model | ms / rollout (solver) | steps/s | ≥ 10× persistence |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['kind']} | {r['params'] / 1e3:.0f}k | {r['nrmse']:.4g} | {r['rollout_nrmse']:.4g} | "
            f"{r['persistence_rollout_nrmse']:.4g} | {r['solver_rollout_nrmse']:.4g} | "
            f"{r['persistence_over_model']:.1f}× | {r['ms_per_rollout']:.3g} ({r['solver_ms_per_rollout']:.3g}) | "
            f"{r['steps_per_s']:.2f} | {'yes' if r['met'] else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="model blocks (configs/model)")
    parser.add_argument("--quick", action="store_true", help="smoke: 10 steps on 64 trajectories")
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args()
    print(provenance_line(), flush=True)
    extra = QUICK if args.quick else []
    with tempfile.TemporaryDirectory(prefix="ups-models-") as home:
        rows = [measure(m, Path(home), extra) for m in args.models]
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"provenance": provenance(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
