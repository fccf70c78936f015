"""Compute to reach a near-best value: a pruned sweep vs an unpruned one (median over sampler seeds).

For each sampler seed s, two sweeps of the same spec run one after the other, each in its own workspace and study:
an unpruned one (`sweep.pruner=none`) and a pruned one (`--pruner`), both with the sampler seeded with s. B is the
best value of the unpruned sweep (minimizing `val/rollout_nrmse`). For each sweep, the compute to reach the target
is the number of epochs trained, summed over trials in trial-number order, up to and including the first COMPLETE
trial whose value is <= B * (1 + tolerance); pruned trials never count as reaching it. A pruned sweep that has not
reached the target after its trials is resumed for more (see `run_arm`), so that its compute is measured rather
than bounded, but never beyond the compute of the whole unpruned sweep or `--max-factor` x its trials.

Defaults (the configuration reported in docs/benchmarks.md): the random sampler, so both arms draw the very same
parameters trial by trial and the only difference is the pruner; the wide search space `operator_tiny_wide`
(four decades of learning rate, plain or momentum SGD, weight decay); 30 trials x 48 epochs; successive halving
with its first rung after `--warmup` + 1 epochs and Optuna's reduction factor 4. `--sampler tpe --space
operator_tiny` gives the earlier, narrow configuration (see docs/benchmarks.md for both).

Epochs trained by a trial = the epoch steps (< max_epochs) it reported as Optuna intermediate values; an unpruned
sweep reports none, so each of its trials counts max_epochs. (A trial also reports once more, at step
max_epochs, from the final validation of its best checkpoint; that step is not an epoch and is not counted.)

`pruning_replay.py` replays the same pruners on recorded learning curves, to choose a pruner or a trial length in
seconds rather than real sweeps.

    .venv/bin/python benchmarks/sweep_pruning.py            # the full version (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/sweep_pruning.py --quick    # a smoke version (well under a minute)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _ups import provenance_line

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
name: bench-prune
seed: 0
data: {{from: burgers1d, num_trajectories: {trajectories}, num_points: 64, num_frames: 21, generator: {{solver_points: 128}}}}
model: operator_tiny
train: {{max_epochs: {epochs}, batch_size: 32, unroll_steps: 2, batches_per_epoch: {batches}, deterministic: true}}
eval: {{context_frames: 5, horizon: 10, report_horizons: [1, 5]}}
hardware: {{num_threads: 1}}
search_space: {space}
tracking: none
sweep: {{trials: {trials}, sampler: {sampler}, pruner: none, startup_trials: {startup}, warmup_epochs: {warmup}, percentile: {percentile}, reduction_factor: {reduction_factor}, seed: 0}}
"""


def run_arm(folder: Path, args, seed: int, pruner: str, tag: str = "", target: float | None = None) -> dict:
    """A sweep in a fresh workspace: its trials (number, state, value, epochs) and wall time.

    With a `target`, a sweep that has not reached it is continued (resumed, `--extend` trials at a time) while it
    has spent less compute than a whole unpruned sweep (trials x epochs) and run fewer than 2 x trials trials.
    """
    home = folder / f"{tag}seed{seed}-{pruner}"
    home.mkdir(parents=True)
    os.environ["UPS_HOME"] = str(home)
    import optuna

    from ups.spec.load import load_spec
    from ups.sweep.driver import run_sweep

    spec = home / "bench-prune.yaml"
    spec.write_text(SPEC.format(**vars(args)))
    resolved = load_spec(spec, [f"sweep.seed={seed}", f"sweep.pruner={pruner}"])
    wall, n = 0.0, args.trials
    while True:
        start = time.perf_counter()
        result = run_sweep(resolved, trials=n)
        wall += time.perf_counter() - start
        study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{home / 'optuna.db'}")
        trials = []
        for t in sorted(study.trials, key=lambda t: t.number):
            steps = [s for s in t.intermediate_values if s < args.epochs]
            epochs = len(steps) if steps else args.epochs  # no reports: an unpruned trial ran every epoch
            trials.append({"number": t.number, "state": t.state.name, "value": t.value, "epochs": epochs})
        if target is None:
            break
        reached, spent = compute_to(trials, target)
        if reached is not None or spent >= args.trials * args.epochs or n >= args.max_factor * args.trials:
            break
        n += args.extend
    return {"wall_s": wall, "trials": trials}


def compute_to(trials: list[dict], target: float) -> tuple[int | None, int]:
    """(epochs up to the first COMPLETE trial with value <= target, or None if never; total epochs)."""
    spent, reached = 0, None
    for t in trials:
        spent += t["epochs"]
        if reached is None and t["state"] == "COMPLETE" and t["value"] <= target:
            reached = spent
    return reached, spent


def best(trials: list[dict]) -> float:
    return min(t["value"] for t in trials if t["state"] == "COMPLETE")


