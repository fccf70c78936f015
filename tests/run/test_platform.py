"""Using the platform: blocks that layer, shipped specs by name, warm starts, `runs`, `predict` and `data`.

One tiny run (and its promotion to `models:/plat@champion`) serves every test of the module."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import ROOT, isolate, mlflow_runs, write_tiny_spec

from ups.cli import main


def _cli(*argv: str) -> tuple[int, dict | list | None, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    lines = [x for x in out.getvalue().splitlines() if x.startswith(("{", "["))]
    return code, (json.loads(lines[-1]) if lines else None), out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("platform")
    home = folder / "home"
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, home, folder)
        spec = write_tiny_spec(folder, name="plat", epochs=3)
        code, source, _, err = _cli("run", str(spec), "--json", "--no-progress")
        assert code == 0, err[-3000:]
        code, promoted, _, err = _cli(
            "promote", str(spec), "--run", source["run_id"], "--json", "registry.gates.beat_champion=false"
        )
        assert code == 0 and promoted["decision"] == "promoted", (promoted, err[-2000:])
        yield {"folder": folder, "home": home, "spec": spec, "source": source, "mp": mp}


@pytest.fixture
def env(trained, monkeypatch):
    isolate(monkeypatch, trained["home"], trained["folder"])
    return trained


# --- blocks and search spaces that layer; shipped specs by name ---------------------------------------------


def test_a_user_block_stands_in_front_and_every_shipped_block_still_resolves(tmp_path, monkeypatch):
    from ups.spec.load import load_spec
    from ups.spec.paths import ConfigPath

    mine = tmp_path / "mine" / "configs"
    (mine / "model").mkdir(parents=True)
    (mine / "model" / "my_fno.yaml").write_text("kind: fno\nwidth: 8\nnum_layers: 1\nnum_modes: 4\n")
    (mine / "model" / "operator_tiny.yaml").write_text(
        "kind: latent_operator\npatch_size: 8\nlatent_dim: 12\n"
    )
    spaces = tmp_path / "mine" / "spaces"
    spaces.mkdir()
    (spaces / "my_space.yaml").write_text("train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n")
    monkeypatch.setenv("UPS_CONFIGS", str(mine))
    monkeypatch.setenv("UPS_SEARCH_SPACES", str(spaces))
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ndata: {from: burgers1d, num_trajectories: 64}\nmodel: my_fno\nsearch_space: my_space\n"
    )

    resolved = load_spec(spec)
    assert resolved.spec.model.kind == "fno" and resolved.spec.model.width == 8
    assert resolved.block_files["model"] == str(mine / "model" / "my_fno.yaml")
    assert resolved.search_space_file == spaces / "my_space.yaml"
    # a user's block of a shipped name wins; the shipped search spaces stay available
    assert load_spec(spec, ["model=operator_tiny"]).spec.model.latent_dim == 12
    assert (
        load_spec(spec, ["model=operator_tiny", "search_space=operator_small"]).search_space_file
        == ROOT / "search_spaces" / "operator_small.yaml"
    )
    code, _, out, _ = _cli("show", str(spec))
    assert code == 0 and f"model: my_fno  ({mine / 'model' / 'my_fno.yaml'})" in out
    # every shipped block of every group still resolves, from the shipped folder
    path = ConfigPath.for_spec(spec)
    shipped = ROOT / "configs"
    for group in ("stage", "data", "model", "hardware", "tracking"):
        for block in sorted(p.stem for p in (shipped / group).glob("*.yaml")):
            want = (
                mine / group / f"{block}.yaml"
                if (mine / group / f"{block}.yaml").exists()
                else shipped / group / f"{block}.yaml"
            )
            assert path.block(group, block) == want, (group, block)
    assert {"my_fno", "operator_small", "fno_small"} <= set(path.blocks("model"))
    # a name in no folder lists both folders' blocks
    code, _, _, err = _cli("validate", str(spec), "model=my_fnoo")
    assert code == 2 and "Did you mean 'my_fno'?" in err and "operator_small" in err


def test_a_shipped_spec_runs_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, out, _ = _cli("validate", "smoke")
    assert code == 0 and str(ROOT / "specs" / "smoke.yaml") in out
    code, _, _, err = _cli("validate", "smok")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no shipped spec of that name; got 'smok'. Did you mean 'smoke'?" in err
    (tmp_path / "smoke").write_text("name: mine\ndata: burgers1d\nmodel: operator_tiny\n")
    code, _, out, _ = _cli("validate", "smoke")  # a file of that name comes first
    assert code == 0 and "mine" in out


# --- warm start ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["run", "champion"])
def test_a_warm_start_validates_like_its_source_before_its_first_update(env, source):
    src = env["source"]
    given = src["run_id"] if source == "run" else "models:/plat@champion"
    code, warm, _, err = _cli(
        "run", str(env["spec"]), f"init.from={given}", "train.max_epochs=1", "--json", "--no-progress"
    )
    assert code == 0, err[-3000:]
    for name in ("val/nrmse", "val/rollout_nrmse", "val/corr_time", "val/persistence_rollout_nrmse"):
        assert warm["metrics"][f"init/{name}"] == pytest.approx(src["metrics"][name], rel=1e-5, abs=1e-9), (
            name
        )
    tags = next(r for r in mlflow_runs(env["home"], "plat") if r.info.run_id == warm["run_id"]).data.tags
    assert tags["ups.init_from"] == given and tags["ups.init_run"] == src["run_id"]


def test_a_warm_start_that_does_not_fit_is_one_line_naming_the_first_key(env):
    spec, run_id = str(env["spec"]), env["source"]["run_id"]
    code, _, _, err = _cli("run", spec, f"init.from={run_id}", "model.latent_dim=24", "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "init.from: the source's weights do not fit this model: 'net." in err and "(24," in err
    code, _, _, err = _cli("run", spec, f"init.from={run_id}", "model=fno_small", "--no-progress")
    assert code == 2 and "init.from: the source is a latent_operator model and this spec trains fno" in err
    code, _, _, err = _cli("run", spec, "init.from=nosuchrun", "--no-progress")
    assert code == 2 and "init.from:" in err and "nosuchrun" in err
    code, _, _, err = _cli("validate", spec, "init.frm=x")
    assert code == 2 and "init.frm: unknown key. Did you mean 'from'?" in err


def test_a_search_space_may_choose_the_warm_start(env, tmp_path, monkeypatch):
    from ups.spec.load import load_spec, with_values

    (tmp_path / "warm.yaml").write_text(
        'init.from: {type: categorical, choices: [null, "models:/plat@champion"]}\n'
        "train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
    )
    monkeypatch.setenv("UPS_SEARCH_SPACES", str(tmp_path))
    resolved = load_spec(env["spec"], ["search_space=warm"])
    assert [p.key for p in resolved.search_space] == ["init.from", "train.lr"]
    trial = with_values(resolved, {"init.from": "models:/plat@champion", "train.lr": 1e-3})
    assert trial.spec.init.source == "models:/plat@champion"


# --- runs ---------------------------------------------------------------------------------------------------


def test_runs_lists_an_experiment_sorted_with_persistence_and_creates_nothing(env, tmp_path, monkeypatch):
    code, rows, _, err = _cli(
        "runs", str(env["spec"]), "--json", "--sort", "val/rollout_nrmse", "--limit", "0"
    )
    assert code == 0, err
    assert env["source"]["run_id"] in [r["run_id"] for r in rows]
    values = [r["metrics"]["val/rollout_nrmse"] for r in rows if "val/rollout_nrmse" in r["metrics"]]
    assert values == sorted(values)
    first = next(r for r in rows if r["run_id"] == env["source"]["run_id"])
    assert (
        first["stage"] == "operator" and first["model"] == "latent_operator" and first["status"] == "FINISHED"
    )
    assert first["metrics"]["test/rollout_nrmse"] == pytest.approx(
        env["source"]["metrics"]["test/rollout_nrmse"]
    )
    code, _, out, _ = _cli("runs", "--experiment", "plat", "--sort", "test/rollout_nrmse", "--limit", "1")
    assert code == 0 and "test/persistence_rollout_nrmse" in out and len(out.strip().splitlines()) == 3
    # an empty workspace: one line, and no store appears
    empty = tmp_path / "empty"
    monkeypatch.setenv("UPS_HOME", str(empty))
    code, _, _, err = _cli("runs", "--experiment", "plat")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not empty.exists()


# --- predict and data ---------------------------------------------------------------------------------------


def _test_split_file(env, path: Path) -> tuple[Path, object]:
    """The spec's test trajectories (context + horizon frames) in PDEBench's 1D layout."""
    from ups.data.datamodule import PDEDataModule
    from ups.data.source import load_sources
    from ups.spec.load import load_spec

    spec = load_spec(env["spec"]).spec
    sources = load_sources(spec.data, env["home"])
    dm = PDEDataModule(spec, sources)
    states = dm.states["test"][:, :, 0].numpy()  # (N, E, X)
    with h5py.File(path, "w") as f:
        f.create_dataset("tensor", data=states)
        f.create_dataset("x-coordinate", data=sources[0].x)
        f.create_dataset("t-coordinate", data=np.arange(states.shape[1] + 1) * sources[0].dt)
        f.attrs["Nu"] = 0.01
        f.attrs["equation"] = "burgers1d"
    return path, spec


def test_predict_reproduces_evals_rollout_error_against_the_file(env, tmp_path):
    import torch

    from ups.training.metrics import nrmse

    data, spec = _test_split_file(env, tmp_path / "test_split.h5")
    c, h = spec.eval.context_frames, spec.eval.horizon
    code, evaluated, _, err = _cli("eval", str(env["spec"]), "--model", "models:/plat@champion", "--json")
    assert code == 0, err
    out = tmp_path / "pred.h5"
    code, done, _, err = _cli(
        "predict",
        "models:/plat@champion",
        "--input",
        str(data),
        "--steps",
        str(h),
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, err[-2000:]
    assert done["context"] == c and done["frames"] == c + h
    with h5py.File(out, "r") as f, h5py.File(data, "r") as g:
        pred, true = f["tensor"][:], g["tensor"][:]
        assert f.attrs["equation"] == "burgers1d" and float(f.attrs["Nu"]) == 0.01
    assert np.array_equal(pred[:, :c], true[:, :c])  # the given frames, as given
    score = (
        nrmse(torch.from_numpy(pred[:, c:, None]), torch.from_numpy(true[:, c : c + h, None])).mean().item()
    )
    assert score == pytest.approx(evaluated["metrics"]["test/rollout_nrmse"], rel=1e-5)
    # `ups-exp data` reads the prediction back
    code, info, _, _ = _cli("data", str(out), "--json")
    assert code == 0 and info["trajectories"] == pred.shape[0] and info["frames"] == c + h
    assert info["family"] == "burgers1d" and info["params"] == {"nu": 0.01}


def test_predict_bad_input_is_one_line_and_writes_nothing(env, tmp_path):
    data, _ = _test_split_file(env, tmp_path / "in.h5")
    model = env["source"]["run_id"]
    coarse = tmp_path / "coarse.h5"
    with h5py.File(data, "r") as g, h5py.File(coarse, "w") as f:  # 32 points: the model takes 64
        f.create_dataset("tensor", data=g["tensor"][:, :, ::2])
        f.create_dataset("x-coordinate", data=g["x-coordinate"][::2])
        f.create_dataset("t-coordinate", data=g["t-coordinate"][:])
        f.attrs["Nu"] = 0.01
    existing = tmp_path / "exists.h5"
    existing.write_bytes(b"keep")
    out = tmp_path / "out.h5"
    cases = [
        (["--input", str(tmp_path / "none.h5"), "--steps", "3", "--out", str(out)], "--input: no such file"),
        (["--input", str(coarse), "--steps", "3", "--out", str(out)], "--input: must divide the file's 32"),
        (["--input", str(data), "--steps", "0", "--out", str(out)], "--steps: must be >= 1"),
        (
            ["--input", str(data), "--steps", "3", "--context", "99", "--out", str(out)],
            "--context: must be between 1",
        ),
        (["--input", str(data), "--steps", "3", "--out", str(existing)], "--out: the output file exists"),
        (["--input", str(data), "--steps", "3", "--task", "x", "--out", str(out)], "--task:"),
        (["--input", str(env["spec"]), "--steps", "3", "--out", str(out)], "--input:"),
    ]
    for args, message in cases:
        code, _, _, err = _cli("predict", model, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, (args, err)
        assert not out.exists() and existing.read_bytes() == b"keep"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    code, _, _, err = _cli(
        "predict", model, "--input", str(data), "--steps", "3", "--out", str(existing), "--force"
    )
    assert code == 0 and existing.read_bytes()[:4] != b"keep"


def test_data_describes_a_file_and_refuses_what_it_cannot_read(env, tmp_path):
    data, _ = _test_split_file(env, tmp_path / "d.h5")
    code, _, out, _ = _cli("data", str(data))
    assert code == 0 and "family burgers1d" in out and "nu = 0.01" in out and "grid 64" in out
    code, _, _, err = _cli("data", str(tmp_path / "none.h5"))
    assert code == 2 and "no such file" in err
    code, _, _, err = _cli("data", str(data), "--format", "pdebenchh")
    assert code == 2 and "Did you mean 'pdebench'?" in err
