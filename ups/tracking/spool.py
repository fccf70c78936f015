"""A tracking outage loses nothing: what MLflow could not take waits in the run's folder for `ups-exp sync`.

`GuardedClient` is a run's MLflow client that never stalls or fails training. Its first failed call switches it
offline for the rest of the run: that call and every later one are appended to `runs/<id>/spool.jsonl` (one JSON
object per line, each with an id). `sync_run` re-sends the entries in order and records each id it sent in
`runs/<id>/spool.sent`, so running it again sends nothing twice.

What sync never does: fail on a damaged entry (a line cut in half by a crash, an artifact deleted since), which is
skipped, named and counted once (`spool.damaged`) while the rest goes; or move a run's status backwards (a
terminate spooled by an attempt that a `--resume` superseded, or a FAILED/KILLED onto a run MLflow shows FINISHED).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ups.spec.redact import clip

log = logging.getLogger(__name__)

SPOOL, SENT, DAMAGED = "spool.jsonl", "spool.sent", "spool.damaged"


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@dataclass
class Entry:
    """One spooled item, or a line that is not one (`problem` says why)."""

    key: str
    """The item's id; for a damaged line, its line number and a hash of its bytes."""
    line: int
    op: str = ""
    payload: dict = field(default_factory=dict)
    problem: str | None = None


class Spool:
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.path, self.sent_path, self.damaged_path = run_dir / SPOOL, run_dir / SENT, run_dir / DAMAGED

    def add(self, op: str, **payload: Any) -> None:
        _append(self.path, json.dumps({"id": uuid.uuid4().hex, "op": op, **payload}, default=float))

    def entries(self) -> list[Entry]:
        """Every line in order; one that is not a complete JSON object with an id and an op is damaged."""
        if not self.path.is_file():
            return []
        out = []
        for number, text in enumerate(self.path.read_bytes().splitlines(), start=1):
            if not text.strip():
                continue
            try:
                item = json.loads(text)
                out.append(Entry(str(item.pop("id")), number, str(item.pop("op")), item))
            except (ValueError, KeyError, AttributeError, TypeError):
                digest = hashlib.sha256(text).hexdigest()[:16]
                out.append(
                    Entry(f"line{number}:{digest}", number, problem="not a complete entry (cut short?)")
                )
        return out

    def sent(self) -> set[str]:
        return set(self.sent_path.read_text().split()) if self.sent_path.is_file() else set()

    def damaged(self) -> set[str]:
        if not self.damaged_path.is_file():
            return set()
        return {line.split()[0] for line in self.damaged_path.read_text().splitlines() if line.strip()}

    def pending(self) -> list[Entry]:
        done = self.sent() | self.damaged()
        return [e for e in self.entries() if e.key not in done]

    def mark_sent(self, key: str) -> None:
        _append(self.sent_path, key)

    def mark_damaged(self, entry: Entry) -> None:
        _append(self.damaged_path, f"{entry.key} line {entry.line}: {entry.problem}")

    def supersede_terminations(self) -> int:
        """A resumed attempt owns the run's status from now on: the status an earlier attempt spooled is never
        sent. Returns how many were superseded."""
        stale = [e for e in self.pending() if e.op == "terminate"]
        for e in stale:
            self.mark_sent(e.key)
        return len(stale)


class GuardedClient:
    """One run's MLflow writes: sent while the store answers, spooled from its first failure on.

    With `background=True` (a training run's client) every write is handed to one sender thread, in order, and the
    training step that logged it goes on at once: a store that hangs or refuses (retries, timeouts) never stalls a
    step. `flush()` waits for what is queued (bounded); whatever it could not send by then is spooled, so nothing
    is lost (an item in flight when the bound ran out may arrive twice; MLflow keeps one copy of a repeated
    metric point, tag or artifact)."""

    def __init__(self, client: Any, run_id: str, run_dir: Path, *, background: bool = False) -> None:
        self.client, self.run_id = client, run_id
        self.spool = Spool(run_dir)
        self.offline = False
        self.spooled = 0
        self._queue: queue.Queue | None = None
        self._lock = threading.Lock()
        self._in_flight: tuple | None = None
        if background:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._drain, daemon=True, name=f"ups-mlflow-{run_id[:8]}")
            self._thread.start()

    def _send_or_spool(self, op: str, payload: dict, send) -> None:
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
                    clip(" ".join(str(exc).split()), 200),
                    self.spool.path,
                    self.run_id,
                )
        self._spool(op, payload)

    def _spool(self, op: str, payload: dict) -> None:
        with self._lock:
            self.spool.add(op, **payload)
            self.spooled += 1

    def _do(self, op: str, payload: dict, send) -> None:
        if self._queue is None:
            self._send_or_spool(op, payload, send)
        else:
            self._queue.put((op, payload, send))

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            with self._lock:
                self._in_flight = item
            self._send_or_spool(*item)
            with self._lock:
                self._in_flight = None
            self._queue.task_done()

    def flush(self, timeout: float = 60.0) -> None:
        """Wait (at most `timeout` seconds) until every queued write is sent or spooled; spool what is left."""
        if self._queue is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return
        self.offline = True  # the store hangs: the rest goes to the spool, in order
        with self._lock:
            left = [self._in_flight] if self._in_flight else []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    left.append(item)
            self._in_flight = None
        log.warning(
            "MLflow did not take %d item(s) within %.0f s: spooled for `ups-exp sync`", len(left), timeout
        )
        for op, payload, _send in left:
            self._spool(op, payload)

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

    def adopt(self) -> int:
        """A resumed run takes over what its earlier attempt spooled: that attempt's status is superseded, and the
        rest is sent now if the store answers (else it stays for `ups-exp sync`). Returns the items sent."""
        self.spool.supersede_terminations()
        if not self.spool.pending():
            return 0
        report = sync_run(self.client, self.run_id, self.spool.dir)
        if report.pending:
            self.offline = True  # the store does not answer: keep the order, spool from here on
        return report.sent


