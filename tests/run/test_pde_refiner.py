"""The `pde_refiner` stage (PDE-Refiner as published: ONE network for k = 0..K) at tiny sizes: in a 1D pipeline with
a distilled student, and in 2D with a plugin model (written from docs/extending.md alone), promoted and loaded with
plain MLflow in a fresh process. Slow (about 2 minutes; `make test`'s budget is spent): .ci/run runs them, and
tests/models/test_refiner.py checks the network's calls and loss in `make test`."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REFUSE_PICKLES, ROOT, isolate, mlflow_client, subprocess_env, write_waves_2d

from ups.cli import main

PLUGIN = ROOT / "examples" / "plugin"

PIPELINE = """\
name: prpipe
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
  generator: {solver_points: 64, burn_in: 10.0}
model: operator_tiny
train: {max_epochs: 2, batch_size: 16, lr: 3.0e-3, unroll_steps: 1, batches_per_epoch: 4, deterministic: true}
eval: {context_frames: 1, horizon: 20, report_horizons: [1, 10]}
stages:
  - {kind: pde_refiner, name: refiner, num_steps: 3}
  - {kind: consistency_distill, name: student}
tracking: local
"""

X, Y, T, N = 16, 12, 8, 20
SPEC_2D = """\
name: pr2d
seed: 0
stage: {{kind: pde_refiner, num_steps: 2}}
data: {{path: {path}, num_trajectories: {n}, num_points: null, dt: null, num_frames: null, val_fraction: 0.2,
        test_fraction: 0.25}}
model: {{kind: "ups_example_plugin.model:build", width: 8, layers: 2, kernel: 3}}
train: {{max_epochs: 2, batches_per_epoch: 4, batch_size: 8, lr: 3.0e-3, unroll_steps: 1, deterministic: true}}
eval: {{context_frames: 1, horizon: 4, report_horizons: [1, 4]}}
registry: {{gates: {{beat_champion: false, beat_persistence: false}}}}
tracking: local
"""


def _cli(*argv: str) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    lines = [x for x in out.getvalue().splitlines() if x.startswith("{")]
    return code, (json.loads(lines[-1]) if lines else None), out.getvalue() + err.getvalue()


def _network_calls(predictor, net, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> int:
    """Evaluations of `net` in one prediction, counted at its first layer (denoising calls its `increment`)."""
    calls = []
    handle = next(net.children()).register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        predictor(u, params, dt)
    handle.remove()
    return len(calls)


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pde_refiner")
    home = folder / "home"
    spec = folder / "prpipe.yaml"
    spec.write_text(PIPELINE)
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, home, folder)
        code, summary, out = _cli("run", str(spec), "--json", "--no-progress")
        assert code == 0, out[-3000:]
        yield home, summary


def test_one_network_predicts_then_refines_and_a_student_distils_it_to_one_evaluation(pipeline):
    home, summary = pipeline
    refiner, student = (s["metrics"] for s in summary["stages"])
    client = mlflow_client(home)
    ids = [s["run_id"] for s in summary["stages"]]
    assert [client.get_run(i).data.tags["ups.stage"] for i in ids] == ["pde_refiner", "consistency_distill"]
    assert client.get_run(ids[0]).data.tags.get("ups.upstream") is None  # trained from scratch
    for split in ("val", "test"):  # next to its own k = 0 prediction and to persistence
        for key in ("corr_time", "operator_corr_time", "gain_corr_time", "persistence_rollout_nrmse"):
            assert np.isfinite(refiner[f"{split}/{key}"]), key
    # its k = 0 reference is the network it trains: scored again every epoch, never cached
    history = [m.value for m in client.get_metric_history(ids[0], "val/operator_rollout_nrmse")]
    assert len(history) >= 2 and history[0] != history[1]  # epochs 0 and 1 (then the chosen checkpoint)
    assert student["test/teacher_rollout_nrmse"] == pytest.approx(refiner["test/rollout_nrmse"], rel=1e-6)
    assert student["test/operator_rollout_nrmse"] == pytest.approx(
        refiner["test/operator_rollout_nrmse"], rel=1e-6
    )

    from ups.data.params import param_vector
    from ups.loading import from_checkpoint, run_checkpoint

    teacher = from_checkpoint(run_checkpoint(ids[0], home=home)).predictor()
    distilled = from_checkpoint(run_checkpoint(ids[1], home=home)).predictor()
    u = torch.randn(2, 1, 64)
    p = torch.tensor(
        param_vector(from_checkpoint(run_checkpoint(ids[0], home=home)).layout, "ks1d", {"L": 21.0})
    )
    p, dt = p.expand(2, -1), torch.full((2,), 0.2)
    assert _network_calls(teacher, teacher.net, u, p, dt) == 4  # k = 0, then K = 3 denoising steps
    assert _network_calls(distilled, distilled.refiner.net, u, p, dt) == 1  # the student: one evaluation
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        refined = teacher(u, p, dt)
        zero = teacher(u, p, dt, steps=())
    assert not torch.equal(refined, zero)  # the refinement changes the k = 0 prediction
    torch.testing.assert_close(
        refined, zero, rtol=0, atol=0.2 * float(zero.abs().max())
    )  # ... by noise-sized steps


LOAD = (
    REFUSE_PICKLES
    + """
import sys
import numpy as np
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/pr2d@champion")
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), params={"steps": 3}))
"""
)


def test_a_2d_pde_refiner_with_a_plugin_model_promotes_and_loads_in_a_fresh_process(tmp_path, monkeypatch):
    home = tmp_path / "home"
    isolate(monkeypatch, home, tmp_path)
    monkeypatch.syspath_prepend(str(PLUGIN))
    data = write_waves_2d(tmp_path / "waves_2d.h5", n=N, frames=T, grid=(X, Y))
    spec = tmp_path / "pr2d.yaml"
    spec.write_text(SPEC_2D.format(path=tmp_path / "waves_2d.h5", n=N))
    code, run, out = _cli("run", str(spec), "--json", "--no-progress")
    assert code == 0, out[-3000:]
    assert np.isfinite(run["metrics"]["test/rollout_nrmse"]) and "test/gain_corr_time" in run["metrics"]
    code, promoted, out = _cli("promote", str(spec), "--run", run["run_id"], "--json")
    assert code == 0 and promoted["decision"] == "promoted", out[-3000:]

    states = data[:3, 0][:, None]  # (B, 1, X, Y)
    np.save(tmp_path / "states.npy", states)
    done = subprocess.run(
        [sys.executable, "-c", LOAD, f"sqlite:///{home / 'mlflow.db'}", str(tmp_path / "states.npy"),
         str(tmp_path / "out.npy")],
        env=subprocess_env(home, PYTHONPATH=str(PLUGIN)), capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    served = np.load(tmp_path / "out.npy")
    assert served.shape == (3, 3, 1, X, Y)

    from ups.loading import load

    model = load("models:/pr2d@champion", home=home).predictor()  # built before seeding: init draws numbers
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ours = model.rollout(torch.from_numpy(states), torch.zeros(3, 0), torch.full((3,), 0.1), 3)
    np.testing.assert_allclose(served, ours.numpy(), rtol=1e-5, atol=1e-6)
    assert client_stage(home, promoted["version"]) == "pde_refiner"


def client_stage(home, version) -> str:
    return mlflow_client(home).get_model_version("pr2d", version).tags["ups.stage"]
