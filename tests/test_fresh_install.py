"""Fresh environments, as a user gets them (slow: each builds a virtual environment).

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
    """A new venv with torch (pinned, as the Makefile installs it), ups from this checkout and the example plugin
    (a regular install, so its entry points are registered)."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    _sh([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _sh([*pip, "torch==2.13.0"])
    constraints = venv / "constraints.txt"
    constraints.write_text("torch==2.13.0\n")
    _sh([*pip, "-c", str(constraints), "-e", str(ROOT)])
    _sh([*pip, "-c", str(constraints), str(PLUGIN)])
    return venv


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