def _send_metrics(client, run_id: str, rows: list) -> None:
    from mlflow.entities import Metric

    client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in rows])


def _send_tags(client, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


class Damaged(ValueError):
    """A spooled entry that can never be sent (its artifact is gone, its operation unknown)."""


_ORDER = {"RUNNING": 0, "SCHEDULED": 0, "KILLED": 1, "FAILED": 1, "FINISHED": 2}


def _send(client, run_id: str, entry: Entry, run_dir: Path) -> str | None:
    """Send one entry; returns why it was skipped instead (a status that would move the run backwards)."""
    op, p = entry.op, entry.payload
    if op == "metrics":
        _send_metrics(client, run_id, p["metrics"])
    elif op == "tags":
        _send_tags(client, run_id, p["tags"])
    elif op == "artifact":
        if not Path(p["path"]).is_file():
            raise Damaged(f"its artifact {p['path']} no longer exists")
        client.log_artifact(run_id, p["path"], p.get("artifact_path"))
    elif op == "terminate":
        now = client.get_run(run_id).info.status
        recorded = _recorded_status(run_dir)
        for have in (now, recorded):
            if have and _ORDER.get(have, 0) > _ORDER.get(p["status"], 0):
                return f"the run is {have}: its status is never moved back to {p['status']}"
        client.set_terminated(run_id, status=p["status"])
    else:
        raise Damaged(f"unknown operation {op!r}")
    return None


def _recorded_status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


@dataclass
class SyncReport:
    sent: int = 0
    pending: int = 0
    """Entries left unsent because the store failed (the next sync retries them)."""
    damaged: list[str] = field(default_factory=list)
    """Entries found damaged by this sync (skipped for good, named here once)."""
    skipped: list[str] = field(default_factory=list)
    """Statuses not sent because they would move the run backwards."""
    error: str | None = None


def sync_run(client, run_id: str, run_dir: Path) -> SyncReport:
    """Send a run's pending entries in order. A damaged entry is skipped and recorded; a store that fails stops
    this run's sync (what is left stays pending)."""
    spool = Spool(run_dir)
    pending = spool.pending()
    report = SyncReport()
    terminations = [e for e in pending if e.op == "terminate"]
    for i, entry in enumerate(pending):
        if entry.problem is not None:
            spool.mark_damaged(entry)
            report.damaged.append(f"line {entry.line}: {entry.problem}")
            continue
        if entry.op == "terminate" and entry is not terminations[-1]:
            spool.mark_sent(entry.key)  # a later attempt's status supersedes it
            continue
        try:
            why = _send(client, run_id, entry, run_dir)
        except Damaged as exc:
            entry.problem = str(exc)
            spool.mark_damaged(entry)
            report.damaged.append(f"line {entry.line}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - the store: stop here, keep the rest for the next sync
            report.pending = len(pending) - i
            report.error = clip(f"{exc.__class__.__name__}: {' '.join(str(exc).split())}", 300)
            return report
        spool.mark_sent(entry.key)
        if why:
            report.skipped.append(why)
        else:
            report.sent += 1
    return report


def pending_runs(home: Path) -> list[str]:
    """Run ids in the workspace whose spool still holds unsent entries."""
    return sorted(p.parent.name for p in (home / "runs").glob(f"*/{SPOOL}") if Spool(p.parent).pending())
