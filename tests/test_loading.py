"""The stage table's state mapping and the one loader: a checkpoint, a run id, bad sources, old checkpoints."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ups.loading import from_checkpoint, load
from ups.spec import SpecError
from ups.training.stages import stage_named

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "operator_before_stage_seam.ckpt"


def _outputs_of(loaded) -> tuple[np.ndarray, np.ndarray]:
    io = np.load(FIXTURE.with_suffix(".npz"))
    with torch.no_grad():
        out = loaded.predictor()(
            torch.from_numpy(io["u"]), torch.from_numpy(io["params"]), torch.from_numpy(io["dt"])
        )
    return out.numpy(), io["out"]


def test_a_checkpoint_saved_before_the_stage_seam_loads_and_predicts_the_same():
    loaded = from_checkpoint(FIXTURE)
    assert loaded.stage.kind == "operator" and loaded.run_id is None
    mine, then = _outputs_of(loaded)
    # the same weights and code path: equal to float rounding. Not bit for bit: the fixture's outputs were saved on
    # another CPU, and the kernels torch picks for this CPU (vector width) may round a last bit differently
    # (measured here: 1 of 192 values off by 1.2e-7 relative). A wrong or missing weight changes values by O(1).
    np.testing.assert_allclose(mine, then, rtol=1e-6, atol=1e-9)


def test_a_run_id_is_found_in_the_workspace_and_recorded(tmp_path):
    folder = tmp_path / "runs" / "abc123" / "checkpoints"
    folder.mkdir(parents=True)
    shutil.copy(FIXTURE, folder / "epoch=3-step=40.ckpt")
    loaded = load("abc123", home=tmp_path)
    assert loaded.run_id == "abc123" and loaded.source.endswith("epoch=3-step=40.ckpt")
    mine, then = _outputs_of(loaded)
    np.testing.assert_allclose(mine, then, rtol=1e-6, atol=1e-9)


def test_bad_sources_say_what_is_wrong(tmp_path):
    with pytest.raises(SpecError, match="the run has no checkpoint; got 'nosuchrun'"):
        load("nosuchrun", home=tmp_path)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SpecError, match=r"not a ups checkpoint \(.*\); got '.*junk.ckpt'"):
        load(str(junk), home=tmp_path)
    with pytest.raises(
        SpecError, match="unknown stage; got 'difusion_residual'. Did you mean 'diffusion_residual'"
    ):
        stage_named("difusion_residual")


@pytest.mark.parametrize(
    ("kind", "module_keys", "predictor_keys"),
    [
        ("operator", ["model.enc.w", "_orig_mod.model.dec.b"], ["enc.w", "dec.b"]),
        # the raw refiner and the optimizer's view are not the predictor: its EMA is
        ("diffusion_residual", ["operator.a", "refiner.w", "ema.w"], ["operator.a", "refiner.w"]),
        (
            "consistency_distill",
            ["operator.a", "teacher.w", "student.w", "student_ema.w"],
            ["operator.a", "refiner.w"],
        ),
        ("steady_prior", ["model.net.w"], ["net.w"]),
    ],
)
def test_the_stage_table_maps_module_state_onto_the_predictor(kind, module_keys, predictor_keys):
    tensors = {k: torch.full((1,), float(i)) for i, k in enumerate(module_keys)}
    mapped = stage_named(kind).predictor_state(tensors)
    assert sorted(mapped) == sorted(predictor_keys)
    if kind == "diffusion_residual":
        assert mapped["refiner.w"].item() == 2.0  # the EMA's value, not the raw refiner's
    if kind == "consistency_distill":
        assert mapped["refiner.w"].item() == 3.0  # the student's EMA
