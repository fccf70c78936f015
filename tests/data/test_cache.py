"""The generated-data cache: one file per parameter set, made once even when processes race for it."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ups.data.cache import cache_key, generated_file
from ups.data.pdebench import GeneratedData, PDEBenchFile

PARAMS = {"family": "burgers1d", "nu": 0.01, "num_trajectories": 2, "version": 1}


def toy_data(value: float = 1.0) -> GeneratedData:
    return GeneratedData(
        tensor=np.full((2, 3, 8), value, np.float32),  # (N, T, X)
        x=((np.arange(8) + 0.5) / 8).astype(np.float32),
        t=np.arange(4, dtype=np.float32) * 0.05,
        attrs={"Nu": 0.01},
    )


def test_same_params_same_file_made_once(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return toy_data()

    first = generated_file(tmp_path, PARAMS, make)
    again = generated_file(tmp_path, dict(reversed(PARAMS.items())), make)  # key order does not matter
    assert first == again and len(calls) == 1
    assert first.parent == tmp_path / "data"
    assert first.name == f"burgers1d-{cache_key(PARAMS)}.h5" and len(cache_key(PARAMS)) == 12
    f = PDEBenchFile(first)
    assert f.nu == 0.01 and json.loads(f.attrs["cache_params"]) == PARAMS
    np.testing.assert_array_equal(f.read([0, 1], num_points=8, dt=0.05, num_frames=3), 1.0)


def test_different_params_different_file(tmp_path):
    a = generated_file(tmp_path, PARAMS, toy_data)
    b = generated_file(tmp_path, {**PARAMS, "nu": 0.02}, lambda: toy_data(2.0))
    c = generated_file(tmp_path, {**PARAMS, "version": 2}, lambda: toy_data(3.0))
    assert len({a, b, c}) == 3
    assert PDEBenchFile(b).read([0], num_points=8, dt=0.05, num_frames=1)[0, 0, 0] == 2.0


def test_params_must_name_the_family(tmp_path):
    with pytest.raises(ValueError, match="family"):
        generated_file(tmp_path, {"nu": 0.01}, toy_data)


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from ups.data.cache import generated_file
    from ups.data.pdebench import GeneratedData

    def make():
        with open(sys.argv[2], "a") as log:
            log.write("made\\n")
        time.sleep(0.5)  # long enough for the other process to arrive while this one holds the lock
        return GeneratedData(tensor=np.zeros((1, 2, 4), np.float32), x=np.arange(4.0), t=np.arange(3.0), attrs={})

    print(generated_file(Path(sys.argv[1]), {"family": "toy", "n": 1}, make))
    """
)


def test_concurrent_processes_generate_once(tmp_path):
    log = tmp_path / "made.log"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path), str(log)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    paths = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert all(racer.returncode == 0 for racer in racers)
    assert len(paths) == 1 and log.read_text() == "made\n"
    name = f"toy-{cache_key({'family': 'toy', 'n': 1})}.h5"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [name, f"{name}.lock", f"{name}.sha256"]


def test_generated_burgers_round_trips_through_the_reader(tmp_path):
    from ups.data.burgers import generate_burgers

    data = generate_burgers(nu=0.01, num_trajectories=3, num_frames=5)
    path = generated_file(tmp_path, {"family": "burgers1d", "nu": 0.01, "n": 3}, lambda: data)
    f = PDEBenchFile(path)
    assert (
        f.nu == 0.01 and f.dt_file == pytest.approx(0.05, rel=1e-6) and f.attrs["solver"] == "etdrk4-spectral"
    )
    np.testing.assert_array_equal(f.read([0, 1, 2], num_points=256, dt=0.05, num_frames=5), data.tensor)
    np.testing.assert_array_equal(f.subsampled_x(256), data.x)
