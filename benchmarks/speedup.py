"""The flagship's training speed: this checkout against an earlier commit, side by side in one run.

Each arm is `benchmarks/overhead.py --arm off` run from its own tree: this checkout, and a `git worktree` of
`--base` (default: the last commit before `train.unroll_grad_steps`). So each arm trains its own tree's
`specs/burgers.yaml` with its own code, through `ups-exp run`'s path (`run_spec`, tracking off, one epoch of W + N steps, as overhead.py's `off` arm),
and times N steps after W warm-up steps. The arms alternate (base, head, head, base, ...) over `--repeats`, each a
fresh process and `$UPS_HOME` that links one shared data cache, generated before any arm runs. The last line is
JSON with `head_over_base` (steps/s ratio of medians; > 1: faster).

    .venv/bin/python benchmarks/speedup.py                      # 4 repeats x 2 arms x (10 + 60) steps
    .venv/bin/python benchmarks/speedup.py --base HEAD~3 --repeats 6
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _ups import provenance_line
from overhead import clean_env, commit, fresh_home

ROOT = Path(__file__).resolve().parents[1]
BASE = "72a0c58"
"""The last commit before the flagship trained with the pushforward trick (`train.unroll_grad_steps: 1`)."""


def arm(tree: Path, work: Path, name: str, args) -> dict:
    home = fresh_home(work, name)
    cmd = [sys.executable, str(tree / "benchmarks" / "overhead.py"), "--arm", "off", "--no-progress"]
    cmd += ["--warmup", str(args.warmup), "--steps", str(args.steps), f"hardware.num_threads={args.threads}"]
    cmd += ["tracking=none", "train.max_epochs=1", f"train.batches_per_epoch={args.warmup + args.steps}"]
    env = {**clean_env(home), "PYTHONPATH": str(tree)}  # this tree's `ups`, not the installed checkout's
    done = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-4000:])
        raise SystemExit(f"arm {name}: exited {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    print(provenance_line(), flush=True)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default=BASE, help="the commit to compare against")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    base = subprocess.run(
        ["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="ups-speedup-") as tmp:
        work = Path(tmp)
        trees = {"base": work / "base-tree", "head": ROOT}
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(trees["base"]), base], cwd=ROOT, check=True
        )
        try:
            (work / "data").mkdir()
            prep = [sys.executable, str(ROOT / "benchmarks" / "overhead.py"), "--arm", "prepare"]
            subprocess.run(
                prep, env=clean_env(fresh_home(work, "prepare")), cwd=ROOT, check=True, capture_output=True
            )
            rates: dict[str, list[float]] = {"base": [], "head": []}
            for r in range(args.repeats):
                for name in ("base", "head") if r % 2 == 0 else ("head", "base"):
                    out = arm(trees[name], work, f"{r}-{name}", args)
                    rates[name].append(out["steps_per_s"])
                    print(f"repeat {r} {name}: {out['steps_per_s']:.2f} steps/s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(trees["base"])], cwd=ROOT)
    med = {k: statistics.median(v) for k, v in rates.items()}
    pairs = [h / b for h, b in zip(rates["head"], rates["base"], strict=True)]
    head = commit()
    print(
        f"\nflagship training steps/s, {args.repeats} repeats x {args.warmup} + {args.steps} steps, {args.threads} threads"
    )
    print("| tree | commit | steps/s (median) | min – max |\n|---|---|---|---|")
    for name, ref in (("base", base), ("head", head[:7] + ("-dirty" if head.endswith("-dirty") else ""))):
        print(f"| {name} | {ref} | {med[name]:.2f} | {min(rates[name]):.2f} – {max(rates[name]):.2f} |")
    print(
        f"head_over_base = {med['head'] / med['base']:.2f} (per-repeat {min(pairs):.2f} – {max(pairs):.2f})"
    )
    summary = {
        "head_over_base": med["head"] / med["base"],
        "per_repeat": pairs,
        "rates": rates,
        "base": base,
        "head": head,
        "date": datetime.date.today().isoformat(),
        "args": vars(args),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
