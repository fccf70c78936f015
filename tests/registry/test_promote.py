"""Promotion: gates, aliases, dry runs, and a registered model that loads without unpickling anything."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REFUSE_PICKLES, ROOT, sweep_spec

from ups.cli import main
from ups.run.single import run_spec
from ups.spec.load import load_spec
from ups.sweep.driver import run_sweep


@pytest.fixture
def champion(workspace, tmp_path):
    """A tiny sweep, then `promote`: returns (spec path, model name)."""
    spec = sweep_spec(tmp_path, name="reg", tracking="local", trials=2, epochs=3, pruner="none")
    run_sweep(load_spec(spec))
    return spec


def _client(workspace):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_promote_sets_champion_and_rejects_a_worse_run(workspace, champion, capsys):
    assert main(["promote", str(champion), "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["decision"] == "promoted" and summary["version"] == "1"
    assert set(summary["gates"]) == {"beat_persistence", "stable_rollout", "beat_champion"}
    client = _client(workspace)
    assert str(client.get_model_version_by_alias("reg", "champion").version) == "1"
    card = client.get_model_version("reg", "1").description
    assert "test/rollout_nrmse" in card and "persistence" in card
    # the promoted model is also a W&B artifact (offline) with the same alias
    promote_runs = [
        p for p in (workspace / "wandb").glob("offline-run-*/*.wandb") if b"promote-reg" in p.read_bytes()
    ]
    assert any(b"champion" in p.read_bytes() and b"weights.npz" in p.read_bytes() for p in promote_runs)
    tags = client.get_model_version("reg", "1").tags
    assert tags["ups.decision"] == "promoted" and tags["ups.study"] == "reg" and tags["ups.data_fingerprint"]

    # a clearly worse run (barely trained) of the same spec and data
    worse = run_spec(load_spec(champion, ["train.lr=1e-7", "train.max_epochs=1"]), progress_bar=False)
    assert main(["promote", str(champion), "--run", worse.run_id, "--json"]) == 3
    out = capsys.readouterr().out
    rejected = next(
        line
        for line in out.splitlines()
        if line.startswith("rejected: reg v2 registered without alias; failed gates:")
    )
    assert "beat_champion" in rejected
    assert json.loads(out.strip().splitlines()[-1])["gates"]["beat_champion"]["passed"] is False
    assert str(client.get_model_version_by_alias("reg", "champion").version) == "1"
    assert "beat_champion" in client.get_model_version("reg", "2").tags["ups.failed_gates"].split(",")

    # --dry-run reports and changes nothing
    before = len(client.search_model_versions("name='reg'"))
    assert main(["promote", str(champion), "--run", worse.run_id, "--dry-run", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["decision"] == "dry-run"
    assert "would be rejected; nothing changed" in out
    assert len(client.search_model_versions("name='reg'")) == before
    assert str(client.get_model_version_by_alias("reg", "champion").version) == "1"


LOAD_IN_FRESH_PROCESS = (
    REFUSE_PICKLES
    + """
import json, sys
import numpy as np
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/reg@champion")
data = np.load(sys.argv[2])
one = model.predict(data["start"])
roll = model.predict(data["start"], params={"steps": data["target"].shape[1]})
def nrmse(p, t):
    return float((np.linalg.norm(p - t, axis=-1) / np.linalg.norm(t, axis=-1)).mean())
print(json.dumps({"one_shape": one.shape, "roll_shape": roll.shape,
                  "model": nrmse(roll, data["target"]), "persistence": nrmse(data["start"][:, None], data["target"])}))
