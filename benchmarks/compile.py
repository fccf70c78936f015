"""`hardware.compile` against eager on this machine: training samples/s of one operator, side by side in one run.

Each arm trains the same `LatentOperator` (a `configs/model/` block) with the training step `ups-exp run` uses
(`ups.training.losses.operator_loss`: an unrolled rollout and its loss, backward, gradient clipping at 1, AdamW) on
fixed random batches of `--batch` windows of `--points` grid points and `--unroll` steps. The `compiled` arm
compiles the network exactly as a run with `hardware.compile: true` does (`compile_guarded`, in place). Arms
alternate (eager, compiled, compiled, eager, ...) over `--repeats`; each repeat builds a fresh model and, for the
compiled arm, compiles afresh (its first `--warmup` steps hold the compilation, and are reported separately as
`compile_s`). Steps/s is `--steps` over the time after the warm-up.

    .venv/bin/python benchmarks/compile.py                      # operator_small, batch 32, 256 points, unroll 5
    .venv/bin/python benchmarks/compile.py --model operator_tiny --steps 20 --repeats 1   # a quick look

The last line is JSON: samples/s per arm (median, min, max), `compiled_over_eager` (> 1: compile is faster),
compile seconds, threads, commit and date.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import torch
import yaml
from _ups import provenance_line

ROOT = Path(__file__).resolve().parent.parent


def _arm(model_name: str, compiled: bool, args) -> tuple[float, float]:
    """(steps/s after warm-up, seconds of the warm-up steps) of one fresh model."""
    from ups.models.config import LatentOperatorConfig
    from ups.models.operator import LatentOperator
    from ups.models.wrap import Normalized
    from ups.plugin import ModelIO
    from ups.spec.stages import LossConfig
    from ups.training.losses import operator_loss
    from ups.training.stage_module import compile_guarded

    torch.manual_seed(0)
    raw = yaml.safe_load((ROOT / "configs" / "model" / f"{model_name}.yaml").read_text())
    raw.pop("kind", None)
    io = ModelIO(spatial_dims=1, in_channels=1, out_channels=1, num_params=1, grid=(args.points,))
    model = Normalized(LatentOperator(LatentOperatorConfig(**raw), io), 1)
    if compiled:
        compile_guarded(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    window = torch.randn(args.batch, args.unroll + 1, 1, args.points)
    params, dt = torch.rand(args.batch, 1), torch.full((args.batch,), 0.05)
    loss_cfg = LossConfig()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = operator_loss(model, window, params, dt, loss_cfg)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    return args.steps / (time.perf_counter() - start), warm


def main() -> None:
    print(provenance_line(), flush=True)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="operator_small")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=256)
    parser.add_argument("--unroll", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    rates: dict[str, list[float]] = {"eager": [], "compiled": []}
    warmups: dict[str, list[float]] = {"eager": [], "compiled": []}
    order = ["eager", "compiled"]
    for r in range(args.repeats):
        for arm in order if r % 2 == 0 else order[::-1]:
            rate, warm = _arm(args.model, arm == "compiled", args)
            rates[arm].append(rate * args.batch)
            warmups[arm].append(warm)
            print(
                f"repeat {r}: {arm:8s} {rate * args.batch:8.1f} samples/s (warm-up {warm:.1f} s)", flush=True
            )

    print(
        f"\n{args.model}, batch {args.batch}, {args.points} points, unroll {args.unroll}, {args.threads} threads"
    )
    print(f"{'arm':10s} {'samples/s (median)':>20s} {'min':>8s} {'max':>8s} {'warm-up s':>10s}")
    for arm in order:
        v = rates[arm]
        print(
            f"{arm:10s} {statistics.median(v):20.1f} {min(v):8.1f} {max(v):8.1f} {statistics.median(warmups[arm]):10.1f}"
        )
    ratio = statistics.median(rates["compiled"]) / statistics.median(rates["eager"])
    print(f"compiled_over_eager: {ratio:.3f} (> 1: compile is faster)")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    print(
        json.dumps(
            {
                "model": args.model,
                "samples_per_s": {
                    k: {"median": statistics.median(v), "min": min(v), "max": max(v)}
                    for k, v in rates.items()
                },
                "compiled_over_eager": ratio,
                "compile_s": statistics.median(warmups["compiled"]),
                "threads": args.threads,
                "commit": commit.stdout.strip(),
                "date": time.strftime("%Y-%m-%d"),
            }
        )
    )


if __name__ == "__main__":
    main()
