"""No credential anywhere, with real PostgreSQL stores: canary passwords holding '/' and given as `?password=`, in
the spec file, in the environment and as command-line overrides, and a canary W&B key, must not appear in the
workspace, either store, the command line of any process ups starts, or any output, after a sweep with two
workers (with --debug), a status and a promote. (Without a database server: tests/reliability/test_leaks.py.)"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from conftest import postgres_database, postgres_dump, subprocess_env, sweep_spec

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _argv_sampler(stop: threading.Event, seen: list[str]) -> None:
    """Every process's full command line (what `ps -ww` shows), as `PID ARGV` lines, sampled until `stop`."""
    while not stop.is_set():
        lines = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                lines.append(f"{cmdline.parent.name} {text}")
            except OSError:  # the process ended
                pass
        seen.append("\n".join(lines))
        stop.wait(0.2)


def _files_holding(folder: Path, secrets: dict[str, str]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{name} in {path}" for name, s in secrets.items() if s.encode() in data]
    return found


def _forms(url: str, password: str) -> tuple[str, str]:
    """The same store's URL with the password raw in the userinfo (it holds '/', which SQLAlchemy accepts there),
    and as a `?password=` parameter (percent-encoded)."""
    from urllib.parse import quote

    from sqlalchemy.engine import make_url

    u = make_url(url)
    where = f"{u.host}:{u.port}/{u.database}"
    return (
        f"postgresql+psycopg://{u.username}:{password}@{where}",
        f"postgresql+psycopg://{u.username}@{where}?password={quote(password, safe='')}",
    )


def test_canary_secrets_reach_no_file_store_argv_or_output(tmp_path):
    secrets = {
        "wandb key": uuid.uuid4().hex + uuid.uuid4().hex[:8],  # 40 characters, like a real key
        "storage password": f"pg/canary{uuid.uuid4().hex[:16]}",
        "mlflow password": f"ml/canary{uuid.uuid4().hex[:16]}",
    }
    storage_slash, storage_query = _forms(
        postgres_database(secrets["storage password"]), secrets["storage password"]
    )
    mlflow_slash, mlflow_query = _forms(
        postgres_database(secrets["mlflow password"]), secrets["mlflow password"]
    )
    home, user_home, specs = tmp_path / "home", tmp_path / "user_home", tmp_path / "specs"
    user_home.mkdir()
    specs.mkdir()
    spec = sweep_spec(
        specs, name="canary", trials=2, epochs=2, tracking="local", pruner="none", sampler="random"
    )
    # in the spec (a user's file, outside the workspace): the storage as `?password=`; in the environment: the
    # MLflow store with the '/' in its userinfo; on the command line: the other form of each
    spec.write_text(spec.read_text().replace("sweep: {", f"sweep: {{storage: '{storage_query}', "))
    env = subprocess_env(
        home,
        HOME=str(user_home),
        OMP_NUM_THREADS="1",
        WANDB_API_KEY=secrets["wandb key"],
        MLFLOW_TRACKING_URI=mlflow_slash,
    )
    outputs: list[str] = []
    started: set[int] = set()
    stop, argv = threading.Event(), []
    sampler = threading.Thread(target=_argv_sampler, args=(stop, argv), daemon=True)
    sampler.start()
    try:
        for command in (
            ["--debug", "sweep", str(spec), "--workers", "2"],
            ["status", str(spec), f"sweep.storage={storage_slash}"],
            ["promote", str(spec), f"sweep.storage={storage_slash}", f"tracking.mlflow.uri={mlflow_query}"],
        ):
            proc = subprocess.Popen(
                [sys.executable, "-m", "ups.cli", *command], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            started.add(proc.pid)  # what the user typed is theirs; what ups starts must hold no secret
            out, err = proc.communicate(timeout=600)
            outputs.append(out + err)
            assert proc.returncode in (0, 3), f"{command}: {out}\n{err}"
    finally:
        stop.set()
        sampler.join()
    seen = [line for sample in argv for line in sample.splitlines() if "ups.cli" in line]
    assert any("--worker-index" in line for line in seen), f"the sampler never saw a worker: {set(seen)}"

    leaks = [
        f"{n} in the process list"
        for n, s in secrets.items()
        if any(
            s in line and int(line.split(" ", 1)[0]) not in started
            for sample in argv
            for line in sample.splitlines()
        )
    ]
    leaks += [f"{n} in the output" for n, s in secrets.items() if any(s in o for o in outputs)]
    leaks += _files_holding(home, secrets) + _files_holding(user_home, secrets)
    leaks += _files_holding(tmp_path / "home", {k: v for k, v in secrets.items()})
    for store in (storage_slash, mlflow_slash):
        dump = postgres_dump(store)
        assert "canary" in dump  # the stores were used: runs, params and trials are in there
        leaks += [f"{n} in the store {store.split('@')[-1]}" for n, s in secrets.items() if s in dump]
    assert not leaks, "\n".join(leaks)
    assert (home / "wandb").is_dir() and any((home / "wandb").glob("offline-run-*"))
