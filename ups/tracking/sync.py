"""`ups-exp sync`: what tracking outages spooled goes to MLflow; offline W&B runs go up when a key is set."""

from __future__ import annotations

import os
import subprocess
import sys

from ups.spec.errors import SpecError
from ups.spec.redact import redact
from ups.tracking import workspace
from ups.tracking.session import connect
from ups.tracking.spool import SPOOL, pending_runs, sync_run


def sync(runs: list[str], *, tracking_uri: str | None, wandb_timeout: float) -> bool:
    """Re-send what tracking outages spooled (MLflow), and sync offline W&B runs when a W&B key is set.

    Prints one line per run; returns False when something is left unsent."""

    home = workspace.home()
    workspace.contain_environment(home)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or workspace.default_mlflow_uri(home)
    runs = runs or pending_runs(home)
    client = connect(uri) if runs else None
    left = 0
    for run_id in runs:
        run_dir = home / "runs" / run_id
        # a run's folder, or a sweep parent's, which holds only the parent's spool
        if not (run_dir / "run.json").is_file() and not (run_dir / SPOOL).is_file():
            raise SpecError("no such run in this workspace", file="command line", key="RUN_ID", got=run_id)
        sent, pending = sync_run(client, run_id, run_dir)
        left += pending
        print(f"run {run_id}: sent {sent} spooled item(s)" + (f", {pending} left" if pending else ""))
    if not runs:
        print("MLflow: nothing to send")
    wandb_runs = sorted((home / "wandb").glob("offline-run-*"))
    unsynced = [r for r in wandb_runs if not any(r.glob("*.synced"))]
    if unsynced and os.environ.get("WANDB_API_KEY"):
        for run_dir in unsynced:  # `wandb sync` marks each run it uploaded (<run>.wandb.synced)
            cmd = [sys.executable, "-m", "wandb", "sync", str(run_dir)]
            try:  # an unreachable W&B server makes `wandb sync` retry forever: bounded
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=wandb_timeout)
                ok, why = done.returncode == 0, done.stderr.strip()[-200:]
            except subprocess.TimeoutExpired:
                ok, why = False, f"no answer within {wandb_timeout:.0f} s"
            print(f"W&B {run_dir.name}: {'synced' if ok else 'FAILED: ' + redact(why)}")
            left += not ok
    elif unsynced:
        print(f"W&B: {len(unsynced)} offline run(s) under {home / 'wandb'}; set WANDB_API_KEY to sync them")
    return left == 0
