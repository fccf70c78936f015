"""What several benchmarks share: running `ups-exp run` in a fresh workspace and reading its JSON summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_ups(spec: Path, args: list[str], home: Path, *, label: str = "") -> tuple[dict, float]:
    """`ups-exp run SPEC ARGS --json` with `$UPS_HOME` = home and W&B offline: (its last JSON line, wall seconds).
    Exits with the command's stderr tail when it fails."""
    env = {**os.environ, "UPS_HOME": str(home), "WANDB_MODE": "offline"}
    cmd = [str(ROOT / ".venv" / "bin" / "ups-exp"), "run", str(spec), *args, "--json"]
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{label}ups-exp exited {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall
