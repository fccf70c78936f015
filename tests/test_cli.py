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


def test_usage_error_exit_2():
    proc = subprocess.run(
        [sys.executable, "-m", "ups.cli", "frobnicate"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2
