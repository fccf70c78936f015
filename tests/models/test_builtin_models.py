"""The built-in model kinds hold the model contract (ups.testing.check_model) on the grids they support, refuse the
ones they do not in one line, and any kind trains in every stage that trains a trajectory network (a pipeline
with an FNO operator, a U-Net refiner and an FNO student)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
from conftest import isolate, write_ks_pipeline

from ups import catalog
from ups.cli import main
from ups.plugin import ModelIO
from ups.testing import check_model

SMALL = {
    "latent_operator": {"patch_size": 4, "latent_dim": 8, "num_layers": 1, "num_modes": 4, "cond_dim": 4,
                        "mlp_ratio": 1, "decoder_dim": 4, "decoder_kernel": 3},
    "fno": {"width": 8, "num_layers": 2, "num_modes": 4, "cond_dim": 4, "projection_dim": 8},
    "unet": {"width": 8, "multipliers": [1, 2], "blocks_per_level": 1, "cond_dim": 4, "norm_groups": 4},
}  # fmt: skip


def _io(grid: tuple[int, ...], channels: int = 2, periodic: bool = True) -> ModelIO:
    return ModelIO(
        spatial_dims=len(grid),
        in_channels=channels,
        out_channels=channels,
        num_params=3,
        grid=grid,
        periodic=(periodic,) * len(grid),
    )


def _settings(kind: str) -> dict:
    row = catalog.get("models", kind)
    config = catalog.load(row.config)
    return {**{k: v for k, v in vars(config()).items() if k != "kind"}, **SMALL[kind]}


CASES = [
    ("latent_operator", (32,), True),
    ("latent_operator", (32, 40), True),
    ("latent_operator", (32, 32), False),
    ("fno", (32,), True),
    ("fno", (16, 12), True),
    ("fno", (32,), False),
    ("unet", (32,), True),
    ("unet", (16, 12), False),
]


@pytest.mark.parametrize(("kind", "grid", "periodic"), CASES)
def test_built_in_models_hold_the_contract(kind, grid, periodic):
    io_ = _io(grid, periodic=periodic)
    cfg = _settings(kind)
    config = catalog.load(catalog.get("models", kind).config)
    assert config(**cfg).check(io_) == []
    module = check_model(catalog.load(catalog.get("models", kind).build), io_, cfg)
    assert sum(p.numel() for p in module.parameters()) > 0


def test_models_refuse_grids_they_cannot_take_with_the_key_to_change():
    config = catalog.load(catalog.get("models", "latent_operator").config)
    problems = dict(config(**_settings("latent_operator")).check(_io((16, 10))))
    assert "must divide the grid's 10 points" in problems["patch_size"]
    problems = dict(config(**{**_settings("latent_operator"), "num_modes": 3}).check(_io((16, 16))))
    assert "must be <= 2 for 4 tokens per axis" in problems["num_modes"]  # 2D: both signs must not overlap
    assert config(**{**_settings("latent_operator"), "num_modes": 3}).check(_io((16,))) == []
    unet = catalog.load(catalog.get("models", "unet").config)
    problems = dict(unet(**{**_settings("unet"), "multipliers": [1, 2, 2]}).check(_io((30,))))
    assert "divisible by 4" in problems["multipliers"] and "30 points" in problems["multipliers"]
    fno = catalog.load(catalog.get("models", "fno").config)
    problems = dict(fno(**{**_settings("fno"), "num_modes": 40}).check(_io((32,))))
    assert "num_modes" in problems


def test_the_output_starts_at_the_input_so_training_starts_from_persistence():
    """Residual models start as the identity: a fresh model already scores persistence, never worse."""
    for kind in SMALL:
        for grid in ((32,), (32, 32)):
            io_ = _io(grid)
            module = catalog.load(catalog.get("models", kind).build)(_settings(kind), io_)
            u = torch.randn(2, 2, *grid)
            out = module(u, torch.randn(2, 3), torch.full((2,), 0.1))
            torch.testing.assert_close(out, u, msg=f"{kind} {grid}")


def test_any_kind_trains_in_every_trajectory_stage(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path / "home", tmp_path)
    spec = write_ks_pipeline(tmp_path, name="mixed", tracking="none")
    fno = "{kind: fno, width: 8, num_layers: 1, num_modes: 4, cond_dim: 4, projection_dim: 8}"
    unet = "{kind: unet, width: 8, multipliers: [1, 2], blocks_per_level: 1, cond_dim: 4, norm_groups: 4}"
    text = spec.read_text().replace("model: operator_tiny", f"model: {fno}")
    text = text.replace("name: refiner,", f"name: refiner, model: {unet},")
    text = text.replace("name: student,", f"name: student, model: {fno},")
    text = text.replace("max_epochs: 2,", "max_epochs: 1,").replace("horizon: 30", "horizon: 10")
    spec.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", str(spec), "--json", "--no-progress"])
    assert code == 0, err.getvalue()[-3000:]
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert [s["stage"] for s in summary["stages"]] == ["operator", "refiner", "student"]
    for stage in summary["stages"]:
        m = stage["metrics"]
        assert torch.isfinite(torch.tensor(m["test/rollout_nrmse"])), stage["stage"]
