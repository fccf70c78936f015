"""How long each shipped spec takes, and what it reaches: every file in `specs/` run as a user runs it.

Each spec runs in a fresh `$UPS_HOME` (data generated inside it, so the time includes data generation, as a first
run does), one after the other: `ups-exp run` for training specs, `ups-exp sweep` for specs with a search space.
The table gives the wall time of the command and its headline metric next to its baseline.

    .venv/bin/python benchmarks/shipped_specs.py                      # every spec
    .venv/bin/python benchmarks/shipped_specs.py burgers steady       # some (names without .yaml)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from _ups import ROOT, provenance, run_group

UPS_EXP = ROOT / ".venv" / "bin" / "ups-exp"


def headline(metrics: dict) -> str:
    for name, base in (
        ("test/rollout_nrmse", "test/persistence_rollout_nrmse"),
        ("test/corr_time", "test/persistence_corr_time"),
        ("test/nrmse", "test/baseline_harmonic_nrmse"),
    ):
        if name in metrics and base in metrics:
            return f"{name} {metrics[name]:.4g} vs {base.split('/')[1]} {metrics[base]:.4g}"
    return "-"


def run_one(name: str, timeout: float) -> dict:
    spec = ROOT / "specs" / f"{name}.yaml"
    sweep = "sweep" in name  # a spec made to be swept (others may name a search space for later sweeps)
    with tempfile.TemporaryDirectory(prefix=f"ups-shipped-{name}-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_", "UPS_"))}
        env.update(UPS_HOME=home, WANDB_MODE="offline")
        cmd = [
            str(UPS_EXP),
            "sweep" if sweep else "run",
            str(spec),
            "--json",
            *([] if sweep else ["--no-progress"]),
        ]
        started = time.perf_counter()
        done = run_group(cmd, timeout=timeout, env=env, cwd=ROOT)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"spec": name, "command": " ".join(cmd[1:3]), "wall_s": wall, "error": done.stderr[-500:]}
    report = json.loads(done.stdout.strip().splitlines()[-1])
    row = {"spec": name, "command": " ".join(cmd[1:3]), "wall_s": wall}
    if sweep:
        row["result"] = (
            f"{report['trials']} best {report['best']['value']:.4g}" if report.get("best") else "-"
        )
    else:
        row["result"] = headline(report["metrics"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="spec names (default: every file in specs/)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per spec")
    args = parser.parse_args()
    names = args.names or sorted(p.stem for p in (ROOT / "specs").glob("*.yaml"))
    where = provenance()
    print(f"commit {where['commit']}, {where['date']}, {where['cpus']} CPUs\n", flush=True)
    rows = []
    for name in names:
        rows.append(run_one(name, args.timeout))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| spec | command | wall (min) | result |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| `{r['spec']}` | `ups-exp {r['command']}` | {r['wall_s'] / 60:.1f} | {r.get('result') or r['error']} |"
        )
    print(json.dumps({"rows": rows, **where}))


if __name__ == "__main__":
    main()
