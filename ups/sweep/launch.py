"""A sweep trial whose profile has several devices runs in its own launcher: torchrun, started by the worker.

Lightning's DDP launcher re-executes the command line, which must never be the sweep itself; torchrun starts every
rank of `python -m ups.sweep.launch` instead, watches them, and stops them all as soon as one fails. Every rank
trains the same frozen trial spec (the worker's, handed over in the environment: no file is re-read, and no
credential lands in argv or on disk). Rank 0 alone talks to Optuna (reports, the pruning decision, which it
broadcasts) and to the trackers; it writes the outcome for the worker, and any rank that fails writes its reason.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna

log = logging.getLogger(__name__)

TRIAL_ENV = "UPS_TRIAL"
"""JSON: the frozen resolved trial spec, the study, the trial's id, its tags, and the folder for the outcome."""
STOP_GRACE_S = 30.0


class LaunchedTrialFailed(RuntimeError):
    """A rank of a multi-process trial failed; `reason` is what the trial records (`nan`, `oom` or a message)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def run_launched(
    trial: optuna.Trial, spec, *, study: str, storage: str | None, tags: dict[str, str], out: Path
) -> dict[str, float]:
    """Train the trial's frozen `spec` on all its devices through torchrun; return its metrics.
    Raises TrialPruned, or LaunchedTrialFailed with the reason, like an in-process trial."""
    from ups.tracking.session import RUN_ID_ENV

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    payload = {
        "spec": spec.to_dict(),
        "path": str(spec.path),
        "blocks": spec.blocks,
        "overrides": list(spec.overrides),
        "study": study,
        "trial_id": trial._trial_id,
        "tags": tags,
        "out": str(out),
    }
    from ups.sweep.driver import STORAGE_ENV

    if storage is None:
        raise RuntimeError("a multi-device trial needs the study's storage URL")
    # the storage URL may hold a password: in the environment, never in argv or a file
    env = {**os.environ, TRIAL_ENV: json.dumps(payload), STORAGE_ENV: storage}
    env.pop(RUN_ID_ENV, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free port on this machine: parallel workers never collide
        f"--nproc-per-node={spec.spec.hardware.devices}",
        "--max-restarts=0",
        "--monitor-interval=0.5",
        "-m",
        "ups.sweep.launch",
    ]
    proc = subprocess.Popen(cmd, env=env)
    try:
        code = proc.wait()
    except BaseException:  # the worker was interrupted: stop the ranks (torchrun passes the signal on)
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    return _outcome(out, code)


def _outcome(out: Path, code: int) -> dict[str, float]:
    result = out / "rank0.json"
    reports = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))}
    first = reports.get("rank0") if result.is_file() else None
    if first is not None and first["state"] == "complete" and code == 0:
        return first["values"]
    if first is not None and first["state"] == "pruned":
        raise optuna.TrialPruned(first.get("reason", "pruned"))
    failed = sorted((r for r in reports.values() if r["state"] == "fail"), key=lambda r: r.get("at", 0.0))
    # the rank that failed first names the reason (a NaN or OOM), not the ranks that lost their peer afterwards
    specific = [r for r in failed if r["reason"] in ("nan", "oom")]
    if specific or failed:
        raise LaunchedTrialFailed((specific or failed)[0]["reason"])
    raise LaunchedTrialFailed(f"the trial's ranks exited with code {code} before reporting")


def _reason(exc: BaseException) -> str:
    from ups.spec.redact import redact
    from ups.sweep.objective import known_reason

    return known_reason(exc) or redact(f"{exc.__class__.__name__}: {exc}")[:500]


def main() -> int:
    """One rank of a launched trial (torchrun sets RANK)."""
    from ups.run.single import run_spec
    from ups.spec.load import ResolvedSpec, spec_from_dict
    from ups.sweep.driver import STORAGE_ENV
    from ups.sweep.objective import trial_hooks
    from ups.sweep.study import make_pruner, make_storage

    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s %(name)s] %(message)s")
    payload = json.loads(os.environ[TRIAL_ENV])
    rank = int(os.environ.get("RANK", "0"))
    out = Path(payload["out"])
    try:
        resolved = ResolvedSpec(
            spec=spec_from_dict(payload["spec"]),
            path=Path(payload["path"]),
            blocks=payload["blocks"],
            overrides=tuple(payload["overrides"]),
        )
        cfg = resolved.spec.sweep
        trial = None
        if rank == 0:
            store = make_storage(os.environ[STORAGE_ENV], cfg)
            study = optuna.load_study(
                study_name=payload["study"], storage=store, pruner=make_pruner(cfg, resolved.spec)
            )
            trial = optuna.trial.Trial(study, payload["trial_id"])

        hooks = trial_hooks(trial, resolved, tags=payload["tags"], study=payload["study"])
        result = run_spec(resolved, progress_bar=False, trial=hooks)
    except optuna.TrialPruned as exc:
        _write(out, rank, {"state": "pruned", "reason": str(exc)})
        return 0
    except BaseException as exc:  # noqa: BLE001 - every way out is reported to the worker
        _write(out, rank, {"state": "fail", "reason": _reason(exc), "at": time.time()})
        log.warning("rank %d of the trial failed: %s", rank, _reason(exc))
        return 1
    if rank == 0:
        _write(out, rank, {"state": "complete", "values": {**result.metrics, **result.extras}})
    return 0


def _write(out: Path, rank: int, report: dict) -> None:
    tmp = out / f".rank{rank}.json.tmp"
    tmp.write_text(json.dumps(report))
    tmp.replace(out / f"rank{rank}.json")


if __name__ == "__main__":
    sys.exit(main())
