"""The platform's own cost: `ups-exp run` against the bare loop, tracking on against off, steps/s through an MLflow
outage, cold start, data loading.

Side by side in one invocation, arms alternating (ABCDE, then EDCBA, ...) over `--repeats` (default 10), each arm
a fresh process with a fresh `$UPS_HOME` (every home links one shared `data/` cache, generated once before any arm):

- `bare`: `ups.training.bare.BareLoop` (plain PyTorch: same data, model, loss, optimizer, schedule, clipping).
- `off`: `ups-exp run specs/burgers.yaml tracking=none`.
- `on`: the same with `tracking=local` (MLflow in sqlite + W&B offline, under the arm's `$UPS_HOME`; every
  `MLFLOW_*`/`WANDB_*` variable is dropped from the environment and `WANDB_MODE=offline` set: no network), logging
  at the spec's default frequency (`train.log_every_n_steps`, 10).
- `on_every_step`: the same with `train.log_every_n_steps=1`.
- `outage`: `on`, with MLflow a real `mlflow server` on 127.0.0.1 that the driver kills (SIGKILL) when the arm
  reaches the middle of its timed steps; its steps/s after the kill against before, in the same process.

Every arm runs `train.max_epochs=1 train.batches_per_epoch=W+N` (`--warmup` W, `--steps` N) with
`hardware.num_threads=T`. Two measures per arm, both over the N timed steps only (from the end of step W to the end
of step W+N; process start, imports, data, tracking set-up, evaluation and report excluded):
- **CPU seconds per step of the whole process tree**: user + system time of the arm's process and every
  descendant (W&B's `wandb-core`, the MLflow sender thread inside the process), read from /proc at both ends.
  This is the overhead measure: it does not move when other work on the machine slows the arm down.
- steps/s (wall clock), which does.

Ratios are paired by repeat (each repeat runs every arm once): `platform_over_bare` = off CPU/step ÷ bare CPU/step,
`tracking_on_over_off` = on ÷ off, `tracking_every_step_on_over_off`; the median of the per-repeat ratios and its
bootstrap 95% interval. A target is met when the interval's upper end is under it (platform ≤ 1.03, tracking
≤ 1.02 at the default logging frequency). The outage ratio is wall steps/s after the kill ÷ before (target ≥ 0.8).

It also measures cold start (fresh `ups-exp --help` and `ups-exp validate specs/burgers.yaml`) and the train
loader's samples/s against what a step consumes. The last line is JSON with every figure, the commit and the date.

    .venv/bin/python benchmarks/overhead.py             # 10 repeats x 5 arms x (10 + 80) steps
    .venv/bin/python benchmarks/overhead.py --quick     # smoke: tiny model, small data, 2 repeats, 3 + 10 steps
    .venv/bin/python benchmarks/overhead.py --repeats 12 --steps 200 train.batch_size=64   # extra overrides
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _ups import bootstrap_median_ci, provenance, tree_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "burgers.yaml"
UPS_EXP = ROOT / ".venv" / "bin" / "ups-exp"
ARMS = {
    "bare": ["tracking=none"],
    "off": ["tracking=none"],
    "on": ["tracking=local"],
    "on_every_step": ["tracking=local", "train.log_every_n_steps=1"],
    "outage": ["tracking=local"],
}
KILL_FILE = "kill-the-server-now"
"""The outage arm creates this in its $UPS_HOME in the middle of its timed steps; the driver then kills MLflow."""
QUICK = ["model=operator_tiny", "data.num_trajectories=64", "eval.horizon=20"]
"""Smoke only (does this script work?): a small model, a small data set and a short evaluation."""


# the arms, each run in its own process (`--arm NAME`) -------------------------------------------------------------
class Clock:
    """Wall time at the end of every step; CPU time of the process tree at the ends of steps W and W+N (reading
    /proc costs a few ms: not at every step); with `kill_at`, the outage arm's signal to the driver."""

    def __init__(self, warmup: int, steps: int, kill_at: int | None = None) -> None:
        self.warmup, self.steps, self.kill_at = warmup, steps, kill_at
        self.stamps: list[float] = []
        self.cpu: dict[int, float] = {}

    def tick(self) -> None:
        self.stamps.append(time.perf_counter())
        n = len(self.stamps)
        if n in (self.warmup, self.warmup + self.steps):
            self.cpu[n] = tree_cpu_seconds()
        if self.kill_at is not None and n == self.kill_at:
            (Path(os.environ["UPS_HOME"]) / KILL_FILE).touch()

    def report(self) -> dict:
        warmup, steps, stamps = self.warmup, self.steps, self.stamps
        if len(stamps) < warmup + steps:
            raise SystemExit(f"expected {warmup + steps} steps, timed {len(stamps)}")
        timed = stamps[warmup - 1 : warmup + steps]  # end of step W ... end of step W+N: N whole steps
        per_step = [b - a for a, b in zip(timed, timed[1:])]
        out = {
            "steps_per_s": steps / (timed[-1] - timed[0]),
            "cpu_s_per_step": (self.cpu[warmup + steps] - self.cpu[warmup]) / steps,
            "median_step_ms": 1000 * statistics.median(per_step),
            "max_step_ms": 1000 * max(per_step),
        }
        if self.kill_at is not None:  # the outage: steps/s after the kill against before it
            k = self.kill_at - warmup
            before, after = timed[: k + 1], timed[k:]
            out["before_steps_per_s"] = k / (before[-1] - before[0])
            out["after_steps_per_s"] = (steps - k) / (after[-1] - after[0])
        return out


