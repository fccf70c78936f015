"""The platform's own cost: `ups-exp run` against the bare loop, tracking on against off, cold start, data loading.

Side by side in one invocation, arms alternating (ABCD, then DCBA, ...) over `--repeats`, each arm a fresh process
with a fresh `$UPS_HOME` (every home links one shared `data/` cache, generated once before any arm runs):

- `bare`: `ups.training.bare.BareLoop` (plain PyTorch: same data, model, loss, optimizer, schedule, clipping).
- `off`: `ups-exp run specs/burgers.yaml tracking=none`.
- `on`: the same with `tracking=local` (MLflow in sqlite + W&B offline, under the arm's `$UPS_HOME`; every
  `MLFLOW_*`/`WANDB_*` variable is dropped from the environment and `WANDB_MODE=offline` set: no network), logging
  at the spec's default frequency (`train.log_every_n_steps`, 10).
- `on_every_step`: the same with `train.log_every_n_steps=1`.

Every arm runs `train.max_epochs=1 train.batches_per_epoch=W+N` (`--warmup` W, `--steps` N) with
`hardware.num_threads=T` (`--threads`, default: every core; the bare arm sets the same count, and, like
`run_spec`, flush-denormal and the seed). Steps/s is N over the time from the end of step W to the end of step W+N,
so it excludes process start, imports, data loading, tracking set-up, validation, test and the report, and the
first W steps (lazy initialisation, allocator warm-up); each interval still holds whole steps: data fetch,
forward, backward, clipping, optimizer and scheduler, and for the platform every hook, `self.log`, the progress
bar and the loggers.

Why not time `ups-exp run --json` from outside: its JSON reports steps but no training-loop time, and the process
wall time is dominated by start-up and evaluation. So the platform arms run `ups-exp run`'s own path in the arm's
process, `load_experiment` → `run_spec` (what `ups.cli` calls, with the progress bar on as `ups-exp run` has it
by default; `--no-progress` turns it off), and add one timing callback through `RunHooks.callbacks`, which
`run_spec` hands to `build_trainer`, the way a sweep adds its pruning callback; the Trainer is otherwise the one
`ups-exp run` builds (checkpointing, `max_time`, LR monitor, loggers). The bare arm times `BareLoop.train`'s
`on_step` (called once per step, after the loss).

It also measures:
- cold start: wall seconds of fresh `ups-exp --help` and `ups-exp validate specs/burgers.yaml` processes
  (`--cold-repeats`, alternating, after one untimed call of each so the page cache is warm);
- data loading: samples/s of the train dataloader alone (iterated W+N batches in the bare arm's process after
  its training; the first W not timed), against the samples/s the `off` arm's step consumes (batch size ×
  steps/s); the loader runs in the main process (`num_workers=0`), so consumed / loader is the share of each step
  spent loading.

Reported per arm: median and min–max over repeats; ratios are of medians (the per-repeat ratios' range is shown
too). `platform_over_bare` = bare steps/s ÷ `off` steps/s and `tracking_on_over_off` = `off` steps/s ÷ `on`
steps/s (> 1: slower; targets ≤ 1.03 and ≤ 1.02). The last line is JSON with these and every other figure, the
commit and the date. Other work on the machine changes the numbers: the 1-minute load average is printed before
and after.

    .venv/bin/python benchmarks/overhead.py             # 3 repeats x 4 arms x (10 + 80) steps
    .venv/bin/python benchmarks/overhead.py --quick     # smoke: tiny model, small data, 1 repeat, 3 + 10 steps
    .venv/bin/python benchmarks/overhead.py --repeats 5 --steps 200 train.batch_size=64   # extra overrides

Runtime (an estimate, not yet measured on an idle machine): 12 arm processes of 90 steps at the flagship's
≈ 2.4 steps/s (≈ 38 s) plus ≈ 20 s of start-up and evaluation each, so ≈ 12 min on 2 idle cores; the smoke about
a minute. On a machine shared with other work it takes far longer (the first smoke, a heavier one beside another
training job and at `nice 19`, took 18 min) and the ratios mean little.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "burgers.yaml"
UPS_EXP = ROOT / ".venv" / "bin" / "ups-exp"
ARMS = {
    "bare": ["tracking=none"],
    "off": ["tracking=none"],
    "on": ["tracking=local"],
    "on_every_step": ["tracking=local", "train.log_every_n_steps=1"],
}
QUICK = ["model=operator_tiny", "data.num_trajectories=64", "eval.horizon=20"]
"""Smoke only (does this script work?): a small model, a small data set and a short evaluation."""


# the arms, each run in its own process (`--arm NAME`) -------------------------------------------------------------
def _steps_per_s(stamps: list[float], warmup: int, steps: int) -> dict:
    if len(stamps) < warmup + steps:
        raise SystemExit(f"expected {warmup + steps} steps, timed {len(stamps)}")
    timed = stamps[warmup - 1 : warmup + steps]  # end of step W ... end of step W+N: N whole steps
    per_step = [b - a for a, b in zip(timed, timed[1:])]
    return {
        "steps_per_s": steps / (timed[-1] - timed[0]),
        "median_step_ms": 1000 * statistics.median(per_step),
        "max_step_ms": 1000 * max(per_step),
    }


def platform_arm(overrides: list[str], warmup: int, steps: int, progress_bar: bool) -> dict:
    import lightning.pytorch as L

    from ups.run.single import RunHooks, run_spec
    from ups.spec.load import load_experiment

    class StepClock(L.Callback):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.stamps.append(time.perf_counter())

    clock = StepClock()
    result = run_spec(
        load_experiment(SPEC, overrides), progress_bar=progress_bar, trial=RunHooks(callbacks=[clock])
    )
    if result.steps < result.planned_steps:  # e.g. train.max_time_minutes cut it short
        raise SystemExit(f"the run took {result.steps} of {result.planned_steps} steps ({result.stopped_by})")
    return _steps_per_s(clock.stamps, warmup, steps)


def bare_arm(overrides: list[str], warmup: int, steps: int) -> dict:
    import lightning.pytorch as L
    import torch

    from ups.data.datamodule import PDEDataModule
    from ups.data.source import load_sources
    from ups.spec.load import load_experiment
    from ups.tracking import workspace
    from ups.training.bare import BareLoop

    spec = load_experiment(SPEC, overrides).spec
    torch.set_flush_denormal(True)  # as run_spec does
    if spec.hardware.num_threads is not None:  # as build_trainer does
        torch.set_num_threads(spec.hardware.num_threads)
    L.seed_everything(spec.seed, workers=True, verbose=False)
    datamodule = PDEDataModule(spec, load_sources(spec.data, workspace.home()))
    loop = BareLoop.from_spec(spec, datamodule)
    stamps: list[float] = []
    loop.train(on_step=lambda step, loss: stamps.append(time.perf_counter()))
    out = _steps_per_s(stamps, warmup, steps)

    # the train dataloader alone, as many batches as training drew
    samples, started = 0, None
    for i, (window, *_rest) in enumerate(datamodule.train_dataloader()):  # window: (B, K+1, C, X)
        if i + 1 == warmup:
            started = time.perf_counter()
        elif i + 1 > warmup:
            samples += window.shape[0]
        if i + 1 == warmup + steps:
            break
    out["loader_samples_per_s"] = samples / (time.perf_counter() - started)
    out["batch_size"] = spec.train.batch_size
    return out


def prepare_arm(overrides: list[str]) -> dict:
    from ups.data.source import load_sources
    from ups.spec.load import load_experiment
    from ups.tracking import workspace

    spec = load_experiment(SPEC, overrides).spec
    started = time.perf_counter()
    load_sources(spec.data, workspace.home())
    return {"log_every_n_steps": spec.train.log_every_n_steps, "data_s": time.perf_counter() - started}


# the driver --------------------------------------------------------------------------------------------------------
def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_"))}
    return {**env, "UPS_HOME": str(home), "WANDB_MODE": "offline"}


def fresh_home(work: Path, name: str) -> Path:
    home = work / name
    home.mkdir(parents=True)
    (home / "data").symlink_to(work / "data", target_is_directory=True)
    return home


def run_arm(work: Path, name: str, args, overrides: list[str]) -> dict:
    home = fresh_home(work, name)
    cmd = [sys.executable, __file__, "--arm", name.rpartition("-")[2], "--warmup", str(args.warmup)]
    cmd += ["--steps", str(args.steps), *(["--no-progress"] if args.no_progress else []), *overrides]
    started = time.perf_counter()
    done = subprocess.run(cmd, env=clean_env(home), cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-4000:])
        raise SystemExit(f"arm {name}: exited {done.returncode}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_s": wall}


def cold_start(work: Path, repeats: int) -> dict[str, list[float]]:
    commands = {"help": [str(UPS_EXP), "--help"], "validate": [str(UPS_EXP), "validate", str(SPEC)]}
    env = clean_env(fresh_home(work, "cold"))
    times: dict[str, list[float]] = {name: [] for name in commands}
    for k in range(repeats + 1):
        for name in commands if k % 2 == 0 else reversed(commands):
            started = time.perf_counter()
            subprocess.run(commands[name], env=env, cwd=ROOT, capture_output=True, check=True)
            if k > 0:  # the first round only warms the page cache
                times[name].append(time.perf_counter() - started)
    return times


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def commit() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "HEAD") + (
        "-dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke: tiny model and data, 1 repeat, 3 + 10 steps"
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the four arms, order alternating")
    parser.add_argument("--warmup", type=int, default=10, help="steps run but not timed, in every arm")
    parser.add_argument("--steps", type=int, default=80, help="timed steps per arm")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="hardware.num_threads, every arm")
    parser.add_argument("--cold-repeats", type=int, default=5, help="fresh processes per cold-start command")
    parser.add_argument("--no-progress", action="store_true", help="platform arms without the progress bar")
    parser.add_argument("--keep", action="store_true", help="keep the workspaces")
    parser.add_argument("--arm", choices=[*ARMS, "prepare"], help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="extra spec overrides (key=value), every arm")
    args = parser.parse_args()
    if args.arm:
        if args.arm == "prepare":
            out = prepare_arm(args.overrides)
        elif args.arm == "bare":
            out = bare_arm(args.overrides, args.warmup, args.steps)
        else:
            out = platform_arm(args.overrides, args.warmup, args.steps, not args.no_progress)
        print(json.dumps(out))
        return
    if args.quick:
        args.repeats, args.warmup, args.steps, args.cold_repeats = 1, 3, 10, 2
    if args.warmup < 1 or args.steps < 1:
        raise SystemExit(f"`--warmup >= 1` and `--steps >= 1` must hold, got ({args.warmup}, {args.steps})")
    common = [
        *(QUICK if args.quick else []),
        "train.max_epochs=1",
        f"train.batches_per_epoch={args.warmup + args.steps}",
        f"hardware.num_threads={args.threads}",
        *args.overrides,
    ]

    load_before = os.getloadavg()[0]
    print(f"load average before: {load_before:.2f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="ups-bench-overhead-"))
    (work / "data").mkdir()
    prepared = run_arm(work, "prepare", args, common + ["tracking=none"])
    print(f"data ready in {prepared['process_s']:.0f} s", flush=True)
    cold = cold_start(work, args.cold_repeats)
    rows: list[dict] = []
    for k in range(args.repeats):
        order = list(ARMS) if k % 2 == 0 else list(reversed(ARMS))  # alternate: drift hits every arm alike
        for name in order:
            rows.append(
                {"repeat": k, "arm": name, **run_arm(work, f"r{k}-{name}", args, common + ARMS[name])}
            )
            print(json.dumps(rows[-1]), flush=True)  # nothing measured is lost if the report fails
    load_after = os.getloadavg()[0]
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)

    sps = {a: [r["steps_per_s"] for r in rows if r["arm"] == a] for a in ARMS}
    med = {a: statistics.median(v) for a, v in sps.items()}
    paired = {
        "platform_over_bare": [b / o for b, o in zip(sps["bare"], sps["off"])],
        "tracking_on_over_off": [o / n for o, n in zip(sps["off"], sps["on"])],
        "tracking_every_step_on_over_off": [o / n for o, n in zip(sps["off"], sps["on_every_step"])],
    }
    ratios = {
        "platform_over_bare": med["bare"] / med["off"],
        "tracking_on_over_off": med["off"] / med["on"],
        "tracking_every_step_on_over_off": med["off"] / med["on_every_step"],
    }
    batch = next(r["batch_size"] for r in rows if r["arm"] == "bare")
    loader = statistics.median(r["loader_samples_per_s"] for r in rows if r["arm"] == "bare")
    consumed = batch * med["off"]

    print(
        f"\n`ups-exp run specs/burgers.yaml {' '.join(common)}`; {args.warmup} warm-up + {args.steps} timed steps, "
        f"{args.repeats} repeats, {args.threads} threads, {os.cpu_count()} CPUs, default logging every "
        f"{prepared['log_every_n_steps']} steps; 1-min load average before / after: "
        f"{load_before:.2f} / {load_after:.2f}\n"
    )
    print("| arm | steps/s (median) | min – max | median ms/step | process wall s (median) |")
    print("|---|---|---|---|---|")
    for a in ARMS:
        ms = statistics.median(r["median_step_ms"] for r in rows if r["arm"] == a)
        wall = statistics.median(r["process_s"] for r in rows if r["arm"] == a)
        print(f"| {a} | {med[a]:.3f} | {min(sps[a]):.3f} – {max(sps[a]):.3f} | {ms:.1f} | {wall:.1f} |")
    print("\n| ratio (> 1: slower) | of medians | per-repeat min – max | target |")
    print("|---|---|---|---|")
    targets = {
        "platform_over_bare": 1.03,
        "tracking_on_over_off": 1.02,
        "tracking_every_step_on_over_off": None,
    }
    for key, value in ratios.items():
        target = f"≤ {targets[key]}" if targets[key] else ""
        print(f"| {key} | {value:.3f} | {min(paired[key]):.3f} – {max(paired[key]):.3f} | {target} |")
    print("\n| cold start (fresh process) | median s | min – max |\n|---|---|---|")
    for name, values in cold.items():
        cmd = "ups-exp --help" if name == "help" else "ups-exp validate specs/burgers.yaml"
        print(f"| `{cmd}` | {statistics.median(values):.2f} | {min(values):.2f} – {max(values):.2f} |")
    print(
        f"\ndata loader alone: {loader:.0f} samples/s; the `off` step consumes {consumed:.1f} samples/s "
        f"(batch {batch}): loader / consumed = {loader / consumed:.0f}x, "
        f"{100 * consumed / loader:.1f}% of a step spent loading"
    )
    print(
        json.dumps(
            {
                **ratios,
                "ratio_ranges": {k: [min(v), max(v)] for k, v in paired.items()},
                "steps_per_s": {a: spread(v) for a, v in sps.items()},
                "default_log_every_n_steps": prepared["log_every_n_steps"],
                "cold_start_s": {name: spread(v) for name, v in cold.items()},
                "loader_samples_per_s": loader,
                "consumed_samples_per_s": consumed,
                "loader_over_consumed": loader / consumed,
                "rows": rows,
                "warmup": args.warmup,
                "steps": args.steps,
                "repeats": args.repeats,
                "threads": args.threads,
                "overrides": common,
                "load_average": [load_before, load_after],
                "commit": commit(),
                "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            }
        )
    )


if __name__ == "__main__":
    main()
