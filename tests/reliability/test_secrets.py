"""No credential anywhere (issue 11, point 1): canary secrets planted in the W&B key variable, in a PostgreSQL
Optuna storage URL and in a PostgreSQL MLflow URI must not appear in the workspace, either store, the process
list or any output, after a sweep with two workers, a promote and a status."""

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
    """Every process's full command line (what `ps -ww` shows), sampled until `stop`."""
    while not stop.is_set():
        lines = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
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


def test_canary_secrets_reach_no_file_store_argv_or_output(tmp_path):
    secrets = {
        "wandb key": uuid.uuid4().hex + uuid.uuid4().hex[:8],  # 40 characters, like a real key
        "storage password": f"pgcanary{uuid.uuid4().hex[:16]}",
        "mlflow password": f"mlcanary{uuid.uuid4().hex[:16]}",
    }
    storage = postgres_database(secrets["storage password"])
    mlflow_store = postgres_database(secrets["mlflow password"])
    home, user_home, specs = tmp_path / "home", tmp_path / "user_home", tmp_path / "specs"
    user_home.mkdir()
    specs.mkdir()
    spec = sweep_spec(
        specs, name="canary", trials=2, epochs=2, tracking="local", pruner="none", sampler="random"
    )
    # the storage URL in the spec (a user's file, outside the workspace); the MLflow URI and W&B key in the env
    spec.write_text(spec.read_text().replace("sweep: {", f"sweep: {{storage: '{storage}', "))
    env = subprocess_env(
        home,
        HOME=str(user_home),
        OMP_NUM_THREADS="1",
        WANDB_API_KEY=secrets["wandb key"],
        MLFLOW_TRACKING_URI=mlflow_store,
    )
    outputs: list[str] = []
    stop, argv = threading.Event(), []
    sampler = threading.Thread(target=_argv_sampler, args=(stop, argv), daemon=True)
    sampler.start()
    try:
        for command in (
            ["sweep", str(spec), "--workers", "2"],
            ["status", str(spec)],
            ["promote", str(spec)],
        ):
            done = subprocess.run(
                [sys.executable, "-m", "ups.cli", *command], env=env, cwd=tmp_path, capture_output=True,
                text=True, timeout=600,
            )  # fmt: skip
            outputs.append(done.stdout + done.stderr)
            assert done.returncode in (0, 3), f"{command}: {done.stdout}\n{done.stderr}"
    finally:
        stop.set()
        sampler.join()
    seen = [line for sample in argv for line in sample.splitlines() if "ups.cli" in line]
    assert any("--worker-index" in line for line in seen), f"the sampler never saw a worker: {set(seen)}"

    leaks = [f"{n} in the process list" for n, s in secrets.items() if any(s in a for a in argv)]
    leaks += [f"{n} in the output" for n, s in secrets.items() if any(s in o for o in outputs)]
    leaks += _files_holding(home, secrets) + _files_holding(user_home, secrets)
    leaks += _files_holding(tmp_path, {k: v for k, v in secrets.items() if k != "storage password"})
    for store in (storage, mlflow_store):
        dump = postgres_dump(store)
        assert "canary" in dump  # the stores were used: runs, params and trials are in there
        leaks += [f"{n} in the store {store.split('@')[-1]}" for n, s in secrets.items() if s in dump]
    assert not leaks, "\n".join(leaks)
    assert (home / "wandb").is_dir() and any((home / "wandb").glob("offline-run-*"))
