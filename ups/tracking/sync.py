"""`ups-exp sync`: what tracking outages spooled goes to MLflow; offline W&B runs go up when a key is set.

Read-only until there is something to send: a workspace with nothing pending opens no store and creates no file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ups.spec.errors import SpecError
from ups.spec.redact import clip, redact
from ups.tracking import workspace
from ups.tracking.spool import SPOOL, Spool, pending_runs, sync_run

WANDB_PROBE_S = 5.0


def sync(runs: list[str], *, tracking_uri: str | None, wandb_timeout: float) -> bool:
    """Re-send what tracking outages spooled (MLflow), and sync offline W&B runs when a W&B key is set.

    Prints one line per run; returns False when something is left unsent or was found damaged."""
    home = workspace.home(create=False)
    workspace.contain_environment(home)
    for run_id in runs:
        run_dir = home / "runs" / run_id
        # a run's folder, or a sweep parent's, which holds only the parent's spool
        if not (run_dir / "run.json").is_file() and not (run_dir / SPOOL).is_file():
            raise SpecError("no such run in this workspace", file="command line", key="RUN_ID", got=run_id)
    runs = runs or (pending_runs(home) if home.is_dir() else [])
    ok = _sync_mlflow(home, runs, tracking_uri) if runs else True
    if not runs:
        print("MLflow: nothing to send")
    return _sync_wandb(home, wandb_timeout) and ok


def _sync_mlflow(home: Path, runs: list[str], tracking_uri: str | None) -> bool:
    from ups.tracking.store import open_store

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or workspace.default_mlflow_uri(home)
    key = (
        "--tracking-uri"
        if tracking_uri
        else ("MLFLOW_TRACKING_URI" if "MLFLOW_TRACKING_URI" in os.environ else None)
    )
    client = open_store(uri, key=key, create=False)
    ok = True
    for run_id in runs:
        run_dir = home / "runs" / run_id
        if _is_live(home, run_id):
            print(f"run {run_id}: still running; sync it after it ends (its own process sends what it can)")
            ok = False
            continue
        report = sync_run(client, run_id, run_dir)
        line = f"run {run_id}: sent {report.sent} spooled item(s)"
        if report.pending:
            line += f", {report.pending} left (MLflow: {report.error})"
        if report.skipped:
            line += f"; not sent: {'; '.join(sorted(set(report.skipped)))}"
        if report.damaged:
            shown = "; ".join(report.damaged[:3]) + ("; ..." if len(report.damaged) > 3 else "")
            line += f"; {len(report.damaged)} damaged entr{'y' if len(report.damaged) == 1 else 'ies'} in {run_dir / SPOOL} skipped ({shown})"
        earlier = len(Spool(run_dir).damaged()) - len(report.damaged)
        if earlier:
            line += f" ({earlier} damaged entr{'y' if earlier == 1 else 'ies'} skipped by an earlier sync)"
        print(line)
        ok = ok and not report.pending and not report.damaged
    return ok


def _is_live(home: Path, run_id: str) -> bool:
    """A run whose process still holds its lock is still writing its spool."""
    from ups.tracking.workspace import RunBusy, lock_run, release_run

    if not (home / "runs" / run_id / "run.lock").is_file():
        return False
    try:
        release_run(lock_run(home, run_id))
    except RunBusy:
        return True
    return False


def wandb_reachable(base_url: str, timeout: float = WANDB_PROBE_S) -> str | None:
    """None when something answers at the W&B server's address (any HTTP status), else why not."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(base_url, timeout=timeout).close()  # noqa: S310 - the user's W&B server
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{exc.__class__.__name__}: {reason}"
    return None


def _sync_wandb(home: Path, wandb_timeout: float) -> bool:
    wandb_runs = sorted((home / "wandb").glob("offline-run-*")) if home.is_dir() else []
    unsynced = [r for r in wandb_runs if not any(r.glob("*.synced"))]
    if not unsynced:
        return True
    if not os.environ.get("WANDB_API_KEY"):
        print(f"W&B: {len(unsynced)} offline run(s) under {home / 'wandb'}; set WANDB_API_KEY to sync them")
        return True
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    why = wandb_reachable(base)
    if why is not None:  # one probe instead of a long timeout per run
        print(
            f"W&B is unreachable at {redact(base)} ({clip(why, 200)}): {len(unsynced)} offline run(s) stay in "
            f"{home / 'wandb'}, nothing is lost; run `ups-exp sync` again when it answers"
        )
        return False
    left = 0
    for run_dir in unsynced:  # `wandb sync` marks each run it uploaded (<run>.wandb.synced)
        cmd = [sys.executable, "-m", "wandb", "sync", str(run_dir)]
        try:  # a server that stops answering makes `wandb sync` retry for a long time: bounded
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=wandb_timeout)
            ok, why = done.returncode == 0, redact(done.stderr.strip())[-200:]
        except subprocess.TimeoutExpired:
            ok, why = False, f"no answer within {wandb_timeout:.0f} s"
        print(f"W&B {run_dir.name}: {'synced' if ok else 'FAILED: ' + why}")
        left += not ok
    return left == 0
