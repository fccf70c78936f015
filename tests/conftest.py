"""Shared fixtures: a tiny spec that shrinks the real pipeline to seconds, an isolated workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY_SPEC = """\
name: {name}
seed: 0
data:
  from: burgers1d
  num_trajectories: 40
  num_points: 64
  num_frames: 21
  generator: {{solver_points: 128}}
model: operator_tiny
train:
  max_epochs: {epochs}
  batch_size: 32
  lr: 3.0e-3
  unroll_steps: 2
  deterministic: true
eval:
  context_frames: 5
  horizon: 10
  report_horizons: [1, 5]
tracking: {tracking}
"""


def latent_operator(*, num_params: int = 1, points: int = 256, channels: int = 1, **cfg):
    """A latent-operator predictor in physical units (the platform's wrapper around the catalogue model)."""
    from ups.models.config import LatentOperatorConfig
    from ups.models.operator import LatentOperator
    from ups.models.wrap import Normalized
    from ups.plugin import ModelIO

    io = ModelIO(
        spatial_dims=1, in_channels=channels, out_channels=channels, num_params=num_params, grid=(points,)
    )
    return Normalized(LatentOperator(LatentOperatorConfig(**cfg), io), channels)


def write_waves_2d(
    path: Path, *, n: int = 20, frames: int = 8, grid: tuple[int, int] = (16, 12), seed: int = 0
):
    """A 2D `tensor` file (N, T, X, Y) in PDEBench's layout: waves carried across a periodic non-square grid (a
    map a small model learns in a few steps). Returns the array written."""
    import h5py
    import numpy as np

    (nx, ny), rng = grid, np.random.default_rng(seed)
    x, y = (np.arange(nx) / nx)[:, None], (np.arange(ny) / ny)[None, :]
    data = np.empty((n, frames, nx, ny), dtype=np.float32)
    for i in range(n):
        kx, ky = rng.integers(1, 3, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        for t in range(frames):
            data[i, t] = np.sin(2 * np.pi * (kx * x + ky * y) + phase - 0.4 * t)
    with h5py.File(path, "w") as f:
        f.create_dataset("tensor", data=data)
        f.create_dataset("x-coordinate", data=(np.arange(nx) + 0.5) / nx)
        f.create_dataset("y-coordinate", data=(np.arange(ny) + 0.5) / ny)
        f.create_dataset("t-coordinate", data=np.arange(frames + 1) * 0.1)
    return data


def write_tiny_spec(folder: Path, *, name: str = "tiny", epochs: int = 2, tracking: str = "local") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(TINY_SPEC.format(name=name, epochs=epochs, tracking=tracking))
    return path


def isolate(monkeypatch, home: Path, user_home: Path) -> None:
    """$UPS_HOME at `home`, $HOME at `user_home`, the repository's configs, no W&B/MLflow/run-id variables."""
    monkeypatch.setenv("UPS_HOME", str(home))
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.setenv("UPS_CONFIGS", str(ROOT / "configs"))
    for var in [v for v in os.environ if v.startswith(("WANDB_", "MLFLOW_"))]:
        monkeypatch.delenv(var)
    monkeypatch.delenv("UPS_RUN_ID", raising=False)


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """An empty $UPS_HOME and a fake $HOME (to prove nothing is written there)."""
    home = tmp_path / "ups_home"
    user_home = tmp_path / "user_home"
    user_home.mkdir()
    isolate(monkeypatch, home, user_home)
    return home


REFUSE_PICKLES = """
import pickle
def refuse(*a, **k):
    raise AssertionError("something was unpickled")
pickle.load = pickle.loads = refuse
import cloudpickle
cloudpickle.load = cloudpickle.loads = refuse
"""
"""Prefix of a fresh-process script: any unpickling (pickle or cloudpickle) fails it."""


@pytest.fixture
def tiny_spec(tmp_path) -> Path:
    return write_tiny_spec(tmp_path)


def subprocess_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: this workspace, and nothing another test's workspace left behind."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WANDB_", "MLFLOW_", "UPS_")) and k != "MPLCONFIGDIR"
    }
    env.update(UPS_HOME=str(home), UPS_CONFIGS=str(ROOT / "configs"), **extra)
    return env


def mlflow_client(home: Path):
    """A client of a workspace's MLflow (explicit: no process-global tracking URI)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def mlflow_runs(home: Path, experiment: str) -> list:
    """Runs of an experiment in a workspace's MLflow."""
    client = mlflow_client(home)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


SWEEP_SPEC = """\
name: {name}
data: {{from: burgers1d, num_trajectories: 40, num_points: 64, num_frames: 21, generator: {{solver_points: 128}}}}
model: operator_tiny
train: {{max_epochs: {epochs}, batch_size: 32, unroll_steps: 2, batches_per_epoch: 3, deterministic: true}}
eval: {{context_frames: 5, horizon: 10, report_horizons: [1, 5]}}
search_space: {space}
tracking: {tracking}
sweep: {{trials: {trials}, pruner: {pruner}, startup_trials: 2, warmup_epochs: 1, sampler: {sampler}}}
"""


def sweep_spec(
    folder: Path,
    *,
    name="sw",
    epochs=3,
    space="operator_tiny",
    tracking="none",
    trials=4,
    pruner="median",
    sampler="tpe",
) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        SWEEP_SPEC.format(
            name=name,
            epochs=epochs,
            space=space,
            tracking=tracking,
            trials=trials,
            pruner=pruner,
            sampler=sampler,
        )
    )
    return path


