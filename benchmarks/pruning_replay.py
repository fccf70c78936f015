"""Replay Optuna's pruners on recorded learning curves: which pruner, and how long trials must be, to save compute.

`sweep_pruning.py` runs real sweeps, so each configuration costs minutes per seed. This script answers the design
question behind it cheaply and exactly:

1. `record` runs one real sweep with the random sampler whose trials never stop early (a threshold pruner at
   1e9 makes every trial report its validation metric after each epoch) and saves every trial's learning curve.
2. `replay` shuffles the recorded trials into many sweep orders (random-sampler trials are independent draws, so
   any order is a sweep that could have happened) and, for each order and each pruner configuration, replays the
   curves through Optuna's real pruner in an in-memory study, trial by trial, epoch by epoch: a pruned trial costs
   the epochs it ran. With one worker and a random sampler the pruner's decisions depend only on the curves, so
   this is what a real pruned sweep over the same trials would do (it is exact for `sweep_pruning.py
   --sampler random`, whose pruned and unpruned arms draw the same parameters).

The measure is `sweep_pruning.py`'s: B = best value of the first `--trials` trials (the unpruned sweep); compute =
epochs trained up to the first COMPLETE trial <= B x 1.02, in the unpruned order vs with the pruner (which may run
up to 2 x trials). The replay prints the median ratio over orders, how often the pruned sweep reached the target,
and how often the median of 3 orders is >= 3 (what the 3-seed benchmark would report).

    .venv/bin/python benchmarks/pruning_replay.py record --seed 100 --trials 40 --epochs 48 --out /tmp/c100.json
    .venv/bin/python benchmarks/pruning_replay.py replay /tmp/c100.json /tmp/c101.json --epochs 48
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ups import provenance_line  # noqa: E402
from sweep_pruning import SPEC  # noqa: E402  (the same trials as the pruning benchmark)

CONFIGS = [
    *[("median", {"startup": 2, "warmup": w}) for w in (1, 2, 4)],
    *[("percentile", {"startup": 2, "warmup": w, "pct": 25}) for w in (1, 3)],
    *[("successive_halving", {"min": m, "rf": rf}) for m in (2, 3, 4) for rf in (3, 4)],
    *[("hyperband", {"min": m, "rf": 3}) for m in (1, 3)],
]


def record(args) -> None:
    os.environ.setdefault("UPS_CONFIGS", str(ROOT / "configs"))
    home = Path(tempfile.mkdtemp(prefix="ups-bench-curves-"))
    os.environ["UPS_HOME"] = str(home)
    import optuna

    from ups.spec.load import load_spec
    from ups.sweep.driver import run_sweep

    spec = home / "bench-curves.yaml"
    fields = {"sampler": "random", "startup": 0, "warmup": 0, "percentile": 25.0, "reduction_factor": "null"}
    spec.write_text(SPEC.format(**vars(args), **fields))
    # every trial trains to the end and reports each epoch: a threshold pruner that never fires
    never = [
        "sweep.pruner=threshold",
        "sweep.threshold=1.0e9",
        "sweep.max_failures=1000",
        f"sweep.seed={args.seed}",
    ]
    result = run_sweep(load_spec(spec, never))
    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{home / 'optuna.db'}")
    rows = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": t.params,
            "curve": [t.intermediate_values[k] for k in sorted(t.intermediate_values) if k < args.epochs],
        }
        for t in study.trials
    ]
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "trials": rows}))
    shutil.rmtree(home, ignore_errors=True)
    print(f"{len(rows)} trials -> {args.out}")


def make_pruner(kind: str, kw: dict, epochs: int):
    import optuna

    p = optuna.pruners
    if kind == "median":
        return p.MedianPruner(n_startup_trials=kw["startup"], n_warmup_steps=kw["warmup"])
    if kind == "percentile":
        return p.PercentilePruner(kw["pct"], n_startup_trials=kw["startup"], n_warmup_steps=kw["warmup"])
    if kind == "successive_halving":
        return p.SuccessiveHalvingPruner(min_resource=kw["min"], reduction_factor=kw["rf"])
    return p.HyperbandPruner(min_resource=kw["min"], reduction_factor=kw["rf"], max_resource=epochs)


def replay_sweep(curves: list[list[float]], pruner) -> list[tuple[bool, float, int]]:
    """(completed, value, epochs trained) per trial, as a one-worker sweep with this pruner would end them."""
    import optuna

    study = optuna.create_study(pruner=pruner, sampler=optuna.samplers.RandomSampler(0))
    out = []
    for curve in curves:
        trial = study.ask()
        stopped = None
        for step, value in enumerate(curve):
            trial.report(value, step)
            if trial.should_prune():
                stopped = step
                break
        if stopped is None:
            study.tell(trial, min(curve))  # a trial's value is its best epoch (best checkpoint)
            out.append((True, min(curve), len(curve)))
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            out.append((False, curve[stopped], stopped + 1))
    return out


def ratio(curves: list[list[float]], trials: int, pruner, tolerance: float) -> tuple[float, bool]:
    epochs = len(curves[0])
    target = min(min(c) for c in curves[:trials]) * (1 + tolerance)
    plain = next((i + 1) * epochs for i, c in enumerate(curves[:trials]) if min(c) <= target)
    spent = 0
    for completed, value, cost in replay_sweep(curves[: 2 * trials], pruner):
        spent += cost
        if completed and value <= target:
            return plain / spent, True
        if spent >= trials * epochs:
            break
    return plain / spent, False  # not reached: the ratio is an upper bound


def replay(args) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pool = []
    for path in args.files:
        pool += [t["curve"] for t in json.loads(path.read_text())["trials"] if t["state"] == "COMPLETE"]
    pool = [c[: args.epochs] for c in pool if len(c) >= args.epochs]
    if len(pool) < 2 * args.trials:
        raise SystemExit(f"{len(pool)} complete curves of >= {args.epochs} epochs; need 2 x --trials")
    rng = random.Random(args.seed)
    orders = [rng.sample(pool, len(pool)) for _ in range(args.orders)]
    print(
        f"\n{len(pool)} recorded trials x {args.epochs} epochs, {args.orders} sweep orders of {args.trials} trials, "
        f"target B x {1 + args.tolerance:g}\n"
    )
    print("| pruner | settings | median ratio | reached target | median of 3 orders >= 3x |")
    print("|---|---|---|---|---|")
    rows = []
    for kind, kw in CONFIGS:
        results = [ratio(o, args.trials, make_pruner(kind, kw, args.epochs), args.tolerance) for o in orders]
        values = [r for r, _ in results]
        triples = [statistics.median(values[i : i + 3]) for i in range(0, len(values) - 2, 3)]
        rows.append(
            (
                statistics.median(values),
                kind,
                ", ".join(f"{k} {v}" for k, v in kw.items()),
                sum(ok for _, ok in results) / len(results),
                sum(t >= 3 for t in triples) / len(triples),
            )
        )
    for med, kind, kw, reached, p3 in sorted(rows, reverse=True):
        print(f"| {kind} | {kw} | {med:.2f}x | {reached:.0%} | {p3:.0%} |")


def main() -> None:
    print(provenance_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run a random sweep of full-length trials and save their curves")
    rec.add_argument("--seed", type=int, default=100, help="sampler seed (keep clear of the benchmark's 0-2)")
    rec.add_argument("--trials", type=int, default=40)
    rec.add_argument("--epochs", type=int, default=48)
    rec.add_argument("--batches", type=int, default=10)
    rec.add_argument("--trajectories", type=int, default=192)
    rec.add_argument("--space", default="operator_tiny_wide")
    rec.add_argument("--out", type=Path, required=True)
    rep = sub.add_parser("replay", help="replay pruners on recorded curves")
    rep.add_argument("files", type=Path, nargs="+")
    rep.add_argument("--epochs", type=int, required=True)
    rep.add_argument("--trials", type=int, default=30, help="trials of the unpruned sweep")
    rep.add_argument("--orders", type=int, default=60, help="shuffled sweep orders")
    rep.add_argument("--tolerance", type=float, default=0.02)
    rep.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    record(args) if args.command == "record" else replay(args)


if __name__ == "__main__":
    main()
