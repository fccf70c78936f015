"""The CLI contract: cold path imports, exit codes, one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from ups.cli import main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "pytorch_lightning", "mlflow", "wandb")


@pytest.mark.parametrize(
    "argv", [["--help"], ["validate", "specs/burgers.yaml"], ["show", "specs/burgers.yaml"]]
)
def test_cold_path_imports_nothing_heavy(argv):
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['ups-exp', *{argv!r}]\n"
        "try:\n    from ups.cli import main; main()\nexcept SystemExit:\n    pass\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "HEAVY=\n" in out.stdout or out.stdout.strip().endswith("HEAVY="), out.stdout + out.stderr


def test_validate_ok(capsys):
    assert main(["validate", str(ROOT / "specs/burgers.yaml")]) == 0
    assert "ok" in capsys.readouterr().out


def test_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UPS_HOME", str(tmp_path / "home"))
    rc = main(["run", str(ROOT / "specs/burgers.yaml"), "train.lr=-1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().splitlines() == ["command line: train.lr: must be > 0; got -1.0."]
    assert not (tmp_path / "home").exists()


def test_show_prints_resolved_yaml(capsys):
    import yaml

    assert main(["show", str(ROOT / "specs/burgers.yaml"), "train.lr=0.01"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["train"]["lr"] == 0.01 and data["data"]["nu"] == 0.01


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "ups-exp: the following arguments are required: COMMAND. See `ups-exp --help`."),
        (["run"], "ups-exp run: the following arguments are required: SPEC. See `ups-exp run --help`."),
        (["frobnicate"], "ups-exp: argument COMMAND: invalid choice: 'frobnicate'"),
        (["run", "specs/burgers.yaml", "--bogus"], "ups-exp run: unrecognized arguments: --bogus."),
        (
            ["sweep", "specs/burgers_sweep.yaml", "--trials", "many"],
            "ups-exp sweep: argument --trials: invalid int",
        ),
        (
            ["export", "RUN", "--out", "x", "train.lr=1"],
            "ups-exp export: takes no key=value overrides: train.lr=1.",
        ),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv, expected):
    proc = subprocess.run(
        [sys.executable, "-m", "ups.cli", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(expected), proc.stderr
    assert "usage:" not in proc.stderr
    if argv == ["run"]:
        assert "key=value" not in proc.stderr  # overrides are optional: never listed as required


@pytest.mark.parametrize(
    ("profile", "gpus", "expected"),
    [
        ("1gpu", "0", "hardware profile '1gpu' needs 1 GPU per node; this machine has none visible; got 1."),
        (
            "4gpu_fsdp",
            "2",
            "hardware profile '4gpu_fsdp' needs 4 GPUs per node; this machine has only 2 visible; got 4.",
        ),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run", "sweep"])
def test_a_profile_the_machine_cannot_run_is_refused_before_anything_is_written(
    command, profile, gpus, expected, tmp_path, monkeypatch, capsys
):
    home = tmp_path / "home"
    monkeypatch.setenv("UPS_HOME", str(home))
    monkeypatch.setenv("UPS_FAKE_GPUS", gpus)
    assert main([command, "specs/burgers.yaml", f"hardware={profile}"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"specs/burgers.yaml: hardware.devices: {expected} Use hardware=cpu (or cpu_ddp2), or run where the GPUs are (CUDA_VISIBLE_DEVICES narrows them)."
    )
    assert not home.exists()  # no data, no tracking store, no run folder


def test_a_gpu_profile_validates_where_the_gpus_are(monkeypatch, capsys):
    monkeypatch.setenv("UPS_FAKE_GPUS", "4")
    assert main(["validate", "specs/burgers.yaml", "hardware=4gpu_fsdp"]) == 0
    assert "hardware 4gpu_fsdp" in capsys.readouterr().out


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch, tmp_path):
    from ups.spec import machine

    monkeypatch.delenv("UPS_FAKE_GPUS", raising=False)
    fake_dev = tmp_path / "dev"
    fake_dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidiactl", "nvidia-uvm"):
        (fake_dev / name).touch()
    monkeypatch.setattr(machine, "Path", lambda p: fake_dev if p == "/dev" else Path(p))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert machine.visible_gpus() == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert machine.visible_gpus() == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert machine.visible_gpus() == 0
