"""2D data with several channels, end to end: a run on a file in PDEBench's 2D compressible-flow layout (four channel
datasets), its promotion, the registered model in a fresh process with plain MLflow, `eval` reproducing the run's
test metrics, `predict` writing a 2D file that reads back, a 2D sweep that prunes and completes, and runs on a
per-sample-group file and on a Darcy file (steady).

The data are waves carried across a periodic 16 × 12 grid (a non-square grid catches axis mix-ups), each channel its
own wave: a map a small FNO learns in a few steps, so every run must beat persistence."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import isolate, subprocess_env

from ups.cli import main

CHANNELS = ("density", "Vx", "Vy", "pressure")
N, T, X, Y = 24, 8, 16, 12
FNO = "{kind: fno, width: 12, num_layers: 2, num_modes: 4, cond_dim: 8, projection_dim: 16}"

SPEC = """\
name: {name}
seed: 0
stage: operator
data: {{path: {path}, num_trajectories: {n}, num_points: null, dt: null, num_frames: null, val_fraction: 0.2,
        test_fraction: 0.25}}
model: {model}
train: {{max_epochs: 4, batches_per_epoch: 8, batch_size: 8, lr: 5.0e-3, unroll_steps: 1, deterministic: true}}
eval: {{context_frames: 1, horizon: 5, report_horizons: [1, 5]}}
registry: {{gates: {{beat_champion: false}}}}
tracking: {tracking}
"""


def _cli(*argv: str) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    lines = [x for x in out.getvalue().splitlines() if x.startswith("{")]
    return code, (json.loads(lines[-1]) if lines else None), out.getvalue() + err.getvalue()


def _waves(n: int = N, channels: int = 4, seed: int = 0) -> np.ndarray:
    """(N, T, C, X, Y): channel c of trajectory i is a wave moving at its own speed (learnable, not persistent)."""
    rng = np.random.default_rng(seed)
    x = (np.arange(X) / X)[:, None]
    y = (np.arange(Y) / Y)[None, :]
    out = np.empty((n, T, channels, X, Y), dtype=np.float32)
    for i in range(n):
        for c in range(channels):
            kx, ky = rng.integers(1, 3, size=2)
            amp, phase = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
            for t in range(T):
                out[i, t, c] = c + amp * np.sin(2 * np.pi * (kx * x + ky * y) + phase - 0.3 * (c + 1) * t)
    return out


def _cfd_file(path: Path) -> Path:
    states = _waves()
    with h5py.File(path, "w") as f:
        for c, name in enumerate(CHANNELS):
            f.create_dataset(name, data=states[:, :, c])
        f.create_dataset("x-coordinate", data=(np.arange(X) + 0.5) / X)
        f.create_dataset("y-coordinate", data=(np.arange(Y) + 0.5) / Y)
        f.create_dataset("t-coordinate", data=np.arange(T + 1) * 0.1)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two_d")
    home = folder / "home"
    data = _cfd_file(folder / "2D_CFD_Rand_M0.1_Eta0.01_Zeta0.01_periodic_16_Train.hdf5")
    spec = folder / "cfd.yaml"
    spec.write_text(SPEC.format(name="cfd", path=data, n=N, model=FNO, tracking="local"))
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, home, folder)
        code, run, out = _cli("run", str(spec), "--json", "--no-progress")
        assert code == 0, out[-3000:]
        code, promoted, out = _cli("promote", str(spec), "--run", run["run_id"], "--json")
        assert code == 0 and promoted["decision"] == "promoted", out[-3000:]
        yield {"folder": folder, "home": home, "spec": spec, "data": data, "run": run, "mp": mp}


@pytest.fixture
def env(trained, monkeypatch):
    isolate(monkeypatch, trained["home"], trained["folder"])
    return trained


def test_a_2d_multichannel_run_beats_persistence_per_channel_and_says_it_has_no_solver(env):
    m = env["run"]["metrics"]
    for split in ("val", "test"):
        assert m[f"{split}/rollout_nrmse"] < 0.9 * m[f"{split}/persistence_rollout_nrmse"], m
        assert m[f"{split}/nrmse"] < m[f"{split}/persistence_nrmse"]
        per_channel = [m[f"{split}/rollout_nrmse.{c}"] for c in CHANNELS]
        assert m[f"{split}/rollout_nrmse"] == pytest.approx(np.mean(per_channel), rel=1e-6)
        assert all(m[f"{split}/persistence_rollout_nrmse.{c}"] > 0 for c in CHANNELS)
    assert "test/solver_rollout_nrmse" not in m  # CFD files have no family here: persistence only
    artifacts = env["home"] / "runs" / env["run"]["run_id"] / "artifacts"
    assert (artifacts / "rollout_test.png").stat().st_size > 0  # per channel: truth, prediction, error


@pytest.mark.slow  # a fresh process: .ci/run runs it
def test_the_registered_2d_model_loads_with_plain_mlflow_in_a_fresh_process(env, tmp_path):
    states = _waves(n=3, seed=7)[:, 0]  # (B, C, X, Y)
    np.save(tmp_path / "states.npy", states)
    code = (
        "import mlflow, numpy as np, sys\n"
        f"mlflow.set_tracking_uri('sqlite:///{env['home'] / 'mlflow.db'}')\n"
        "m = mlflow.pyfunc.load_model('models:/cfd@champion')\n"
        f"x = np.load('{tmp_path / 'states.npy'}')\n"
        "one, roll = m.predict(x), m.predict(x, params={'steps': 3})\n"
        f"np.save('{tmp_path / 'one.npy'}', one); np.save('{tmp_path / 'roll.npy'}', roll)\n"
        "print(m.metadata.get_input_schema())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(env["home"]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    one, roll = np.load(tmp_path / "one.npy"), np.load(tmp_path / "roll.npy")
    assert one.shape == (3, 4, X, Y) and roll.shape == (3, 3, 4, X, Y)
    np.testing.assert_allclose(roll[:, 0], one, rtol=1e-5, atol=1e-6)
    assert "(-1, 4, 16, 12)" in done.stdout  # the input schema states the shapes

    from ups.loading import load

    model = load("models:/cfd@champion", home=env["home"])
    import torch

    with torch.no_grad():
        ours = model.predictor().rollout(
            torch.from_numpy(states), torch.zeros(3, len(model.layout)), torch.full((3,), 0.1), 3
        )
    np.testing.assert_allclose(roll, ours.numpy(), rtol=1e-5, atol=1e-6)


def test_eval_reproduces_the_2d_runs_test_metrics(env):
    code, evaluated, out = _cli("eval", str(env["spec"]), "--model", "models:/cfd@champion", "--json")
    assert code == 0, out[-2000:]
    for key in ("test/rollout_nrmse", "test/nrmse", "test/corr_time", "test/rollout_nrmse.Vy"):
        assert evaluated["metrics"][key] == pytest.approx(env["run"]["metrics"][key], rel=1e-5), key


def test_predict_writes_a_2d_file_that_reads_back(env, tmp_path):
    out = tmp_path / "pred.h5"
    code, done, text = _cli(
        "predict",
        "models:/cfd@champion",
        "--input",
        str(env["data"]),
        "--steps",
        "4",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, text[-2000:]
    assert done["frames"] == 5 and done["layout"].startswith("density, Vx, Vy, pressure (N, T, X, Y)")
    with h5py.File(out) as f, h5py.File(env["data"]) as g:
        assert f["Vy"].shape == (N, 5, X, Y)
        np.testing.assert_array_equal(f["pressure"][:, 0], g["pressure"][:, 0])  # the given frame, as given
    code, info, _ = _cli("data", str(out), "--json")
    assert code == 0 and info["grid"] == [X, Y] and info["channels"] == list(CHANNELS) and info["frames"] == 5


def test_a_2d_sweep_prunes_a_trial_and_completes_the_other(env, tmp_path, monkeypatch):
    import optuna

    from ups.spec.load import load_spec
    from ups.sweep.driver import run_sweep

    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "two_lrs.yaml").write_text("train.lr: {type: categorical, choices: [1.0e-12, 1.0e-2]}\n")
    monkeypatch.setenv("UPS_SEARCH_SPACES", str(spaces))
    # a learning rate of 1e-12 leaves the model at persistence (it starts there), above the threshold
    threshold = 0.9999 * env["run"]["metrics"]["val/persistence_nrmse"]
    spec = tmp_path / "sw.yaml"
    spec.write_text(
        SPEC.format(name="sw2d", path=env["data"], n=N, model=FNO, tracking="none")
        + f"search_space: two_lrs\nsweep: {{trials: 2, sampler: grid, pruner: threshold, threshold: {threshold},"
        " metric: val/nrmse, warmup_epochs: 0}\n"
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = run_sweep(load_spec(spec, ["train.max_epochs=2"]), storage=storage)
    assert result.trials == {"complete": 1, "pruned": 1, "failed": 0}
    study = optuna.load_study(study_name="sw2d", storage=storage)
    states = {t.params["train.lr"]: t.state.name for t in study.trials}
    assert states == {1.0e-12: "PRUNED", 1.0e-2: "COMPLETE"}  # the grid: each point once


def test_a_per_sample_group_file_and_a_darcy_file_train(env, tmp_path):
    states = _waves(n=20, channels=2, seed=3)  # (N, T, C, X, Y)
    groups = tmp_path / "2D_diff-react_NA_NA.h5"
    with h5py.File(groups, "w") as f:
        for i in range(states.shape[0]):
            g = f.create_group(f"{i:04d}")
            g.create_dataset("data", data=np.moveaxis(states[i], 1, -1))  # (T, X, Y, C)
            g.create_dataset("grid/x", data=(np.arange(X) + 0.5) / X)
            g.create_dataset("grid/y", data=(np.arange(Y) + 0.5) / Y)
            g.create_dataset("grid/t", data=np.arange(T) * 0.5)
    spec = tmp_path / "groups.yaml"
    spec.write_text(SPEC.format(name="groups", path=groups, n=20, model=FNO, tracking="none"))
    code, run, out = _cli("run", str(spec), "--json", "--no-progress")
    assert code == 0, out[-3000:]
    m = run["metrics"]
    assert {"test/rollout_nrmse.u", "test/rollout_nrmse.v"} <= set(m)
    assert m["test/rollout_nrmse"] < m["test/persistence_rollout_nrmse"]

    from ups.data.darcy2d import generate_darcy2d

    made = generate_darcy2d(num_trajectories=48, num_points=16, solver_points=16, seed=0)
    darcy = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    with h5py.File(darcy, "w") as f:
        f.create_dataset("tensor", data=made.tensor)  # (N, 1, X, Y)
        f.create_dataset("nu", data=made.datasets["nu"])
        f.create_dataset("x-coordinate", data=made.x)
        f.create_dataset("y-coordinate", data=made.y)
    spec = tmp_path / "darcy.yaml"
    spec.write_text(
        "name: darcyfile\nstage: steady_prior\n"
        f"data: {{path: {darcy}, num_trajectories: 48, num_points: null, val_fraction: 0.2, test_fraction: 0.2}}\n"
        "model: {kind: fno, width: 12, num_layers: 2, num_modes: 4, cond_dim: 8, projection_dim: 16, residual: false}\n"
        "train: {max_epochs: 10, batches_per_epoch: 8, batch_size: 8, lr: 1.0e-2, checkpoint_metric: val/nrmse}\n"
        "registry: {select_metric: val/nrmse, gates: {champion_metric: test/nrmse}}\nsweep: {metric: val/nrmse}\n"
        "tracking: none\n"
    )
    code, run, out = _cli("run", str(spec), "--json", "--no-progress")
    assert code == 0, out[-3000:]
    m = run["metrics"]
    assert m["test/nrmse"] < m["test/baseline_mean_nrmse"], m
    # the family's own solve on coarser grids, each with its cost, and the verdict at equal cost
    assert (
        m["test/baseline_coarse_x2_nrmse"]
        < m["test/baseline_coarse_x4_nrmse"]
        < m["test/baseline_coarse_x8_nrmse"]
    )
    assert all(m[f"test/baseline_coarse_x{f}_ms"] > 0 for f in (2, 4, 8))
    from ups.run.report import coarse_lines

    lines = coarse_lines(m, {"model/sample_ms": 1e9}, "test")  # a model slower than every solve: the best one
    assert "2x" in lines[0] and "at equal cost" in lines[1] and "the 2x solve" in lines[1]
    assert "no coarse solve is as cheap" in coarse_lines(m, {"model/sample_ms": 1e-9}, "test")[1]


def test_the_shipped_2d_specs_take_a_file_with_its_own_channels_grid_and_dt(env, tmp_path):
    """`specs/ns2d.yaml data.path=FILE` and `specs/darcy2d.yaml data.path=FILE`: the file's channels, grid and Δt
    replace the generated data's; the spec's evaluation window still applies."""
    from conftest import ROOT

    small = ["tracking=none", f"model={FNO}", "train.max_epochs=1", "train.batches_per_epoch=3"]
    code, run, out = _cli(
        "run", str(ROOT / "specs" / "ns2d.yaml"), f"data.path={env['data']}", f"data.num_trajectories={N}",
        "eval.horizon=5", "eval.report_horizons=[1,5]", *small, "--json", "--no-progress",
    )  # fmt: skip
    assert code == 0, out[-3000:]
    m = run["metrics"]
    assert {f"test/rollout_nrmse.{c}" for c in CHANNELS} <= set(m) and "test/solver_rollout_nrmse" not in m
    from ups.data.source import load_source
    from ups.spec.load import load_spec

    spec = load_spec(
        ROOT / "specs" / "ns2d.yaml", [f"data.path={env['data']}", f"data.num_trajectories={N}"]
    ).spec
    source = load_source(spec.data, env["home"])
    assert (source.channels, source.grid, source.dt, source.family) == (
        CHANNELS,
        (X, Y),
        pytest.approx(0.1),
        None,
    )
    assert source.states.shape == (
        N,
        T,
        4,
        X,
        Y,
    )  # every frame of the file: the block's 21 frames yield to it

    from ups.data.darcy2d import generate_darcy2d

    made = generate_darcy2d(num_trajectories=40, num_points=16, solver_points=16, seed=1)
    darcy = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    with h5py.File(darcy, "w") as f:
        f.create_dataset("tensor", data=made.tensor)
        f.create_dataset("nu", data=made.datasets["nu"])
        f.create_dataset("x-coordinate", data=made.x)
        f.create_dataset("y-coordinate", data=made.y)
    code, run, out = _cli(
        "run", str(ROOT / "specs" / "darcy2d.yaml"), f"data.path={darcy}", "data.num_trajectories=40",
        "model.num_modes=4", "tracking=none", "train.max_epochs=1", "train.batches_per_epoch=3", "--json",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, out[-3000:]
    assert (
        run["metrics"]["test/baseline_coarse_x2_nrmse"] > 0
    )  # the file is darcy2d's problem: its coarse solves


def test_a_2d_export_loads_strictly_and_predicts_like_the_registered_model(env, tmp_path):
    import torch

    from ups.loading import from_export, from_registered

    out = tmp_path / "exported"
    code, done, text = _cli("export", "models:/cfd@champion", "--out", str(out), "--json")
    assert code == 0, text[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert (
        config["io"]["spatial_dims"] == 2
        and config["io"]["grid"] == [X, Y]
        and config["io"]["in_channels"] == 4
    )
    x = torch.from_numpy(_waves(n=2, seed=11)[:, 0])
    p, dt = torch.zeros(2, len(config["layout"])), torch.full((2,), 0.1)
    with torch.no_grad():
        expected = from_registered("models:/cfd@champion").predictor()(x, p, dt)
        assert torch.equal(from_export(out).predictor()(x, p, dt), expected)
