"""FSDP (`4gpu_fsdp`): each processor block is its own shard unit, checkpoints are full state dicts with plain
keys, so what trained on several GPUs loads into one device's model. The real multi-GPU run is `gpu`-marked (and
in benchmarks/gpu_check.sh): FSDP cannot run on CPU (Lightning refuses it; torch's FSDP over gloo crashes here)."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT

from ups.models.operator import LatentOperator, ProcessorBlock
from ups.plugin import ModelIO
from ups.spec.load import load_spec
from ups.training.stages import plain_key, stage_of
from ups.training.trainer import strategy_for

BURGERS = ROOT / "specs" / "burgers.yaml"


def _net(spec):
    from ups.models.config import LatentOperatorConfig
    from ups.spec.models import settings

    io = ModelIO(spatial_dims=1, in_channels=1, out_channels=1, num_params=0, grid=(256,))
    return LatentOperator(LatentOperatorConfig(**settings(spec.model)), io)


def test_fsdp_profile_wraps_each_processor_block_and_saves_full_state_dicts():
    from lightning.pytorch.strategies import FSDPStrategy

    spec = load_spec(BURGERS, ["hardware=4gpu_fsdp"]).spec
    strategy = strategy_for(spec.hardware)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy._state_dict_type == "full"
    net = _net(spec)
    units = strategy.kwargs["auto_wrap_policy"]._run_policy(net, ignored_modules=set(), root_kwargs={})
    blocks = [m for m in units if m is not net]
    assert len(blocks) == spec.model.num_layers and all(isinstance(m, ProcessorBlock) for m in blocks)
    assert strategy_for(load_spec(BURGERS, ["hardware=2gpu_ddp"]).spec.hardware) == "ddp"


def test_a_checkpoint_with_wrapper_names_loads_into_a_single_device_model():
    """Whatever wrapped the network while it trained (FSDP units, torch.compile), its saved keys load strictly."""
    spec = load_spec(BURGERS).spec
    net = _net(spec)
    wrapped = {}
    for key, value in net.state_dict().items():
        if key.startswith("blocks."):
            i, rest = key.split(".", 2)[1:]
            key = f"_fsdp_wrapped_module.blocks.{i}._fsdp_wrapped_module._orig_mod.{rest}"
        wrapped[f"model.{key}"] = value + 1.0
    state = stage_of(spec).predictor_state(wrapped)
    fresh = _net(spec)
    fresh.load_state_dict(state, strict=True)
    for key, value in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value + 1.0), key
    assert plain_key("model._checkpoint_wrapped_module.blocks.0.w") == "model.blocks.0.w"


@pytest.mark.gpu
def test_fsdp_run_on_two_gpus_promotes_to_one_device(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import subprocess_env, write_tiny_spec

    from ups.loading import from_checkpoint

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    spec = write_tiny_spec(tmp_path, name="fsdp", epochs=1)
    env = subprocess_env(tmp_path / "home")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ups.cli",
            "run",
            str(spec),
            "hardware=4gpu_fsdp",
            "hardware.devices=2",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = json.loads(proc.stdout.splitlines()[-1])["run_id"]
    (ckpt,) = sorted((tmp_path / "home" / "runs" / run_id / "checkpoints").glob("epoch*.ckpt"))[-1:]
    model = from_checkpoint(ckpt).predictor()  # strict load into one CPU model
    assert sum(p.numel() for p in model.parameters()) > 0


def test_fsdp_refuses_a_recovering_oom_policy():
    from ups.spec.errors import SpecError

    with pytest.raises(SpecError, match="FSDP's forward pass gathers parameters across ranks") as info:
        load_spec(BURGERS, ["hardware=4gpu_fsdp", "hardware.oom=halve_batch"])
    assert "hardware.oom" in str(info.value)
