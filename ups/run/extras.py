"""A trained run's size and speed, reported next to its metrics (what `solver_rollout_ms` and the coarse
solves' ms per sample are compared with)."""

from __future__ import annotations

import time


def _timed(call, repeats: int = 5) -> float:
    """Seconds per call, after one warm-up call."""
    import torch

    with torch.no_grad():
        call()
        start = time.perf_counter()
        for _ in range(repeats):
            call()
    return (time.perf_counter() - start) / repeats


def model_extras(model, datamodule, spec) -> dict[str, float]:
    """Size and speed: `model/inference_ms` (one step of a batch of up to 32) and `model/rollout_ms` (one
    trajectory's rollout over the horizon, what `solver_rollout_ms` costs the solver)."""
    states = datamodule.states["val"][:32, 0]  # (B, C, *grid)
    params = datamodule.params["val"][: states.shape[0]]
    dt = datamodule.dts["val"][: states.shape[0]]
    elapsed = _timed(lambda: model(states, params, dt))
    return {
        "model/num_params": float(sum(p.numel() for p in model.parameters())),
        "model/inference_ms": 1000 * elapsed,
        "model/rollout_ms": 1000 * elapsed / states.shape[0] * spec.eval.horizon,
    }


def steady_extras(model, datamodule, spec) -> dict[str, float]:
    """Size and speed of a steady model: `model/sample_ms` per solution (batches of up to 32)."""
    inputs, _, params, _ = (t[:32] for t in datamodule.tensors["val"])
    elapsed = _timed(lambda: model(inputs, params))
    return {
        "model/num_params": float(sum(p.numel() for p in model.parameters())),
        "model/sample_ms": 1000 * elapsed / inputs.shape[0],
    }