def platform_arm(overrides: list[str], warmup: int, steps: int, progress_bar: bool, outage: bool) -> dict:
    import lightning.pytorch as L

    from ups.run.single import RunHooks, run_spec
    from ups.spec.load import load_experiment

    clock = Clock(warmup, steps, kill_at=warmup + steps // 2 if outage else None)

    class StepClock(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            clock.tick()

    result = run_spec(
        load_experiment(SPEC, overrides), progress_bar=progress_bar, trial=RunHooks(callbacks=[StepClock()])
    )
    if result.steps < result.planned_steps:  # e.g. train.max_time_minutes cut it short
        raise SystemExit(f"the run took {result.steps} of {result.planned_steps} steps ({result.stopped_by})")
    return {**clock.report(), "unsent": result.unsent}


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
    clock = Clock(warmup, steps)
    loop.train(on_step=lambda step, loss: clock.tick())
    out = clock.report()

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


class Server:
    """A real `mlflow server` on 127.0.0.1 for the outage arm (its store in `folder`), killed on request."""

    def __init__(self, folder: Path) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True)
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'db.sqlite'}",
               "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1"]  # fmt: skip
        log = open(folder / "server.log", "w")  # noqa: SIM115 - the server's lifetime
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, start_new_session=True)
        import urllib.request

        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise SystemExit("mlflow server did not start")

    def kill(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def run_arm(work: Path, name: str, args, overrides: list[str]) -> dict:
    home = fresh_home(work, name)
    arm = name.rpartition("-")[2]
    cmd = [sys.executable, __file__, "--arm", arm, "--warmup", str(args.warmup)]
    cmd += ["--steps", str(args.steps), *(["--no-progress"] if args.no_progress else []), *overrides]
    env = clean_env(home)
    server = Server(work / f"{name}-server") if arm == "outage" else None
    if server is not None:
        env["MLFLOW_TRACKING_URI"] = server.url
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if server is not None:  # kill MLflow when the arm says it is in the middle of its timed steps
            while proc.poll() is None and not (home / KILL_FILE).exists():
                time.sleep(0.05)
            server.kill()
        out, err = proc.communicate()
    finally:
        if server is not None:
            server.kill()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(out[-2000:] + err[-4000:])
        raise SystemExit(f"arm {name}: exited {proc.returncode}")
    return {**json.loads(out.strip().splitlines()[-1]), "process_s": wall}


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
    return provenance()["commit"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke: tiny model and data, 1 repeat, 3 + 10 steps"
    )
    parser.add_argument("--repeats", type=int, default=10, help="rounds of the five arms, order alternating")
    parser.add_argument("--warmup", type=int, default=10, help="steps run but not timed, in every arm")
    parser.add_argument("--steps", type=int, default=80, help="timed steps per arm")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="hardware.num_threads, every arm")
    parser.add_argument("--cold-repeats", type=int, default=5, help="fresh processes per cold-start command")
    parser.add_argument("--no-progress", action="store_true", help="platform arms without the progress bar")
    parser.add_argument("--keep", action="store_true", help="keep the workspaces")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS), help="arms to run")
    parser.add_argument("--arm", choices=[*ARMS, "prepare"], help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="extra spec overrides (key=value), every arm")
    args = parser.parse_args()
    if args.arm:
        if args.arm == "prepare":
            out = prepare_arm(args.overrides)
        elif args.arm == "bare":
            out = bare_arm(args.overrides, args.warmup, args.steps)
        else:
            out = platform_arm(
                args.overrides, args.warmup, args.steps, not args.no_progress, outage=args.arm == "outage"
            )
        print(json.dumps(out))
        return
    if args.quick:
        args.repeats, args.warmup, args.steps, args.cold_repeats = 2, 3, 10, 2
    if args.warmup < 1 or args.steps < 1:
        raise SystemExit(f"`--warmup >= 1` and `--steps >= 1` must hold, got ({args.warmup}, {args.steps})")
    common = [
        *(QUICK if args.quick else []),
        "train.max_epochs=1",
        f"train.batches_per_epoch={args.warmup + args.steps}",
        f"hardware.num_threads={args.threads}",
        *args.overrides,
    ]

    where = provenance()
    load_before = os.getloadavg()[0]
    print(f"commit {where['commit']}, {where['date']}; load average before: {load_before:.2f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="ups-bench-overhead-"))
    (work / "data").mkdir()
    prepared = run_arm(work, "prepare", args, common + ["tracking=none"])
    print(f"data ready in {prepared['process_s']:.0f} s", flush=True)
    cold = cold_start(work, args.cold_repeats)
    arms = args.arms
    rows: list[dict] = []
    for k in range(args.repeats):
        order = arms if k % 2 == 0 else list(reversed(arms))  # alternate: drift hits every arm alike
        for name in order:
            rows.append(
                {"repeat": k, "arm": name, **run_arm(work, f"r{k}-{name}", args, common + ARMS[name])}
            )
            print(json.dumps(rows[-1]), flush=True)  # nothing measured is lost if the report fails
    load_after = os.getloadavg()[0]
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    report(rows, arms, args, common, prepared, cold, where, (load_before, load_after))


def _by_repeat(rows: list[dict], arm: str, key: str) -> dict[int, float]:
    return {r["repeat"]: r[key] for r in rows if r["arm"] == arm}


def report(rows, arms, args, common, prepared, cold, where, load) -> None:
    cpu = {a: _by_repeat(rows, a, "cpu_s_per_step") for a in arms}
    sps = {a: _by_repeat(rows, a, "steps_per_s") for a in arms}
    pairs = {
        "platform_over_bare": ("off", "bare", 1.03),
        "tracking_on_over_off": ("on", "off", 1.02),
        "tracking_every_step_on_over_off": ("on_every_step", "off", None),
    }
    ratios = {}
    for key, (num, den, target) in pairs.items():
        if num in arms and den in arms:
            per_repeat = [cpu[num][k] / cpu[den][k] for k in sorted(cpu[num]) if k in cpu[den]]
            low, high = bootstrap_median_ci(per_repeat)
            ratios[key] = {
                "median": statistics.median(per_repeat), "ci95": [low, high], "per_repeat": per_repeat,
                "target": target, "met": (high < target) if target else None,
            }  # fmt: skip
    print(
        f"\n`ups-exp run specs/burgers.yaml {' '.join(common)}`; {args.warmup} warm-up + {args.steps} timed steps, "
        f"{args.repeats} repeats, {args.threads} threads, {os.cpu_count()} CPUs, default logging every "
        f"{prepared['log_every_n_steps']} steps; commit {where['commit']}, {where['date']}; 1-min load average "
        f"before / after: {load[0]:.2f} / {load[1]:.2f}\n"
    )
    print("| arm | CPU ms per step, process tree (median) | min – max | steps/s (median) | process wall s |")
    print("|---|---|---|---|---|")
    for a in arms:
        c, w = list(cpu[a].values()), list(sps[a].values())
        wall = statistics.median(r["process_s"] for r in rows if r["arm"] == a)
        print(f"| {a} | {1000 * statistics.median(c):.1f} | {1000 * min(c):.1f} – {1000 * max(c):.1f} | "
              f"{statistics.median(w):.3f} | {wall:.1f} |")  # fmt: skip
    print("\n| ratio of CPU per step (> 1: costlier) | median | bootstrap 95% interval | target | met |")
    print("|---|---|---|---|---|")
    for key, r in ratios.items():
        target = f"≤ {r['target']}" if r["target"] else ""
        met = "" if r["met"] is None else ("yes" if r["met"] else "no")
        print(f"| {key} | {r['median']:.3f} | {r['ci95'][0]:.3f} – {r['ci95'][1]:.3f} | {target} | {met} |")
    outage = None
    if "outage" in arms:
        per_repeat = [r["after_steps_per_s"] / r["before_steps_per_s"] for r in rows if r["arm"] == "outage"]
        low, high = bootstrap_median_ci(per_repeat)
        unsent = statistics.median(r["unsent"] for r in rows if r["arm"] == "outage")
        outage = {"median": statistics.median(per_repeat), "ci95": [low, high], "per_repeat": per_repeat,
                  "target": 0.8, "met": low >= 0.8, "unsent_median": unsent}  # fmt: skip
        print(
            f"\nsteps/s after MLflow was killed / before, same process: median {outage['median']:.3f} "
            f"(bootstrap 95% {low:.3f} – {high:.3f}; target ≥ 0.8: {'met' if outage['met'] else 'not met'}); "
            f"median {unsent:.0f} item(s) spooled per run"
        )
    print("\n| cold start (fresh process) | median s | min – max |\n|---|---|---|")
    for name, values in cold.items():
        cmd = "ups-exp --help" if name == "help" else "ups-exp validate specs/burgers.yaml"
        print(f"| `{cmd}` | {statistics.median(values):.2f} | {min(values):.2f} – {max(values):.2f} |")
    bare_rows = [r for r in rows if r["arm"] == "bare"]
    loader = consumed = None
    if bare_rows and "off" in arms:
        batch = bare_rows[0]["batch_size"]
        loader = statistics.median(r["loader_samples_per_s"] for r in bare_rows)
        consumed = batch * statistics.median(sps["off"].values())
        print(
            f"\ndata loader alone: {loader:.0f} samples/s; the `off` step consumes {consumed:.1f} samples/s "
            f"(batch {batch}): {100 * consumed / loader:.1f}% of a step spent loading"
        )
    print(
        json.dumps(
            {
                "ratios": ratios,
                "outage": outage,
                "cpu_s_per_step": {a: spread(list(v.values())) for a, v in cpu.items()},
                "steps_per_s": {a: spread(list(v.values())) for a, v in sps.items()},
                "default_log_every_n_steps": prepared["log_every_n_steps"],
                "cold_start_s": {name: spread(v) for name, v in cold.items()},
                "loader_samples_per_s": loader,
                "consumed_samples_per_s": consumed,
                "rows": rows,
                "warmup": args.warmup,
                "steps": args.steps,
                "repeats": args.repeats,
                "threads": args.threads,
                "overrides": common,
                "load_average": list(load),
                **where,
            }
        )
    )


if __name__ == "__main__":
    main()
