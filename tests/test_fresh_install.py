"""Fresh environments, as a user gets them (slow: each builds a virtual environment).

- ups built as a wheel and installed from it (not editable) into a fresh venv: from a folder outside the checkout,
  a shipped spec runs by name (its blocks are the wheel's package data), `ups-exp catalog` and `ups-exp runs` work.
- The example plugin (examples/plugin) installed with pip into a fresh venv beside ups: its model, format and
  metric work through their entry-point names: run, a 2-trial sweep over the model's own key, promote, the
  registered model loaded with plain `mlflow.pyfunc.load_model` in a fresh process (no pickles), eval. The same
  flow through `"pkg.module:attr"` names with the plugin only on PYTHONPATH; and where the plugin is missing,
  loading the registered model says in one line what to install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REFUSE_PICKLES, ROOT, subprocess_env
from test_plugins import PLUGIN, plugin_spec, write_plugin_data

pytestmark = pytest.mark.slow


def _sh(cmd: list[str], *, env=None, cwd=None, timeout=1200) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{cmd}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """A new venv with torch (pinned, as the Makefile installs it), ups from a wheel built from this checkout (not
    editable: the checkout's folders are out of its reach) and the example plugin (a regular install, so its entry
    points are registered)."""
    where = tmp_path_factory.mktemp("fresh")
    venv, dist = where / "venv", where / "dist"
    _sh([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet"]
    _sh([*pip, "torch==2.13.0"])
    constraints = venv / "constraints.txt"
    constraints.write_text("torch==2.13.0\n")
    _sh([python, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT)])
    (wheel,) = dist.glob("ups-*.whl")
    _sh([*pip, "-c", str(constraints), str(wheel)])
    _sh([*pip, "-c", str(constraints), str(PLUGIN)])
    return venv


def test_the_wheel_runs_a_shipped_spec_by_name_from_any_folder(fresh_venv, tmp_path):
    home = tmp_path / "home"
    env = subprocess_env(home, OMP_NUM_THREADS="1")
    env.pop("UPS_CONFIGS")  # the wheel's own blocks
    env["PATH"] = f"{fresh_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    ups = str(fresh_venv / "bin" / "ups-exp")
    where = _sh(
        [str(fresh_venv / "bin" / "python"), "-c", "import ups; print(ups.__file__)"], env=env, cwd=tmp_path
    )
    assert str(fresh_venv) in where.stdout and str(ROOT) not in where.stdout  # installed, not the checkout
    shown = _sh([ups, "show", "smoke"], env=env, cwd=tmp_path).stdout
    assert "ups/shipped/specs/smoke.yaml" in shown and "ups/shipped/configs/model/operator_tiny.yaml" in shown
    run = json.loads(
        _sh([ups, "run", "smoke", "--json", "--no-progress"], env=env, cwd=tmp_path).stdout.splitlines()[-1]
    )
    m = run["metrics"]
    assert m["test/rollout_nrmse"] < m["test/persistence_rollout_nrmse"]
    catalog = json.loads(_sh([ups, "catalog", "--json"], env=env, cwd=tmp_path).stdout)
    assert {"latent_operator", "fno", "unet", "tiny_conv"} <= {r["name"] for r in catalog["models"]}
    rows = json.loads(_sh([ups, "runs", "smoke", "--json"], env=env, cwd=tmp_path).stdout)
    assert [r["run_id"] for r in rows] == [run["run_id"]] and rows[0]["status"] == "FINISHED"
    assert not (tmp_path / "experiments").exists()  # everything went to $UPS_HOME


def _flow(tmp_path: Path, python: str, spec: Path, env: dict, *, expected_dist: str | None) -> None:
    """run → sweep (2 trials over model.width) → promote → pyfunc in a fresh process → eval."""

    def ups(*args: str) -> dict:
        done = _sh([python, "-m", "ups.cli", *args, "--json"], env=env, cwd=tmp_path)
        return json.loads(done.stdout.strip().splitlines()[-1])

    run = ups("run", str(spec), "--no-progress")
    assert run["metrics"]["test/max_abs_error"] < run["metrics"]["test/persistence_max_abs_error"]
    sweep = ups("sweep", str(spec))
    assert sweep["trials"]["complete"] + sweep["trials"]["pruned"] == 2 and sweep["trials"]["failed"] == 0
    assert "model.width" in sweep["best"]["params"]
    promoted = ups("promote", str(spec))
    assert promoted["decision"] == "promoted", promoted
    load = REFUSE_PICKLES + (
        "import json, sys, numpy as np, mlflow\n"
        f"mlflow.set_tracking_uri('sqlite:///{env['UPS_HOME']}/mlflow.db')\n"
        "m = mlflow.pyfunc.load_model('models:/plug@champion')\n"
        "print(json.dumps(list(m.predict(np.zeros((2, 64), dtype=np.float32), params={'steps': 3}).shape)))\n"
    )
    done = _sh([python, "-c", load], env=env, cwd=tmp_path)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [2, 3, 64]
    evaluated = ups("eval", str(spec), "--model", "models:/plug@champion")
    assert evaluated["metrics"]["test/max_abs_error"] > 0
    if expected_dist:  # the registered model requires the plugin's package, at its version
        texts = [p.read_text() for p in (Path(env["UPS_HOME"]) / "mlartifacts").rglob("requirements.txt")]
        assert any(expected_dist in t for t in texts), texts


def test_an_installed_plugin_works_through_its_entry_point_names(fresh_venv, tmp_path):
    data = write_plugin_data(tmp_path / "traj.npz")
    spec = plugin_spec(tmp_path, data, names="entry_points")
    home = tmp_path / "home"
    env = subprocess_env(home, UPS_SEARCH_SPACES=str(PLUGIN / "search_spaces"), OMP_NUM_THREADS="1")
    env["PATH"] = f"{fresh_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    listed = _sh([str(fresh_venv / "bin" / "ups-exp"), "catalog", "--json"], env=env, cwd=tmp_path)
    rows = json.loads(listed.stdout)
    sources = {r["name"]: r["source"] for t in rows.values() for r in t}
    assert (
        "ups-example-plugin==0.1.0" in sources["tiny_conv"]
        and "ups-example-plugin" in sources["max_abs_error"]
    )
    _flow(tmp_path, str(fresh_venv / "bin" / "python"), spec, env, expected_dist="ups-example-plugin==0.1.0")

    # where the plugin is not installed, loading the registered model says what to install, in one line
    load = (
        "import mlflow\n"
        f"mlflow.set_tracking_uri('sqlite:///{home}/mlflow.db')\n"
        "mlflow.pyfunc.load_model('models:/plug@champion')\n"
    )
    missing = subprocess.run([sys.executable, "-c", load], env=subprocess_env(home), cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert missing.returncode != 0
    assert "pip install 'ups-example-plugin==0.1.0'" in missing.stderr, missing.stderr[-2000:]


def test_a_plugin_on_pythonpath_works_through_import_paths(tmp_path):
    data = write_plugin_data(tmp_path / "traj.npz")
    spec = plugin_spec(tmp_path, data, names="paths")
    home = tmp_path / "home"
    env = subprocess_env(
        home, UPS_SEARCH_SPACES=str(PLUGIN / "search_spaces"), OMP_NUM_THREADS="1", PYTHONPATH=str(PLUGIN)
    )
    _flow(tmp_path, sys.executable, spec, env, expected_dist=None)
