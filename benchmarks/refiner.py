"""The stage stack's quality on Kuramoto–Sivashinsky: operator → PDE-Refiner refiner → distilled student.

Runs `ups-exp run specs/ks_pipeline.yaml seed=S --json` once per seed, each in a fresh `$UPS_HOME`, and prints,
per seed and as mean ± sd over seeds, what issue 9's acceptance asks:

- the refined predictor's test corr_time over the operator's (same operator checkpoint), and its high-band nRMSE
  over the operator's;
- the 1-evaluation student's share of the refiner's corr_time gain, and its measured speed-up;
- each stage's wall time, and the pipeline's;
- a bootstrap 95% interval (over seeds) of the gains.

The last line is JSON with the per-seed rows and the means.

    .venv/bin/python benchmarks/refiner.py                  # 3 seeds (≈ 1 h on 2 cores)
    .venv/bin/python benchmarks/refiner.py --seeds 0 --quick   # smoke: a small pipeline, ≈ 2 min
    .venv/bin/python benchmarks/refiner.py --rows LOG          # the table again, from a run's output
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import tempfile
from pathlib import Path

from _ups import provenance, provenance_line, run_ups

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "ks_pipeline.yaml"
QUICK = [
    "data.num_trajectories=48",
    "train.max_epochs=1",
    "train.batches_per_epoch=10",
    "eval.horizon=100",
    "train.val_every_n_epochs=1",  # the spec validates every few epochs; a 1-epoch stage must validate too
    "stages.refiner.train.max_epochs=1",
    "stages.refiner.train.val_every_n_epochs=1",
    "stages.student.train.max_epochs=1",
    "stages.student.train.val_every_n_epochs=1",
]


def run_seed(seed: int, extra: list[str], home: Path) -> dict:
    out, wall = run_ups(SPEC, [f"seed={seed}", *extra], home, label=f"seed {seed}: ")
    stages = {s["stage"]: s for s in out["stages"]}
    ref, stu = stages["refiner"]["metrics"], stages["student"]["metrics"]
    return {
        "seed": seed,
        "operator_corr_time": ref["test/operator_corr_time"],
        "refined_corr_time": ref["test/corr_time"],
        "persistence_corr_time": ref["test/persistence_corr_time"],
        "corr_time_ratio": ref["test/corr_time"] / ref["test/operator_corr_time"],
        "operator_high": ref["test/operator_nrmse_band_high"],
        "refined_high": ref["test/nrmse_band_high"],
        "high_ratio": ref["test/nrmse_band_high"] / ref["test/operator_nrmse_band_high"],
        "student_corr_time": stu["test/corr_time"],
        "student_high": stu["test/nrmse_band_high"],
        "gain_kept_corr_time": stu["test/gain_kept_corr_time"],
        "gain_kept_rollout_nrmse": stu["test/gain_kept_rollout_nrmse"],
        "speedup": stu["test/speedup"],
        "wall_operator": stages["operator"]["wall_seconds"],
        "wall_refiner": stages["refiner"]["wall_seconds"],
        "wall_student": stages["student"]["wall_seconds"],
        "wall_pipeline": wall,
    }


def mean_sd(values: list[float]) -> str:
    if any(math.isnan(v) for v in values):  # e.g. a share of a gain the teacher did not make
        return "nan"
    mean = statistics.fmean(values)
    return f"{mean:.3g} ± {statistics.stdev(values):.2g}" if len(values) > 1 else f"{mean:.3g}"


def bootstrap(values: list[float], *, draws: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling the seeds with replacement (with 3 seeds it is coarse: it
    spans at most the smallest to the largest seed)."""
    if any(math.isnan(v) for v in values):
        return float("nan"), float("nan")
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(draws))
    return means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


COLS = [
    ("operator_corr_time", "operator corr_time"),
    ("refined_corr_time", "refined corr_time"),
    ("corr_time_ratio", "refined / operator"),
    ("persistence_corr_time", "persistence corr_time"),
    ("operator_high", "operator high band"),
    ("refined_high", "refined high band"),
    ("high_ratio", "high band refined / operator"),
    ("student_corr_time", "student (1 eval) corr_time"),
    ("gain_kept_corr_time", "student: share of corr_time gain kept"),
    ("gain_kept_rollout_nrmse", "student: share of rollout-nRMSE gain kept"),
    ("speedup", "student speed-up over refiner"),
    ("wall_operator", "wall: operator stage (s)"),
    ("wall_refiner", "wall: refiner stage (s)"),
    ("wall_student", "wall: student stage (s)"),
    ("wall_pipeline", "wall: whole `ups-exp run` (s)"),
]
GAINS = ("corr_time_ratio", "high_ratio", "gain_kept_corr_time")


def report(rows: list[dict], extra: list[str]) -> None:
    print("| quantity | " + " | ".join(f"seed {r['seed']}" for r in rows) + " | mean ± sd | bootstrap 95% |")
    print("|---|" + "---|" * (len(rows) + 2))
    for key, label in COLS:
        values = [r[key] for r in rows]
        interval = "[{:.3g}, {:.3g}]".format(*bootstrap(values)) if key in GAINS and len(rows) > 1 else ""
        print(
            f"| {label} | " + " | ".join(f"{v:.4g}" for v in values) + f" | {mean_sd(values)} | {interval} |"
        )
    means = {key: statistics.fmean(r[key] for r in rows) for key, _ in COLS}
    intervals = {key: bootstrap([r[key] for r in rows]) for key in GAINS}
    print(
        json.dumps(
            {"rows": rows, "mean": means, "bootstrap95": intervals, "overrides": extra, **provenance()}
        )
    )


def main() -> None:
    print(provenance_line(), flush=True)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="a small pipeline (smoke test of this script)")
    parser.add_argument("--rows", type=Path, help="re-print the table from a previous run's last (JSON) line")
    parser.add_argument(
        "--keep", type=Path, help="keep each seed's workspace under this folder (KEEP/seed-S)"
    )
    parser.add_argument("overrides", nargs="*", help="extra spec overrides (key=value)")
    args = parser.parse_args()
    extra = (QUICK if args.quick else []) + args.overrides
    if args.rows:
        saved = json.loads(args.rows.read_text().strip().splitlines()[-1])
        report(saved["rows"], saved["overrides"])
        return
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for seed in args.seeds:
        if args.keep:
            rows.append(run_seed(seed, extra, args.keep / f"seed-{seed}"))
        else:
            with tempfile.TemporaryDirectory(prefix=f"ups-refiner-{seed}-") as home:
                rows.append(run_seed(seed, extra, Path(home)))
        print(json.dumps(rows[-1]), flush=True)  # nothing measured is lost if the table fails
        print(f"seed {seed} done in {rows[-1]['wall_pipeline']:.0f} s", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    report(rows, extra)


if __name__ == "__main__":
    main()