KS_PIPELINE = """\
name: {name}
data:
  from: ks1d
  length_low: 20.0
  length_high: 22.0
  num_trajectories: 24
  num_points: 64
  num_frames: 40
  train_frames: 20
  val_fraction: 0.2
  test_fraction: 0.2
  generator: {{solver_points: 64, burn_in: 10.0}}
model: operator_tiny
train: {{max_epochs: 2, batch_size: 16, lr: 3.0e-3, unroll_steps: 2, batches_per_epoch: 4, deterministic: true}}
eval: {{context_frames: 1, horizon: 30, report_horizons: [1, 10]}}
registry: {{select_metric: val/corr_time, gates: {{champion_metric: test/corr_time, beat_persistence: false}}}}
stages:
  - operator
  - {{kind: diffusion_residual, name: refiner, train: {{unroll_steps: 1}}}}
  - {{kind: consistency_distill, name: student, train: {{unroll_steps: 1}}}}
tracking: {tracking}
"""


def write_ks_pipeline(folder: Path, *, name: str = "kspipe", tracking: str = "local") -> Path:
    """A Kuramoto–Sivashinsky operator → refiner → student pipeline shrunk to seconds (64 points, L ≈ 21)."""
    path = folder / f"{name}.yaml"
    path.write_text(KS_PIPELINE.format(name=name, tracking=tracking))
    return path


def postgres_url() -> str:
    """The CI PostgreSQL's URL (its role may create databases and roles); skip with the reason when none answers."""
    url = os.environ.get("UPS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("UPS_TEST_POSTGRES_URL is not set (.ci/run starts a throwaway PostgreSQL and sets it)")
    try:
        import sqlalchemy

        sqlalchemy.create_engine(url).connect().close()
    except Exception as exc:
        pytest.skip(f"no PostgreSQL server answers at UPS_TEST_POSTGRES_URL: {exc.__class__.__name__}")
    return url


def postgres_database(password: str) -> str:
    """A fresh role with `password` owning a fresh database on the CI server; returns its URL (password inside)."""
    import uuid

    import sqlalchemy
    from sqlalchemy.engine import make_url

    admin = make_url(postgres_url())
    name = f"t{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
        conn.execute(sqlalchemy.text(f"GRANT {name} TO CURRENT_USER"))
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name} OWNER {name}"))
    engine.dispose()
    return admin.set(username=name, password=password, database=name).render_as_string(hide_password=False)


def postgres_dump(url: str) -> str:
    """Every row of every table of a database, as text (to search a store for a string)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    rows = []
    with engine.connect() as conn:
        for table in sqlalchemy.inspect(conn).get_table_names():
            for row in conn.execute(sqlalchemy.text(f'SELECT * FROM "{table}"')):
                rows.append(f"{table}: {tuple(row)!r}")
    engine.dispose()
    return "\n".join(rows)


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 (its store and artifacts in `folder`) that a test may kill and restart."""

    def __init__(self, folder: Path, backend: str | None = None) -> None:
        import socket

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.backend = backend or f"sqlite:///{folder / 'server.db'}"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 120.0) -> MlflowServer:
        import subprocess
        import sys
        import time
        import urllib.request

        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
               "--artifacts-destination", str(self.folder / "artifacts"), "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1"]  # fmt: skip
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        log = open(self.folder / "server.log", "a")  # noqa: SIM115 - the server's lifetime
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.kill()
        raise RuntimeError("mlflow server did not answer")

    def kill(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path / "mlflow-server").start()
    yield server
    server.kill()


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` skip, with the reason, where torch sees no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(
        reason="needs a CUDA device (this machine has none); benchmarks/gpu_check.sh runs them"
    )
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
