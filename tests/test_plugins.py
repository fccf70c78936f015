"""Plugins written from docs/extending.md alone (examples/plugin) work against the catalogue: named by import path
with the plugin only on the Python path, a model, a data format and a metric train, checkpoint on the plugin
metric, promote behind a gate on it, and evaluate; data without a family says it has no solver baseline.
(Installed through entry points, in a fresh venv, with a sweep and a fresh-process load: tests/test_fresh_install.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from ups import catalog
from ups.cli import main

PLUGIN = ROOT / "examples" / "plugin"


def write_plugin_data(path: Path, *, n: int = 48, points: int = 64, frames: int = 21) -> Path:
    """Burgers trajectories in the plugin's .npz layout (no family in the file), with a per-trajectory `alpha`."""
    sys.path.insert(0, str(PLUGIN))
    from ups_example_plugin.data import write

    from ups.data.burgers import generate_burgers

    data = generate_burgers(nu=0.01, num_trajectories=n, num_points=points, num_frames=frames, dt=0.05,
                            solver_points=128, seed=1)  # fmt: skip
    write(str(path), data.tensor, data.x, 0.05, alpha=np.linspace(0.5, 1.5, n))
    return path


SPEC = """\
name: {name}
data: {{path: {path}, format: {fmt}, num_trajectories: 48, options: {{scale: 1.0}}}}
model: {{kind: {model}, width: 16}}
train: {{max_epochs: 4, batch_size: 16, lr: 3.0e-3, unroll_steps: 2, batches_per_epoch: 8, deterministic: true,
        checkpoint_metric: val/max_abs_error}}
eval: {{context_frames: 2, horizon: 8, report_horizons: [1], metrics: [{metric}]}}
search_space: tiny_conv
sweep: {{trials: 2, pruner: median, startup_trials: 1, warmup_epochs: 1, sampler: random, metric: val/max_abs_error}}
registry: {{select_metric: val/max_abs_error, gates: {{beat_champion: false, thresholds: {{test/max_abs_error: {bound}}}}}}}
tracking: {tracking}
"""


def plugin_spec(folder: Path, data: Path, *, names: str, name: str = "plug", bound: float = 100.0,
                tracking: str = "local") -> Path:  # fmt: skip
    """`names`: `paths` (`"pkg.module:attr"`) or `entry_points` (the names the plugin's pyproject gives)."""
    if names == "paths":
        model, fmt, metric = (
            '"ups_example_plugin.model:build"',
            '"ups_example_plugin.data:read"',
            '"ups_example_plugin.metrics:max_abs_error"',
        )
    else:
        model, fmt, metric = "tiny_conv", "npz_trajectories", "max_abs_error"
    spec = folder / f"{name}.yaml"
    spec.write_text(SPEC.format(name=name, path=data, fmt=fmt, model=model, metric=metric, bound=bound,
                                tracking=tracking))  # fmt: skip
    return spec


@pytest.fixture
def on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.setenv("UPS_SEARCH_SPACES", str(PLUGIN / "search_spaces"))
    yield
    for mod in [m for m in sys.modules if m.startswith("ups_example_plugin")]:
        del sys.modules[mod]


def test_a_plugin_named_by_path_trains_checkpoints_promotes_and_evaluates(
    workspace, tmp_path, on_path, capsys
):
    data = write_plugin_data(tmp_path / "traj.npz")
    spec = plugin_spec(tmp_path, data, names="paths")
    assert main(["validate", str(spec)]) == 0
    assert main(["run", str(spec), "--json", "--no-progress"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    m = result["metrics"]
    for split in ("val", "test"):  # the plugin metric, next to its persistence value; no solver for this data
        assert 0 < m[f"{split}/max_abs_error"] < m[f"{split}/persistence_max_abs_error"]
        assert f"{split}/solver_rollout_nrmse" not in m
        assert m[f"{split}/rollout_nrmse"] < m[f"{split}/persistence_rollout_nrmse"]
    assert "test: no solver for this data" in out
    ckpt = json.loads((workspace / "runs" / result["run_id"] / "run.json").read_text())["best_checkpoint"]
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    monitored = [v for k, v in state["callbacks"].items() if "monitor" in k]
    assert "val/max_abs_error" in str(monitored)  # the plugin metric chose the checkpoint

    # a gate on the plugin metric: a bound it meets promotes, one it cannot meet rejects (and moves nothing)
    assert main(["promote", str(spec), "--run", result["run_id"], "--json"]) == 0
    gates = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["gates"]
    assert gates["threshold:test/max_abs_error"]["passed"] is True
    strict = plugin_spec(tmp_path, data, names="paths", bound=1e-9)
    assert (
        main(["promote", str(strict), "--run", result["run_id"], "--json", "registry.model_name=plug"]) == 3
    )
    assert "threshold:test/max_abs_error" in capsys.readouterr().out

    assert main(["eval", str(spec), "--model", "models:/plug@champion", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metrics"]
    assert evaluated["test/max_abs_error"] == pytest.approx(m["test/max_abs_error"], rel=1e-5)


def test_unknown_and_broken_plugin_names_are_one_line(tmp_path, on_path, capsys):
    data = write_plugin_data(tmp_path / "traj.npz", n=8)
    spec = plugin_spec(tmp_path, data, names="paths", tracking="none")
    cases = [
        ("model.kind=fnoo", "model.kind: unknown model; got 'fnoo'. Did you mean 'fno'?"),
        ('model.kind="no_such_pkg.m:build"', "cannot import no_such_pkg.m"),
        ("data.format=pdebenchh", "data.format: unknown format; got 'pdebenchh'. Did you mean 'pdebench'?"),
        ("eval.metrics=[nrmsee]", "eval.metrics: unknown metric; got 'nrmsee'"),
        ("eval.metrics=[nrmse]", "is a built-in metric"),
        ("model.widht=3", "model.widht: unknown key"),
    ]
    for override, message in cases:
        assert main(["validate", str(spec), override]) == 2, override
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (override, err)


def test_catalog_lists_rows_and_where_they_come_from(capsys):
    assert main(["catalog", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert set(rows) == set(catalog.TABLES)
    assert {"latent_operator", "fno", "unet"} <= {r["name"] for r in rows["models"]}
    assert all(r["source"] == "built-in" for r in rows["stages"])
    assert main(["catalog", "models"]) == 0
    assert "latent_operator" in capsys.readouterr().out
