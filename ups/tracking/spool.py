"""A tracking outage loses nothing: what MLflow could not take waits in the run's folder for `ups-exp sync`.

`GuardedClient` is a run's MLflow client that never stalls or fails training. Its first failed call switches it
offline for the rest of the run: that call and every later one are appended to `runs/<id>/spool.jsonl` (one JSON
object per line, each with an id). `sync_run` re-sends the entries in order and records each id it sent in
`runs/<id>/spool.sent`, so running it again sends nothing twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from ups.spec.redact import redact

log = logging.getLogger(__name__)

SPOOL, SENT = "spool.jsonl", "spool.sent"


class Spool:
    def __init__(self, run_dir: Path) -> None:
        self.path, self.sent_path = run_dir / SPOOL, run_dir / SENT

    def add(self, op: str, **payload: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"id": uuid.uuid4().hex, "op": op, **payload}, default=float)
        with open(self.path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def entries(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def sent(self) -> set[str]:
        return set(self.sent_path.read_text().split()) if self.sent_path.is_file() else set()

    def pending(self) -> list[dict]:
        done = self.sent()
        return [e for e in self.entries() if e["id"] not in done]

    def mark_sent(self, entry_id: str) -> None:
        with open(self.sent_path, "a") as f:
            f.write(entry_id + "\n")
            f.flush()
            os.fsync(f.fileno())


class GuardedClient:
    """One run's MLflow writes: sent while the store answers, spooled from its first failure on."""

    def __init__(self, client: Any, run_id: str, run_dir: Path) -> None:
        self.client, self.run_id = client, run_id
        self.spool = Spool(run_dir)
        self.offline = False
        self.spooled = 0

    def _do(self, op: str, payload: dict, send) -> None:
        if not self.offline:
            try:
                send()
                return
            except Exception as exc:  # noqa: BLE001 - any failure to reach the store: spool, never stop training
                self.offline = True
                log.warning(
                    "MLflow is unreachable (%s: %s): this run's tracking is spooled in %s; `ups-exp sync %s` "
                    "sends it later",
                    exc.__class__.__name__,
                    redact(" ".join(str(exc).split()))[:200],
                    self.spool.path,
                    self.run_id,
                )
        self.spool.add(op, **payload)
        self.spooled += 1

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        rows = [[k, float(v), int(time.time() * 1000), int(step or 0)] for k, v in metrics.items()]
        self._do("metrics", {"metrics": rows}, lambda: _send_metrics(self.client, self.run_id, rows))

    def set_tags(self, tags: dict[str, str]) -> None:
        tags = {k: str(v) for k, v in tags.items()}
        self._do("tags", {"tags": tags}, lambda: _send_tags(self.client, self.run_id, tags))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        payload = {"path": str(path), "artifact_path": artifact_path}
        self._do("artifact", payload, lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def set_terminated(self, status: str) -> None:
        self._do(
            "terminate", {"status": status}, lambda: self.client.set_terminated(self.run_id, status=status)
        )


def _send_metrics(client, run_id: str, rows: list) -> None:
    from mlflow.entities import Metric

    client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in rows])


def _send_tags(client, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def _send(client, run_id: str, entry: dict) -> None:
    op = entry["op"]
    if op == "metrics":
        _send_metrics(client, run_id, entry["metrics"])
    elif op == "tags":
        _send_tags(client, run_id, entry["tags"])
    elif op == "artifact":
        if not Path(entry["path"]).is_file():
            raise FileNotFoundError(f"spooled artifact {entry['path']} no longer exists")
        client.log_artifact(run_id, entry["path"], entry.get("artifact_path"))
    elif op == "terminate":
        client.set_terminated(run_id, status=entry["status"])
    else:
        raise ValueError(f"unknown spooled operation {op!r}")


def sync_run(client, run_id: str, run_dir: Path) -> tuple[int, int]:
    """Send a run's pending spool entries in order. Returns (sent, still pending). Stops at the first failure."""
    spool = Spool(run_dir)
    pending = spool.pending()
    sent = 0
    for entry in pending:
        _send(client, run_id, entry)
        spool.mark_sent(entry["id"])
        sent += 1
    return sent, len(pending) - sent


def pending_runs(home: Path) -> list[str]:
    """Run ids in the workspace whose spool still holds unsent entries."""
    return sorted(p.parent.name for p in (home / "runs").glob(f"*/{SPOOL}") if Spool(p.parent).pending())
