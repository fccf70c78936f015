"""A conformance kit for plugin authors: call these in your own tests (docs/extending.md).

    from ups.testing import check_model, check_format, check_metric

    def test_my_model():
        check_model(my_pkg.model.build, ModelIO(spatial_dims=1, in_channels=1, out_channels=1, num_params=2,
                                                grid=(64,)))

Each raises AssertionError naming the first rule the plugin breaks, and returns what it checked (the module, the
trajectories, the values) so a test can look further.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ups.plugin import MetricContext, ModelIO, Trajectories


def _settings(build, cfg: dict | None) -> dict:
    config = getattr(build, "Config", None)
    if cfg is not None:
        return dict(cfg)
    if config is None:
        return {}
    assert dataclasses.is_dataclass(config), f"{build.__name__}.Config must be a dataclass, got {config!r}"
    return {f.name: getattr(config(), f.name) for f in dataclasses.fields(config)}


def check_model(build, io: ModelIO, cfg: dict | None = None, *, batch: int = 3):
    """`build(cfg, io)` returns an nn.Module that maps (u (B, in_channels, *grid), params (B, num_params), dt (B,))
    to (B, out_channels, *grid), finite, differentiable in its parameters, deterministic in eval mode, and whose
    state_dict holds tensors only (so it saves without pickles). `cfg` defaults to `build.Config()`'s values."""
    import torch

    module = build(_settings(build, cfg), io)
    assert isinstance(module, torch.nn.Module), (
        f"build() must return a torch.nn.Module, got {type(module).__name__}"
    )
    torch.manual_seed(0)
    u = torch.randn(batch, io.in_channels, *io.grid)
    params = torch.randn(batch, io.num_params)
    dt = torch.full((batch,), 0.1)
    module.train()
    out = module(u, params, dt)
    want = (batch, io.out_channels, *io.grid)
    assert tuple(out.shape) == want, (
        f"the module must return {want} for {tuple(u.shape)}, got {tuple(out.shape)}"
    )
    assert torch.isfinite(out).all(), "the module's output has NaN or inf values"
    trainable = [p for p in module.parameters() if p.requires_grad]
    assert trainable, "the module has no trainable parameters"
    out.square().mean().backward()
    assert all(p.grad is not None for p in trainable), "some parameters get no gradient (unused in forward?)"
    module.eval()
    with torch.no_grad():
        a, b = module(u, params, dt), module(u, params, dt)
    assert torch.equal(a, b), "the module is not deterministic in eval mode"
    for key, value in module.state_dict().items():
        assert isinstance(value, torch.Tensor), (
            f"state_dict entry {key!r} is not a tensor: it would need a pickle"
        )
    return module


def check_format(read, path: str, cfg: dict[str, Any] | None = None) -> Trajectories:
    """`read(path, cfg)` returns ups.Trajectories: states (N, T, C, *grid) with 1 or 2 grid axes, readable by
    trajectory (a slice or an index array), one name per channel, one coordinate array per axis, dt > 0, params of
    shape (N,) or scalars, and (steady data) inputs (N, C_in, *grid)."""
    import numpy as np

    traj = read(str(path), dict(cfg or {}))
    assert isinstance(traj, Trajectories), f"read() must return ups.Trajectories, got {type(traj).__name__}"
    shape = tuple(traj.states.shape)
    assert len(shape) in (4, 5), f"states must be (N, T, C, *grid) with 1 or 2 grid axes, got shape {shape}"
    n, t, c, *grid = shape
    assert n >= 1 and t >= 1 and c >= 1, f"states must not be empty, got shape {shape}"
    assert len(traj.channels) == c, f"{c} channels but {len(traj.channels)} names: {traj.channels}"
    assert len(traj.coords) == len(grid), f"{len(grid)} grid axes but {len(traj.coords)} coordinate arrays"
    for axis, (coord, size) in enumerate(zip(traj.coords, grid)):
        assert len(coord) == size, f"coords[{axis}] has {len(coord)} entries for an axis of {size} points"
    assert traj.dt > 0, f"dt must be > 0, got {traj.dt}"
    first = np.asarray(traj.states[0:1])
    assert first.shape == (1, *shape[1:]), f"states[0:1] must be (1, T, C, *grid), got {first.shape}"
    picked = np.asarray(traj.states[np.array([0])])
    assert picked.shape == first.shape, (
        f"states[[0]] must read trajectory 0 like states[0:1], got {picked.shape}"
    )
    assert np.isfinite(first).all(), "the first trajectory has NaN or inf values"
    for name, value in traj.params.items():
        arr = np.asarray(value)
        assert arr.ndim == 0 or arr.shape == (n,), (
            f"param {name!r} must be a scalar or (N,), got shape {arr.shape}"
        )
    if traj.inputs is not None:
        assert tuple(traj.inputs.shape[:1]) == (n,) and tuple(traj.inputs.shape[2:]) == tuple(grid), (
            f"inputs must be (N, C_in, *grid), got {tuple(traj.inputs.shape)} for states {shape}"
        )
    if traj.family is not None:
        from ups import catalog

        assert traj.family in catalog.rows("families"), f"family {traj.family!r} is not in the catalogue"
    return traj


def check_metric(fn, *, channels: int = 1, grid: tuple[int, ...] = (32,), batch: int = 4, frames: int = 5):
    """`fn(pred, true, ctx)` returns one finite value per sample (B,) for (B, T, C, *grid) tensors; a perfect
    prediction scores at least as well as a poor one in the metric's own direction (`fn.higher_is_better`)."""
    import torch

    torch.manual_seed(0)
    true = torch.randn(batch, frames, channels, *grid)
    ctx = MetricContext(
        dt=0.1,
        grid=grid,
        coords=tuple(torch.linspace(0, 1, n) for n in grid),
        channels=tuple(f"c{i}" for i in range(channels)),
        task=None,
        params={},
        u0=true[:, 0],
    )
    good = torch.as_tensor(fn(true.clone(), true, ctx))
    bad = torch.as_tensor(fn(true + torch.randn_like(true), true, ctx))
    assert tuple(good.shape) == (batch,), f"fn must return (B,) = ({batch},), got {tuple(good.shape)}"
    assert torch.isfinite(good).all() and torch.isfinite(bad).all(), "fn returned NaN or inf"
    higher = bool(getattr(fn, "higher_is_better", False))
    better = (good >= bad) if higher else (good <= bad)
    assert bool(better.all()), (
        f"a perfect prediction must score at least as well as a noisy one (higher_is_better={higher}): "
        f"{good.tolist()} vs {bad.tolist()}"
    )
    return good