def main() -> None:
    print(provenance_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke version: 1 seed, 6 trials of 3 epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--pruner",
        default="successive_halving",
        choices=["median", "percentile", "hyperband", "successive_halving"],
    )
    parser.add_argument("--sampler", default="random", choices=["tpe", "random", "qmc"])
    parser.add_argument("--space", default="operator_tiny_wide", help="a search space in search_spaces/")
    parser.add_argument("--percentile", type=float, default=25.0)
    parser.add_argument("--reduction-factor", default="null", help="successive_halving/hyperband rung size")
    parser.add_argument("--max-factor", type=float, default=2.0, help="pruned sweep: at most this x trials")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=48)
    parser.add_argument("--batches", type=int, default=10, help="train.batches_per_epoch")
    parser.add_argument("--trajectories", type=int, default=192)
    parser.add_argument(
        "--startup", type=int, default=2, help="sweep.startup_trials (TPE; median/percentile pruners)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="sweep.warmup_epochs (successive halving, hyperband: min_resource)",
    )
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument(
        "--extend", type=int, default=4, help="trials added when the pruned sweep is continued"
    )
    parser.add_argument("--json", type=Path, help="also write the raw trials here")
    parser.add_argument("--keep", action="store_true", help="keep the workspaces (their folder is printed)")
    args = parser.parse_args()
    load = os.getloadavg()[0]  # other work on the machine skews wall times: say so
    if args.quick:
        args.seeds, args.trials, args.epochs, args.batches = args.seeds[:1], 6, 3, 4
        args.startup, args.warmup = 2, 1

    os.environ.setdefault("UPS_CONFIGS", str(ROOT / "configs"))
    folder = Path(tempfile.mkdtemp(prefix="ups-bench-prune-"))  # every arm gets a fresh workspace below it
    # warm up: the first sweep in a process pays for lazy imports (Lightning...), which would burden one arm only
    tiny = argparse.Namespace(**{**vars(args), "trials": 1, "epochs": 1, "batches": 1, "startup": 1})
    run_arm(folder, tiny, 0, "none", tag="warmup-")
    rows, raw = [], {}
    for seed in args.seeds:
        plain = run_arm(folder, args, seed, "none")
        b = best(plain["trials"])
        target = b * (1 + args.tolerance)
        pruned = run_arm(folder, args, seed, args.pruner, target=target)
        raw[seed] = {"none": plain, args.pruner: pruned}
        c_plain, total_plain = compute_to(plain["trials"], target)
        c_pruned, total_pruned = compute_to(pruned["trials"], target)
        states = [t["state"] for t in pruned["trials"]]
        rows.append(
            {
                "seed": seed,
                "B": b,
                "plain": c_plain,
                "pruned": c_pruned,
                # not reached: the pruned sweep's whole compute is a lower bound, so the ratio is an upper bound
                "ratio": c_plain / (c_pruned or total_pruned),
                "reached": c_pruned is not None,
                "best_pruned": best(pruned["trials"]),
                "counts": f"{states.count('PRUNED')}/{states.count('COMPLETE')}",
                "totals": f"{total_plain}/{total_pruned}",
                "wall": f"{plain['wall_s']:.0f}/{pruned['wall_s']:.0f}",
            }
        )

    print(
        f"\n{args.sampler} sampler, {args.space} space, {args.trials} trials x {args.epochs} epochs x {args.batches} batches, pruner {args.pruner} "
        f"(startup_trials {args.startup}, warmup_epochs {args.warmup}); target: B x {1 + args.tolerance:g}; "
        f"{os.cpu_count()} CPUs, 1-min load average before / after: {load:.2f} / {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| seed | B (unpruned best) | unpruned epochs to target | pruned epochs to target | ratio "
        "| best pruned-sweep value | pruned/complete (pruned sweep) | total epochs unpruned/pruned "
        "| wall s unpruned/pruned |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        pruned = r["pruned"] if r["reached"] else f"not reached (> {r['totals'].split('/')[1]})"
        ratio = f"{r['ratio']:.2f}x" if r["reached"] else f"< {r['ratio']:.2f}x"
        print(
            f"| {r['seed']} | {r['B']:.4f} | {r['plain']} | {pruned} | {ratio} | {r['best_pruned']:.4f} "
            f"| {r['counts']} | {r['totals']} | {r['wall']} |"
        )
    med = statistics.median(r["ratio"] for r in rows)
    walls = [(a["none"]["wall_s"], a[args.pruner]["wall_s"]) for a in raw.values()]
    plain_wall, pruned_wall = sum(w[0] for w in walls), sum(w[1] for w in walls)
    print(
        f"\nMedian compute ratio (unpruned / pruned epochs to target): **{med:.2f}x**"
        + (
            ""
            if all(r["reached"] for r in rows)
            else " (a seed that never reached the target counts its bound)"
        )
    )
    print(
        f"Wall clock, all seeds: unpruned {plain_wall:.0f} s, pruned {pruned_wall:.0f} s "
        f"({plain_wall / pruned_wall:.2f}x)"
    )
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": raw}))

    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"workspaces kept in {folder}")


if __name__ == "__main__":
    main()
