"""`ups-exp sync` cannot corrupt and cannot hang: a damaged spool entry (a line cut in half, an artifact deleted
since) is skipped and named while the rest is sent; a status spooled by an attempt that `--resume` superseded,
or one that would move a finished run backwards, is never sent; W&B that does not answer is said in one line
within seconds; and read-only commands create nothing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from conftest import ROOT, mlflow_client, subprocess_env

from ups.tracking.spool import GuardedClient, Spool
from ups.tracking.sync import sync


def _run_folder(home, client, status: str = "FINISHED"):
    found = client.get_experiment_by_name("spooled")
    exp = found.experiment_id if found else client.create_experiment("spooled")
    run_id = client.create_run(exp).info.run_id
    if status != "RUNNING":
        client.set_terminated(run_id, status=status)
    folder = home / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"run_id": run_id, "status": status}))
    return run_id, folder


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_damaged_entries_are_skipped_named_and_counted_and_the_rest_is_sent(workspace, tmp_path, capsys):
    client = mlflow_client(workspace)
    client.search_experiments()  # the store exists
    run_id, folder = _run_folder(workspace, client)
    gone = tmp_path / "plot.png"
    gone.write_bytes(b"png")
    spool = Spool(folder)
    spool.add("metrics", metrics=[["train/loss", 0.5, 1, 3]])
    spool.add("artifact", path=str(gone), artifact_path=None)
    spool.add("tags", tags={"ups.note": "after"})
    gone.unlink()  # deleted since it was spooled
    with open(spool.path, "a") as f:
        f.write('{"id": "abc", "op": "metr')  # the process died mid-line

    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    assert sync([], tracking_uri=uri, wandb_timeout=5) is False  # something could not be sent: exit 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith(f"run {run_id}"))
    assert "sent 2 spooled item(s)" in line and "2 damaged entries" in line, line
    assert "line 2: its artifact" in line and "line 4: not a complete entry" in line, line
    run = client.get_run(run_id)
    assert run.data.metrics["train/loss"] == 0.5 and run.data.tags["ups.note"] == "after"

    assert sync([run_id], tracking_uri=uri, wandb_timeout=5) is True  # reported once; nothing is left
    out = capsys.readouterr().out
    assert f"run {run_id}: sent 0 spooled item(s) (2 damaged entries skipped by an earlier sync)" in out
    assert len(client.get_metric_history(run_id, "train/loss")) == 1


def test_a_superseded_or_backward_status_is_never_sent(workspace, capsys):
    client = mlflow_client(workspace)
    client.search_experiments()
    uri = f"sqlite:///{workspace / 'mlflow.db'}"

    # an attempt that failed during an outage spooled FAILED; the resumed attempt finished the run
    run_id, folder = _run_folder(workspace, client, status="FINISHED")
    Spool(folder).add("metrics", metrics=[["train/loss", 0.7, 1, 1]])
    Spool(folder).add("terminate", status="FAILED")
    assert sync([run_id], tracking_uri=uri, wandb_timeout=5) is True
    assert client.get_run(run_id).info.status == "FINISHED"
    assert "never moved back to FAILED" in capsys.readouterr().out
    assert client.get_run(run_id).data.metrics["train/loss"] == 0.7  # what the attempt measured still arrives

    # a resumed run adopts the earlier attempt's spool: its status is superseded, the rest is sent at once
    run_id, folder = _run_folder(workspace, client, status="RUNNING")
    Spool(folder).add("metrics", metrics=[["train/loss", 0.9, 1, 1]])
    Spool(folder).add("terminate", status="KILLED")
    guard = GuardedClient(client, run_id, folder)
    assert guard.adopt() == 1 and not guard.offline
    assert client.get_run(run_id).info.status == "RUNNING"
    assert Spool(folder).pending() == []
    guard.set_terminated("FINISHED")
    assert client.get_run(run_id).info.status == "FINISHED"


def test_wandb_that_does_not_answer_is_said_in_one_line_within_seconds(tmp_path):
    home = tmp_path / "home"
    offline = home / "wandb" / "offline-run-20261207_000000-abcdef"
    offline.mkdir(parents=True)
    (offline / "run-abcdef.wandb").write_bytes(b"\x00")
    key = "k" * 40
    env = subprocess_env(home, WANDB_API_KEY=key, WANDB_BASE_URL=f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ups.cli", "sync"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )  # fmt: skip
    assert time.monotonic() - started < 30  # one probe, not a timeout per run
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [x for x in done.stdout.splitlines() if x.startswith("W&B")]
    assert len(lines) == 1 and "W&B is unreachable" in lines[0] and "nothing is lost" in lines[0], done.stdout
    assert key not in done.stdout + done.stderr
    assert not (home / "mlflow.db").exists()


def test_read_only_commands_create_nothing_and_name_the_flag(tmp_path):
    from conftest import sweep_spec

    home = tmp_path / "home"
    spec = sweep_spec(tmp_path, name="ro")

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "ups.cli", *args], env=subprocess_env(home), cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    done = cli("status", str(spec))
    assert done.returncode == 2 and "no study yet" in done.stderr
    done = cli("status", str(spec), "--storage", "sqlite:///typo.db")
    assert done.returncode == 2 and done.stderr.startswith("command line: --storage: no Optuna storage"), (
        done.stderr
    )
    assert "sweep.storage" not in done.stderr
    done = cli("sync")
    assert done.returncode == 0 and "nothing to send" in done.stdout
    done = cli("sync", "--tracking-uri", f"sqlite:///{tmp_path / 'other.db'}")
    assert done.returncode == 0
    assert not home.exists() and not (tmp_path / "typo.db").exists() and not (tmp_path / "other.db").exists()


def test_sync_leaves_a_live_run_alone(workspace):
    from ups.tracking.workspace import lock_run, release_run

    client = mlflow_client(workspace)
    client.search_experiments()
    run_id, folder = _run_folder(workspace, client, status="RUNNING")
    Spool(folder).add("metrics", metrics=[["train/loss", 0.1, 1, 1]])
    handle = lock_run(workspace, run_id)
    try:
        code = subprocess.run(
            [sys.executable, "-m", "ups.cli", "sync", run_id], env=subprocess_env(workspace), cwd=ROOT,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        release_run(handle)
    assert code.returncode == 1 and "still running" in code.stdout, code.stdout + code.stderr
    assert Spool(folder).pending()  # nothing was taken from under the live run
