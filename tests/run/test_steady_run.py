"""The steady-state prior end to end at a tiny size: data, training, metrics next to both baselines."""

import numpy as np
from conftest import ROOT

from ups.run.single import run_spec, summary
from ups.spec.load import load_spec


def test_steady_prior_trains_and_reports_both_baselines(workspace):
    overrides = [
        "data.num_trajectories=512",
        "train.max_epochs=12",
        "train.batches_per_epoch=20",
        "train.batch_size=32",
        "train.lr=3e-3",
        "model=operator_tiny",
        "tracking=none",
    ]
    result = run_spec(load_spec(ROOT / "specs" / "steady.yaml", overrides), progress_bar=False)
    m = result.metrics
    for split in ("val", "test"):
        values = [m[f"{split}/{k}"] for k in ("nrmse", "baseline_mean_nrmse", "baseline_harmonic_nrmse")]
        assert np.isfinite(values).all(), values
        # the harmonic-mean solve knows the coefficient's scale: it beats the mean solution on this data
        assert m[f"{split}/baseline_harmonic_nrmse"] < m[f"{split}/baseline_mean_nrmse"]
        # and the prior, 240 steps into training, beats both clearly (a prior that does not is a bug)
        assert m[f"{split}/nrmse"] < 0.7 * m[f"{split}/baseline_harmonic_nrmse"], values
    assert "solver_rollout_nrmse" not in " ".join(m)  # a steady family has no coarse rollout
    assert "baseline_mean_nrmse" in summary(result)
