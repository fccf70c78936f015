"""Hardware profiles that really change how training runs (issue 10, points 2 and 3): bf16-mixed on CPU trains
to finite metrics close to fp32's; `hardware.compile` trains the compiled network, falls back to eager (logged
once) when compilation fails, and its checkpoints load like eager ones."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import write_tiny_spec

from ups.loading import load
from ups.run.single import run_spec
from ups.spec.load import load_spec

KEYS = ("val/nrmse", "val/rollout_nrmse", "test/rollout_nrmse")


def _run(tmp_path, name, *overrides):
    spec = write_tiny_spec(tmp_path, name=name, epochs=3, tracking="none")
    return run_spec(load_spec(spec, ["train.batches_per_epoch=10", *overrides]), progress_bar=False)


def test_bf16_mixed_on_cpu_is_finite_and_close_to_fp32(workspace, tmp_path):
    fp32 = _run(tmp_path, "fp32")
    bf16 = _run(tmp_path, "bf16", "hardware.precision=bf16-mixed")
    for key in KEYS:
        assert torch.isfinite(torch.tensor(bf16.metrics[key])), key
        assert bf16.metrics[key] == pytest.approx(fp32.metrics[key], rel=0.15), key
    assert bf16.metrics["test/rollout_nrmse"] < bf16.metrics["test/persistence_rollout_nrmse"]


def test_a_failing_compile_is_logged_once_and_training_goes_on_eager(
    workspace, tmp_path, monkeypatch, caplog
):
    calls = []

    def broken_compile(fn, *args, **kwargs):
        def compiled(*a, **k):
            calls.append(1)
            raise RuntimeError("forced compile failure (test)")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    eager = _run(tmp_path, "eager")
    with caplog.at_level(logging.WARNING, logger="ups.training.stage_module"):
        fallback = _run(tmp_path, "fallback", "hardware.compile=true")
    warnings = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(warnings) == 1 and "forced compile failure" in warnings[0].getMessage()
    assert calls == [1]  # tried once, then eager for good
    for key in KEYS:  # eager after the failed first call: the same numbers as a plain eager run
        assert fallback.metrics[key] == pytest.approx(eager.metrics[key], rel=1e-5), key


@pytest.mark.slow
def test_a_compiled_run_trains_compiled_and_its_checkpoint_loads_plainly(workspace, tmp_path, monkeypatch):
    compiled_calls = []
    real_compile = torch.compile

    def counting_compile(fn, *args, **kwargs):
        graph = real_compile(fn, *args, **kwargs)

        def call(*a, **k):
            compiled_calls.append(1)
            return graph(*a, **k)

        return call

    monkeypatch.setattr(torch, "compile", counting_compile)
    eager = _run(tmp_path, "eager2")
    compiled = _run(tmp_path, "compiled", "hardware.compile=true")
    assert len(compiled_calls) >= compiled.steps  # every training step ran the compiled network
    for key in KEYS:
        assert compiled.metrics[key] == pytest.approx(eager.metrics[key], rel=0.05), key
    state = torch.load(compiled.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert not any("_orig_mod" in k for k in state)
    loaded = load(compiled.checkpoint, home=workspace)
    u = torch.zeros(2, 1, 64)
    assert loaded.predictor()(u, torch.zeros(2, len(loaded.layout)), torch.full((2,), 0.05)).shape == u.shape
