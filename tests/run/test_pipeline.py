"""A tiny Kuramoto–Sivashinsky operator → refiner → student pipeline, run once for the module: tracking identity,
skip and restart, the chained predictor through promote, eval and a fresh process, and a missing checkpoint."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REFUSE_PICKLES, isolate, mlflow_client, mlflow_runs, write_ks_pipeline

from ups.cli import main


def _cli(*argv: str) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    lines = [x for x in out.getvalue().splitlines() if x.startswith("{")]
    return code, (json.loads(lines[-1]) if lines else None), err.getvalue()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    home = folder / "home"
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, home, folder)
        spec = write_ks_pipeline(folder)
        code, summary, err = _cli("run", str(spec), "--json", "--no-progress")
        assert code == 0, err[-3000:]
        yield spec, home, summary


def test_one_parent_a_child_per_stage_and_each_stage_builds_on_the_previous_run(pipeline):
    spec, home, summary = pipeline
    stages = summary["stages"]
    assert [s["stage"] for s in stages] == ["operator", "refiner", "student"]
    ids = [s["run_id"] for s in stages]
    assert len(set(ids)) == 3 and summary["metrics"] == stages[-1]["metrics"]
    runs = {r.info.run_id: r for r in mlflow_runs(home, "kspipe")}
    parent = runs[summary["run_id"]]
    assert parent.data.tags["ups.role"] == "pipeline" and parent.info.status == "FINISHED"
    assert all(runs[i].data.tags["mlflow.parentRunId"] == parent.info.run_id for i in ids)
    assert runs[ids[1]].data.tags["ups.upstream"] == ids[0]  # the recorded run id, never a guessed path
    assert runs[ids[2]].data.tags["ups.upstream"] == ids[1]
    assert [runs[i].data.tags["ups.stage"] for i in ids] == [
        "operator",
        "diffusion_residual",
        "consistency_distill",
    ]
    groups = {p.parent.name: p.read_bytes() for p in (home / "wandb").glob("offline-run-*/*.wandb")}
    group = b"kspipe-"
    assert len(groups) == 3 and all(group in blob for blob in groups.values())  # one W&B group
    student = stages[-1]["metrics"]
    for key in (
        "test/corr_time",
        "test/operator_corr_time",
        "test/teacher_corr_time",
        "test/gain_kept_corr_time",
    ):
        assert key in student
    # the speed-up is measured (wall time, so it depends on the machine's load); what it comes from is counted
    assert student["test/speedup"] > 0
    assert _refiner_calls_per_step(home, ids[1]) == 3  # the teacher: K = 3 denoising steps
    assert _refiner_calls_per_step(home, ids[2]) == 1  # the student: one evaluation
    refiner = stages[1]["metrics"]
    assert refiner["test/operator_rollout_nrmse"] == pytest.approx(
        stages[0]["metrics"]["test/rollout_nrmse"], rel=1e-6
    )


def _refiner_calls_per_step(home, run_id: str) -> int:
    from ups.loading import from_checkpoint, run_checkpoint

    loaded = from_checkpoint(run_checkpoint(run_id, home=home))
    predictor = loaded.predictor()
    calls = []
    predictor.refiner.register_forward_hook(lambda *_: calls.append(1))
    p = torch.zeros(2, len(loaded.layout))
    with torch.no_grad():
        predictor(torch.randn(2, 1, 64), p, torch.full((2,), 0.2))
    return len(calls)


def test_rerun_skips_finished_stages_and_from_stage_trains_again(pipeline):
    spec, home, summary = pipeline
    ids = [s["run_id"] for s in summary["stages"]]
    code, again, err = _cli("run", str(spec), "--json", "--no-progress")
    assert code == 0, err[-2000:]
    assert [s["run_id"] for s in again["stages"]] == ids and again["run_id"] == summary["run_id"]
    code, restarted, err = _cli("run", str(spec), "--json", "--no-progress", "--from-stage", "student")
    assert code == 0, err[-2000:]
    new = [s["run_id"] for s in restarted["stages"]]
    assert new[:2] == ids[:2] and new[2] != ids[2]
    code, _, err = _cli("run", str(spec), "--from-stage", "studnet")
    assert code == 2 and "--from-stage: no such stage; got 'studnet'. Did you mean 'student'?" in err


def test_a_stage_warm_starts_from_its_own_source(pipeline):
    """`stages.NAME.init.from` starts that stage from a trained model of its kind: it validates like its source
    before its first update, and the run says where it started from."""
    spec, home, summary = pipeline
    source = summary["stages"][2]
    code, again, err = _cli(
        "run", str(spec), "--json", "--no-progress", "--from-stage", "student",
        f"stages.student.init.from={source['run_id']}",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    student = again["stages"][2]
    assert student["run_id"] != source["run_id"]
    start = {k.removeprefix("init/"): v for k, v in student["metrics"].items() if k.startswith("init/val/")}
    assert start and "val/corr_time" in start
    for name, value in start.items():
        if name.endswith(("speedup", "_ms")):  # wall-time measurements, not results
            continue
        assert value == pytest.approx(source["metrics"][name], rel=1e-5, abs=1e-7, nan_ok=True), name
    run = mlflow_client(home).get_run(student["run_id"])
    assert (
        run.data.tags["ups.init_from"] == source["run_id"]
        and run.data.tags["ups.init_run"] == source["run_id"]
    )


LOAD = (
    REFUSE_PICKLES
    + """
