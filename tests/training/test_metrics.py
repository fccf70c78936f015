import math

import pytest
import torch

from ups.training.metrics import band_nrmse, evaluate_batch, nrmse, summarize


def test_nrmse_is_per_sample_relative_l2_averaged_over_fields():
    true = torch.tensor([[[3.0, 4.0]], [[1.0, 0.0]]])  # (B=2, C=1, X=2)
    pred = torch.tensor([[[3.0, 5.0]], [[0.0, 0.0]]])
    assert nrmse(pred, true).tolist() == pytest.approx([1 / 5, 1.0])


def test_bands_partition_the_error():
    g = torch.Generator().manual_seed(0)
    pred, true = torch.randn(5, 3, 1, 64, generator=g), torch.randn(5, 3, 1, 64, generator=g)
    b = band_nrmse(pred, true)
    total = b["low"] ** 2 + b["mid"] ** 2 + b["high"] ** 2
    assert torch.allclose(total, nrmse(pred, true) ** 2)


def test_band_assignment_by_wavenumber():
    x = torch.arange(64) / 64
    true = torch.ones(1, 1, 64)
    for k, band in ((2, "low"), (8, "mid"), (20, "high")):
        pred = true + 0.1 * torch.sin(2 * math.pi * k * x)
        b = band_nrmse(pred, true)
        assert b[band].item() > 0.05
        assert all(v.item() < 1e-6 for name, v in b.items() if name != band)


def _decaying(b=4, t=12, x=32):
    base = torch.randn(b, 1, 1, x, generator=torch.Generator().manual_seed(1))
    decay = torch.exp(-0.1 * torch.arange(t)).view(1, t, 1, 1)
    return base * decay  # (B, T, C, X): u(t+1) = 0.905 u(t)


def test_exact_model_scores_zero_and_persistence_matches_formula():
    traj = _decaying()
    factor = math.exp(-0.1)
    exact = lambda u, p, dt: u * factor  # noqa: E731
    params, dt = torch.zeros(4, 1), torch.full((4,), 0.1)
    out = evaluate_batch(exact, traj, params, dt, context_frames=3, horizon=5)
    m = summarize(out, [1, 5])
    assert m["nrmse"] == pytest.approx(0, abs=1e-6) and m["rollout_nrmse"] == pytest.approx(0, abs=1e-6)
    # persistence at step h: |1 - f^h| / f^h
    per_h = [abs(1 - factor**h) / factor**h for h in range(1, 6)]
    assert m["persistence_rollout_nrmse"] == pytest.approx(sum(per_h) / 5, rel=1e-5)
    assert m["persistence_rollout_nrmse@5"] == pytest.approx(per_h[4], rel=1e-5)
    assert m["persistence_nrmse"] == pytest.approx(per_h[0], rel=1e-5)


def test_rollout_errors_compound_but_one_step_does_not():
    traj = _decaying()
    wrong = lambda u, p, dt: u * math.exp(-0.1) * 1.01  # noqa: E731
    out = evaluate_batch(wrong, traj, torch.zeros(4, 1), torch.full((4,), 0.1), context_frames=3, horizon=5)
    steps = out["rollout_steps"].mean(0)
    assert torch.allclose(
        steps, torch.tensor([1.01**h - 1 for h in range(1, 6)], dtype=steps.dtype), rtol=1e-4
    )
    assert out["nrmse"].mean().item() == pytest.approx(0.01, rel=1e-4)


def test_per_sample_metric_selects_a_task():
    from ups.training.metrics import per_sample_metric

    per_sample = {
        "rollout_steps": torch.tensor([[1.0, 3.0], [5.0, 7.0], [9.0, 11.0]]),
        "task": torch.tensor([0, 1, 0]),
    }
    assert per_sample_metric(per_sample, "test/rollout_nrmse").tolist() == [2.0, 6.0, 10.0]
    assert per_sample_metric(per_sample, "test/b/rollout_nrmse", ["a", "b"]).tolist() == [6.0]
    assert per_sample_metric(per_sample, "test/a/rollout_nrmse@2", ["a", "b"]).tolist() == [3.0, 11.0]


