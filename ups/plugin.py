"""What plugins are handed and return: the plain data of the plugin contract (docs/extending.md).

Standard library only, like the catalogue: `validate` imports it. The contract may gain fields with defaults, never
lose one (`PLUGIN_API`).

Legend: N trajectories (or samples), T frames, C channels, *grid one or two grid axes, P PDE parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PLUGIN_API = 1
"""The plugin contract's version: 1 while the contract only gains fields with defaults."""


@dataclass(frozen=True, kw_only=True)
class ModelIO:
    """The shapes a model is built for: `build(cfg, io) -> nn.Module`, called as `module(u, params, dt)` with
    u (B, in_channels, *grid) z-scored per channel, params (B, num_params), dt (B,) physical; it returns
    (B, out_channels, *grid) in the same normalized units."""

    spatial_dims: int
    """1 or 2 grid axes."""
    in_channels: int
    """State channels × `history`, then any extra inputs a stage adds (a refiner's noised state), zeros where absent."""
    out_channels: int
    num_params: int
    grid: tuple[int, ...]
    """Points per grid axis."""
    channels: tuple[str, ...] = ()
    """Names of the state's channels (`u`, or `density`, `Vx`, ...)."""
    param_names: tuple[str, ...] = ()
    """Names of the columns of `params`, in order."""
    periodic: tuple[bool, ...] = ()
    """Per grid axis: whether the domain wraps around."""
    history: int = 1
    """Past frames stacked along the channels (1 for every shipped spec)."""


@dataclass(frozen=True, kw_only=True)
class Trajectories:
    """What a format's `read(path, cfg)` returns, at the file's native resolution (the platform subsamples)."""

    states: Any
    """(N, T, C, *grid): an array, or anything indexable by trajectory that reads lazily (an h5py dataset). Steady
    data: the solutions, T = 1."""
    dt: float
    """Physical time between frames (steady data: any value, e.g. 1.0)."""
    channels: tuple[str, ...]
    coords: tuple[Any, ...]
    """One 1-D array of positions per grid axis."""
    params: dict[str, Any] = field(default_factory=dict)
    """PDE parameter name → (N,) values (or a scalar shared by every trajectory)."""
    family: str | None = None
    """A catalogue family (it gives the parameter scalings and the solver baseline), or None: no solver baseline."""
    inputs: Any = None
    """Steady data: (N, C_in, *grid) inputs (coefficients, forcing); None for trajectories."""
    attrs: dict[str, Any] = field(default_factory=dict)
    """Anything else the file says (shown by `ups-exp data`)."""


@dataclass(frozen=True, kw_only=True)
class MetricContext:
    """What a metric plugin `fn(pred, true, ctx) -> (B,)` knows besides the two tensors (B, T, C, *grid)."""

    dt: float
    grid: tuple[int, ...]
    coords: tuple[Any, ...]
    channels: tuple[str, ...]
    task: str | None
    params: dict[str, Any]
    """PDE parameter name → (B,) values of these samples."""
    u0: Any
    """(B, C, *grid): the last given frame (the rollout starts from it)."""
