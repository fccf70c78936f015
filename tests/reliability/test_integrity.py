"""Integrity (issue 11, point 11): cached data is checked when used, checkpoints never unpickle, and two
promotes at once cannot both move the alias."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, mlflow_client, subprocess_env, sweep_spec

from ups.data.cache import generated_file
from ups.data.pdebench import GeneratedData, PDEBenchFile
from ups.spec import SpecError
from ups.spec.load import load_spec
from ups.sweep.driver import run_sweep


def _maker(calls: list[int]):
    def make() -> GeneratedData:
        calls.append(1)
        rng = np.random.default_rng(len(calls))
        return GeneratedData(
            tensor=rng.standard_normal((4, 6, 16)).astype(np.float32),
            x=np.linspace(0, 1, 16, dtype=np.float32),
            t=np.linspace(0, 1, 6, dtype=np.float32),
            attrs={"family": "burgers1d"},
        )

    return make


def test_a_corrupt_cached_file_is_generated_again(tmp_path, caplog):
    params = {"family": "burgers1d", "nu": 0.01, "seed": 0, "version": 1}
    calls: list[int] = []
    path = generated_file(tmp_path, params, _maker(calls))
    assert generated_file(tmp_path, params, _maker(calls)) == path and len(calls) == 1  # cached, checked
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle: same size, same name
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="ups.data.cache"):
        assert generated_file(tmp_path, params, _maker(calls)) == path
    assert len(calls) == 2
    assert "checksum does not match" in caplog.text and str(path) in caplog.text
    assert PDEBenchFile(path).num_trajectories == 4


def test_a_corrupt_user_file_is_named_with_its_path(tmp_path):
    params = {"family": "burgers1d", "nu": 0.01, "seed": 0, "version": 1}
    good = generated_file(tmp_path, params, _maker([]))
    user = tmp_path / "mine.h5"
    user.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # truncated by a failed copy
    with pytest.raises(SpecError) as info:
        _ = PDEBenchFile(user).num_trajectories
    assert info.value.key == "data.path" and str(user) in str(info.value)


def test_checkpoints_load_with_weights_only_everywhere():
    """Every torch.load in the package and the benchmarks passes weights_only=True (nothing unpickles code)."""
    calls = []
    for path in [*(ROOT / "ups").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]:
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            depth, i = 1, m.end()
            while depth:  # the call's full argument list
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            calls.append((path.name, text[m.start() : i]))
    assert calls, "no torch.load found: the scan is broken"
    unsafe = [(name, call) for name, call in calls if "weights_only=True" not in call]
    assert not unsafe, unsafe


@pytest.mark.slow
def test_two_promotes_at_once_move_the_alias_once(workspace, tmp_path):
    spec = sweep_spec(tmp_path, name="race", tracking="local", trials=2, epochs=2, pruner="none")
    run_sweep(load_spec(spec))
    env = subprocess_env(workspace)
    cmd = [sys.executable, "-m", "ups.cli", "promote", str(spec)]
    procs = [
        subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 3], results  # one promoted, the other (which waited for the lock) rejected
    assert all("Traceback" not in err for _, _, err in results)
    client = mlflow_client(workspace)
    versions = client.search_model_versions("name='race'")
    assert len(versions) == 2
    champion = client.get_model_version_by_alias("race", "champion")
    decisions = {
        v.version: client.get_model_version("race", v.version).tags["ups.decision"] for v in versions
    }
    assert decisions[champion.version] == "promoted" and sorted(decisions.values()) == [
        "promoted",
        "rejected",
    ]
    # nobody was champion before, and the loser moved nothing: one alias, on the winner
    assert client.get_registered_model("race").aliases == {"champion": champion.version}
    assert Path(workspace / "registry" / "race.lock").is_file()