"""
)


def test_registered_model_predicts_in_a_fresh_process_without_pickles(workspace, champion, tmp_path):
    assert main(["promote", str(champion)]) == 0
    from ups.data.datamodule import PDEDataModule
    from ups.data.source import load_sources

    spec = load_spec(champion).spec
    dm = PDEDataModule(spec, load_sources(spec.data, workspace))
    test = dm.states["test"][:, :, 0].numpy()  # (N, T, X)
    c, h = spec.eval.context_frames, spec.eval.horizon
    np.savez(tmp_path / "data.npz", start=test[:, c - 1], target=test[:, c : c + h])
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_IN_FRESH_PROCESS,
            f"sqlite:///{workspace / 'mlflow.db'}",
            str(tmp_path / "data.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**__import__("os").environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["one_shape"] == [test.shape[0], spec.data.num_points]
    assert result["roll_shape"] == [test.shape[0], h, spec.data.num_points]
    assert result["model"] < result["persistence"]


def test_eval_scores_a_registered_model(workspace, champion, capsys):
    assert main(["promote", str(champion)]) == 0
    capsys.readouterr()
    assert main(["eval", str(champion), "--model", "models:/reg@champion", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metrics"]
    assert metrics["test/rollout_nrmse"] < metrics["test/persistence_rollout_nrmse"]
    assert main(["eval", str(champion), "--model", "models:/nope@champion"]) == 2


def _doc_block(path, marker: str) -> str:
    import re

    blocks = [b for b in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S) if marker in b]
    assert len(blocks) == 1, f"{path.name}: {len(blocks)} python blocks hold {marker!r}"
    return blocks[0]


def test_export_writes_plain_weights_that_load_strictly_and_predict_the_same(
    workspace, champion, tmp_path, capsys
):
    import torch

    from ups.loading import from_export, from_registered
    from ups.models.operator import build
    from ups.models.wrap import Normalized
    from ups.plugin import ModelIO

    assert main(["promote", str(champion)]) == 0
    run_id = _client(workspace).get_model_version("reg", "1").tags["ups.run_id"]
    assert main(["export", "models:/reg@champion", "--out", str(tmp_path / "reg"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["kind"] == "operator"  # the stage
    assert main(["export", run_id, "--out", str(tmp_path / "run")]) == 0

    registered = from_registered("models:/reg@champion").predictor()
    x = torch.randn(4, 1, 64)
    for folder in (tmp_path / "reg", tmp_path / "run"):
        config = json.loads((folder / "config.json").read_text())
        weights = np.load(folder / "weights.npz", allow_pickle=False)  # plain arrays: no pickle to run
        # plain PyTorch: the model's settings and the data's shapes from config.json, the weights strictly
        settings = {k: v for k, v in config["lineage"][-1]["model"].items() if k != "kind"}
        io = ModelIO(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["io"].items()})
        plain = Normalized(build(settings, io), io.out_channels)
        plain.load_state_dict({k: torch.from_numpy(weights[k]) for k in weights.files}, strict=True)
        p, dt = torch.zeros(4, len(config["layout"])), torch.full((4,), 0.05)
        with torch.no_grad():
            expected = registered(x, p, dt)
            assert torch.equal(plain.eval()(x, p, dt), expected)
            assert torch.equal(from_export(folder).predictor()(x, p, dt), expected)
            # the recipe docs/registry.md gives, as written there
            recipe = _doc_block(ROOT / "docs" / "registry.md", "from ups import catalog")
            scope: dict = {}
            exec(recipe.replace('"DIR/', f'"{folder}/').replace('("DIR")', f'("{folder}")'), scope)
            assert torch.equal(scope["model"](x, p, dt), expected)
            assert scope["next_u"].shape == (8, 1, 64)
    capsys.readouterr()
    assert main(["export", "nosuchrun", "--out", str(tmp_path / "none")]) == 2
    assert "no such run; got 'nosuchrun'" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()  # nothing written for a bad source


def test_gates_must_name_test_metrics():
    from ups.spec import SpecError

    with pytest.raises(SpecError, match="gates are on `test/` metrics.*Gates judge the held-out test split"):
        load_spec(ROOT / "specs" / "burgers.yaml", ["registry.gates.thresholds={val/nrmse: 0.1}"])
    with pytest.raises(SpecError, match="registry.select_metric: not a metric.*test split never selects"):
        load_spec(ROOT / "specs" / "burgers.yaml", ["registry.select_metric=test/nrmse"])