def test_corr_time_is_dt_times_the_steps_before_the_mean_correlation_drops_below_08():
    """DESIGN: c_h = mean over samples of the spatial Pearson correlation; corr_time = Δt × steps before c_h < 0.8."""
    from ups.training.metrics import pearson, summarize

    x = torch.linspace(0, 2 * math.pi, 64)
    true = torch.sin(x).expand(2, 6, 1, 64).clone()  # (B=2, H=6, C, X)
    # sample 0 decorrelates after 3 steps, sample 1 after 5; the mean curve crosses 0.8 at step index 3
    pred = true.clone()
    pred[0, 3:] = torch.cos(x)  # correlation 0
    pred[1, 5:] = -torch.sin(x)  # correlation -1
    corr = pearson(pred, true)  # (B, H)
    assert corr[0].tolist() == pytest.approx([1, 1, 1, 0, 0, 0], abs=1e-6)
    per_sample = {
        "corr_steps": corr,
        "persistence_corr_steps": torch.ones(2, 6),
        "dt": torch.full((2,), 0.2, dtype=torch.float64),
    }
    for key in ("nrmse", "persistence_nrmse", "band_low", "band_mid", "band_high"):
        per_sample[key] = torch.zeros(2)
        per_sample[f"persistence_{key}" if not key.startswith("persistence") else key] = torch.zeros(2)
    per_sample["rollout_steps"] = per_sample["persistence_rollout_steps"] = torch.zeros(2, 6)
    for band in ("low", "mid", "high"):
        per_sample[f"persistence_band_{band}"] = torch.zeros(2)
    m = summarize(per_sample, [1])
    assert m["corr_time"] == pytest.approx(3 * 0.2)  # mean curve: 1, 1, 1, 0.5, 0.5, -0.5
    assert m["corr_time_censored"] == 0.0
    assert m["persistence_corr_time"] == pytest.approx(6 * 0.2)  # never drops: the horizon, censored
    from ups.training.metrics import per_sample_metric

    assert per_sample_metric(per_sample, "test/corr_time").tolist() == pytest.approx([0.6, 1.0])


# 2D and several channels: per channel over the grid, then the mean (PDEBench); bands by radial |k|
def test_2d_nrmse_is_per_channel_then_mean():
    g = torch.Generator().manual_seed(3)
    true = torch.randn(4, 2, 8, 6, generator=g)  # (B, C, X, Y): a non-square grid catches axis mix-ups
    pred = true.clone()
    pred[:, 1] *= 1.5  # channel 1 off by 50%, channel 0 exact
    assert nrmse(pred, true, dims=2).tolist() == pytest.approx([0.25] * 4)


def test_2d_bands_partition_the_error_and_sort_by_radial_wavenumber():
    g = torch.Generator().manual_seed(0)
    pred, true = torch.randn(3, 2, 1, 32, 32, generator=g), torch.randn(3, 2, 1, 32, 32, generator=g)
    b = band_nrmse(pred, true, dims=2)
    assert torch.allclose(b["low"] ** 2 + b["mid"] ** 2 + b["high"] ** 2, nrmse(pred, true, dims=2) ** 2)
    x = torch.arange(64) / 64
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    ones = torch.ones(1, 1, 64, 64)
    # (kx, ky) = (3, 3): |k| = 4.24 is mid although each component is low; (9, 9): |k| = 12.7 is high
    for kx, ky, band in ((2, 1, "low"), (3, 3, "mid"), (0, 7, "mid"), (9, 9, "high"), (-5, 11, "high")):
        pred = ones + 0.1 * torch.sin(2 * math.pi * (kx * xx + ky * yy))
        b = band_nrmse(pred, ones, dims=2)
        assert b[band].item() > 0.05, (kx, ky, band)
        assert all(v.item() < 1e-6 for name, v in b.items() if name != band), (kx, ky, band)


def test_2d_multichannel_summary_logs_each_channel_and_their_mean():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(5, 1, 2, 8, 8, generator=g)
    traj = base * torch.exp(-0.1 * torch.arange(9)).view(1, 9, 1, 1, 1)  # (B, T, C, X, Y)

    def wrong_second_channel(u, params, dt):
        out = u * math.exp(-0.1)
        out[:, 1] = u[:, 1]  # channel 0 exact, channel 1 persistence
        return out

    out = evaluate_batch(
        wrong_second_channel, traj, torch.zeros(5, 0), torch.full((5,), 0.1), context_frames=2, horizon=4
    )
    m = summarize(out, [1, 4], ("u", "v"))
    assert m["rollout_nrmse.u"] == pytest.approx(0.0, abs=1e-6)
    assert m["rollout_nrmse.v"] == pytest.approx(m["persistence_rollout_nrmse.v"])
    assert m["rollout_nrmse"] == pytest.approx((m["rollout_nrmse.u"] + m["rollout_nrmse.v"]) / 2)
    assert m["persistence_rollout_nrmse.u"] == pytest.approx(m["persistence_rollout_nrmse.v"])  # same decay
    assert m["corr_time"] > 0 and "nrmse.u" in m and "persistence_nrmse.v" in m

    def exact(u, params, dt):
        return u * math.exp(-0.1)

    one = evaluate_batch(
        exact, traj[:, :, :1], torch.zeros(5, 0), torch.full((5,), 0.1), context_frames=2, horizon=4
    )
    assert not any("." in k for k in summarize(one, [1], ("u",)))  # one channel: no per-channel names