import json, sys
import numpy as np
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/kspipe@champion")
start = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict(start, params={"steps": 5, "L": 21.0}))
"""
)


@pytest.mark.slow  # a fresh process: .ci/run runs it
def test_the_chained_student_promotes_loads_without_pickles_and_evaluates_like_training(pipeline, tmp_path):
    spec, home, _ = pipeline
    code, promoted, err = _cli("promote", str(spec), "--json")
    assert code == 0, err[-2000:]
    assert promoted["decision"] == "promoted"
    version = mlflow_client(home).get_model_version("kspipe", promoted["version"])
    assert version.tags["ups.stage"] == "consistency_distill"

    from ups.data.params import param_vector
    from ups.loading import from_checkpoint, run_checkpoint

    loaded = from_checkpoint(run_checkpoint(version.tags["ups.run_id"], home=home))
    start = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    np.save(tmp_path / "start.npy", start)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "UPS_"))}
    proc = subprocess.run(
        [sys.executable, "-c", LOAD, f"sqlite:///{home / 'mlflow.db'}", str(tmp_path / "start.npy"), str(tmp_path / "out.npy")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**env, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = np.load(tmp_path / "out.npy")  # (3, 5, 64)
    model = loaded.predictor()
    p = torch.tensor(param_vector(loaded.layout, "ks1d", {"L": 21.0})).expand(3, -1)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mine = model.rollout(torch.from_numpy(start).unsqueeze(1), p, torch.full((3,), 0.2), 5)[:, :, 0]
    assert served.shape == (3, 5, 64)
    np.testing.assert_allclose(served, mine.numpy(), rtol=1e-5, atol=1e-6)

    code, evaluated, err = _cli("eval", str(spec), "--model", "models:/kspipe@champion", "--json")
    assert code == 0, err[-2000:]
    trained = mlflow_client(home).get_run(version.tags["ups.run_id"]).data.metrics
    for name in ("test/corr_time", "test/rollout_nrmse", "test/nrmse_band_high"):
        assert evaluated["metrics"][name] == pytest.approx(trained[name], rel=1e-5), name


def test_a_stage_whose_upstream_checkpoint_is_gone_is_exit_2_naming_stage_and_run(pipeline):
    spec, home, summary = pipeline
    refiner = summary["stages"][1]["run_id"]
    shutil.rmtree(home / "runs" / refiner / "checkpoints")
    code, _, err = _cli("run", str(spec), "--json", "--no-progress")
    assert code == 2
    assert f"stage 'refiner' finished as run {refiner}, but its checkpoint is gone" in err
    last = err.strip().splitlines()[-1]  # the error is one line (after the log of the skipped operator)
    assert (
        last.startswith(f"{spec}: stages: stage 'refiner' finished as run") and "--from-stage refiner" in last
    )
