"""What the platform puts around a model: physical units in and out.

A model works in normalized units (each channel z-scored with train statistics, which are buffers here, so they
travel with every checkpoint, export and registered model). A model that adds its input as a residual and exposes
`increment` (the built-ins do) is applied as `u + std · increment(z)`, the same arithmetic as the residual in
physical units.

Legend: B batch, C channels, *grid one or two grid axes, P PDE parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from ups.models.operator import rollout


def _channels_view(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.view(1, -1, *([1] * (ndim - 2)))


def output_of(net: nn.Module, z: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """What a stage that wants an output that does not start as the input (a correction, a solution) takes from a
    model: its `increment` when it has one and adds a residual, else its output."""
    if getattr(net, "residual", False) and hasattr(net, "increment"):
        return net.increment(z, params, dt)
    return net(z, params, dt)


class Normalized(nn.Module):
    """A one-step predictor in physical units: u (B, C, *grid) → the next state (B, C, *grid)."""

    def __init__(self, net: nn.Module, channels: int) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("field_mean", torch.zeros(channels))
        self.register_buffer("field_std", torch.ones(channels))

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.field_mean.copy_(mean)
        self.field_std.copy_(std.clamp_min(1e-8))

    def normalize(self, u: torch.Tensor) -> torch.Tensor:
        return (u - _channels_view(self.field_mean, u.ndim)) / _channels_view(self.field_std, u.ndim)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * _channels_view(self.field_std, z.ndim) + _channels_view(self.field_mean, z.ndim)

    def forward(self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        z = self.normalize(u)
        net = self.net
        if getattr(net, "residual", False) and hasattr(net, "increment"):
            return u + _channels_view(self.field_std, u.ndim) * net.increment(z, params, dt)
        return self.denormalize(net(z, params, dt))

    def rollout(self, u0: torch.Tensor, params: torch.Tensor, dt: torch.Tensor, steps: int) -> torch.Tensor:
        """Autoregressive prediction of `steps` states after u0: (B, C, *grid) → (B, steps, C, *grid)."""
        return rollout(self, u0, params, dt, steps)


class SteadyPredictor(nn.Module):
    """inputs (B, C_in, *grid) → the steady solution (B, C_out, *grid), both physical. Input channels may be
    transformed first (`log` for a positive coefficient); inputs and outputs are z-scored per channel."""

    def __init__(
        self, net: nn.Module, in_channels: int, out_channels: int, transforms: tuple[str | None, ...]
    ):
        super().__init__()
        self.net = net
        self.transforms = tuple(transforms) or (None,) * in_channels
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))
        self.register_buffer("output_mean", torch.zeros(out_channels))
        self.register_buffer("output_std", torch.ones(out_channels))

    def transformed(self, inputs: torch.Tensor) -> torch.Tensor:
        parts = [x.log() if t == "log" else x for x, t in zip(inputs.unbind(1), self.transforms)]
        return torch.stack(parts, dim=1)

    def set_normalization(self, inputs: torch.Tensor, outputs: torch.Tensor) -> None:
        """inputs (N, C_in, *grid) as given (before transforms); outputs (N, C_out, *grid)."""
        x = self.transformed(inputs)
        dims = (0, *range(2, x.ndim))
        self.input_mean.copy_(x.mean(dim=dims))
        self.input_std.copy_(x.std(dim=dims).clamp_min(1e-8))
        self.output_mean.copy_(outputs.mean(dim=dims))
        self.output_std.copy_(outputs.std(dim=dims).clamp_min(1e-8))

    def forward(self, inputs: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        x = self.transformed(inputs)
        z = (x - _channels_view(self.input_mean, x.ndim)) / _channels_view(self.input_std, x.ndim)
        dt = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        out = output_of(self.net, z, params, dt)
        return _channels_view(self.output_mean, out.ndim) + _channels_view(self.output_std, out.ndim) * out
