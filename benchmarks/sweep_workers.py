"""Sweep throughput: trials per hour of `--workers 2` vs `--workers 1` on one study.

Both arms run the same spec (random sampler, no pruner, every trial the same number of epochs) to the same
number of trials, each in a fresh workspace (so each generates its data once), with one thread per worker
(`hardware.num_threads=1` in both arms). With 2 workers the coordinator runs worker 0 in this process and spawns
worker 1 as a subprocess (`python -m ups.cli sweep ... --worker-index 1`), whose start-up (imports, ~5 s) is
inside the measured wall time; this process has already imported everything before either arm starts.

Wall time = the `run_sweep` call; trials/hour = finished trials / wall time.

    .venv/bin/python benchmarks/sweep_workers.py            # the full version (about 9 minutes on 2 cores)
    .venv/bin/python benchmarks/sweep_workers.py --quick    # a smoke version (well under a minute)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _ups import provenance_line

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("UPS_CONFIGS", str(ROOT / "configs"))
WORK = Path(tempfile.mkdtemp(prefix="ups-bench-workers-"))  # every arm gets a fresh workspace below it
os.environ["UPS_HOME"] = str(WORK / "home")  # before anything from ups is imported

SPEC = """\
name: bench-workers
seed: 0
data: {{from: burgers1d, num_trajectories: 48, num_points: 64, num_frames: 21, generator: {{solver_points: 128}}}}
model: operator_tiny
train: {{max_epochs: {epochs}, batch_size: 32, unroll_steps: 2, batches_per_epoch: {batches}, deterministic: true}}
eval: {{context_frames: 5, horizon: 10, report_horizons: [1, 5]}}
search_space: operator_tiny
tracking: none
sweep: {{trials: {trials}, sampler: random, pruner: none, seed: 0}}
"""


def run_arm(folder: Path, args, workers: int, tag: str = "") -> dict:
    home = folder / f"{tag}workers{workers}"
    home.mkdir(parents=True)
    os.environ["UPS_HOME"] = str(home)  # the spawned worker inherits it
    import optuna

    from ups.spec.load import load_spec
    from ups.sweep.driver import run_sweep

    spec = home / "bench-workers.yaml"
    spec.write_text(SPEC.format(**vars(args)))
    resolved = load_spec(spec, ["hardware.num_threads=1"])
    start = time.perf_counter()
    result = run_sweep(resolved, workers=workers)
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{home / 'optuna.db'}")
    done = [t for t in study.trials if t.state.is_finished()]
    seconds = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
    first = min(t.datetime_start for t in done)
    last = max(t.datetime_complete for t in done)
    return {
        "workers": workers,
        "wall_s": wall,
        "trials": len(done),
        "failed": sum(t.state.name == "FAIL" for t in done),
        "trial_s": statistics.mean(seconds),
        "span_s": (last - first).total_seconds(),  # first trial start to last trial end
        "per_hour": 3600 * len(done) / wall,
    }


def main() -> None:
    print(provenance_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke version: 4 trials of 2 epochs")
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20, help="train.batches_per_epoch (about 21 exist)")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of arms, in alternating order")
    parser.add_argument("--keep", action="store_true", help=f"keep the workspaces (under {WORK})")
    args = parser.parse_args()
    load = os.getloadavg()[0]  # other work on the machine skews wall times: say so
    if args.quick:
        args.trials, args.epochs, args.batches, args.repeats = 4, 2, 4, 1

    folder = WORK
    # warm up: the first sweep in a process pays for lazy imports (Lightning...), which would burden one arm only
    run_arm(folder, argparse.Namespace(trials=1, epochs=1, batches=1), 1, tag="warmup-")
    rows, ratios = [], []
    for k in range(args.repeats):
        order = (1, 2) if k % 2 == 0 else (2, 1)  # alternate, so a drift in machine speed hits both arms
        arms = {w: run_arm(folder, args, w, tag=f"r{k}-") for w in order}
        rows += [{"repeat": k, **arms[w]} for w in (1, 2)]
        ratios.append(arms[2]["per_hour"] / arms[1]["per_hour"])

    print(
        f"\nrandom sampler, no pruner, {args.trials} trials x {args.epochs} epochs x {args.batches} batches, "
        f"hardware.num_threads=1 per worker, {os.cpu_count()} CPUs; "
        f"1-min load average before / after: {load:.2f} / {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| repeat | workers | wall s | finished trials | failed | mean trial s | first start to last end s "
        "| trials/hour | 2 / 1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{ratios[r['repeat']]:.2f}x" if r["workers"] == 2 else ""
        print(
            f"| {r['repeat']} | {r['workers']} | {r['wall_s']:.1f} | {r['trials']} | {r['failed']} "
            f"| {r['trial_s']:.2f} | {r['span_s']:.1f} | {r['per_hour']:.0f} | {ratio} |"
        )
    print(f"\nThroughput ratio, 2 workers / 1 (median over repeats): **{statistics.median(ratios):.2f}x**")

    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
