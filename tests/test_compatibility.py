"""Model files written before the catalogue (tests/fixtures/before_catalog, made at commit 30d7326 with the kind
then called `operator`): a KS pipeline's operator, refiner and student checkpoints, a steady prior's checkpoint, and
an exported refiner (the registry's config.json + weights.npz pair). Each loads and predicts what it predicted then."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ups.loading import from_checkpoint, from_export

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "before_catalog"
IO = np.load(FIXTURES / "io.npz")


def _rollout(model) -> np.ndarray:
    u, p, dt = (torch.from_numpy(IO[k]) for k in ("u", "params", "dt"))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the refined predictors draw their noise from torch's generator
        return model.rollout(u, p, dt, 3).numpy()


@pytest.mark.parametrize("name", ["ks_operator.ckpt", "ks_refiner.ckpt", "ks_student.ckpt"])
def test_trajectory_checkpoints_from_before_predict_the_same(name):
    loaded = from_checkpoint(FIXTURES / name)
    np.testing.assert_allclose(_rollout(loaded.predictor()), IO[name], rtol=1e-5, atol=1e-6)


def test_an_export_from_before_predicts_the_same():
    np.testing.assert_allclose(
        _rollout(from_export(FIXTURES / "refiner_export").predictor()),
        IO["refiner_export"],
        rtol=1e-5,
        atol=1e-6,
    )


def test_a_steady_checkpoint_from_before_predicts_the_same():
    model = from_checkpoint(FIXTURES / "steady.ckpt").predictor()
    a, f, p = (torch.from_numpy(IO[k]) for k in ("steady_a", "steady_f", "steady_params"))
    with (
        torch.no_grad()
    ):  # today's steady predictor takes the inputs stacked, channels first, and gives (B, C, X)
        out = model(torch.stack([a, f], dim=1), p)[:, 0]
    np.testing.assert_allclose(out.numpy(), IO["steady.ckpt"], rtol=1e-5, atol=1e-6)
