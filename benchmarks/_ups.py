"""What several benchmarks share: running `ups-exp run` in a fresh workspace and reading its JSON summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def provenance() -> dict:
    """What every benchmark records with its numbers: the commit of the tree it ran from (with `-dirty` when tracked
    files differ from it), the date and time, the CPUs and the 1-minute load average at the start."""
    import datetime

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = "-dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
    return {
        "commit": git("rev-parse", "--short=12", "HEAD") + dirty,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
    }


def provenance_line() -> str:
    """The line every benchmark prints first: where its numbers come from."""
    p = provenance()
    return f"benchmark run at commit {p['commit']}, {p['date']}, {p['cpus']} CPUs, load average {p['load_average']}"


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds (user + system) used so far by process `root` (default: this one) and all its descendants, those
    still running (W&B's wandb-core, DDP ranks) and those already reaped (their time is in their parent's cutime)."""
    from collections import defaultdict

    root = os.getpid() if root is None else root
    ticks, parent, children = {}, {}, defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        ticks[pid] = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        children[parent[pid]].append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += ticks.get(pid, 0)
        stack += children.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


def bootstrap_median_ci(values: list[float], *, draws: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the median of `values` (resampled with replacement)."""
    import random
    import statistics

    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def run_group(cmd: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, capture_output=True, text=True)` in a process group of its own: on timeout the whole
    group (torchrun's ranks, a DDP launcher's children, wandb-core) is killed, not only the direct child, and
    TimeoutExpired is raised as `subprocess.run` would."""
    import signal

    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


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
