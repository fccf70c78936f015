"""`tiny_conv`: a small residual convolutional network, for 1D or 2D grids.

Legend: B batch, C channels, *grid one or two grid axes, P PDE parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ups import ModelIO


@dataclass
class Config:
    """What a spec's `model:` may set for `kind: tiny_conv` (ups checks the keys and their types against it)."""

    width: int = 16
    """Channels of the hidden layers."""
    layers: int = 3
    """Convolutions (each followed by GELU, and shifted by the conditioning)."""
    kernel: int = 5
    """Convolution width (odd)."""

    def check(self, io: ModelIO) -> list[tuple[str, str]]:
        """Optional: rules that depend on the data's shapes, as (key, problem) pairs."""
        problems = []
        if self.kernel % 2 == 0:
            problems.append(("kernel", f"must be odd, got {self.kernel}"))
        if self.width < 1 or self.layers < 1:
            problems.append(("width", "width and layers must be >= 1"))
        return problems


class TinyConv(nn.Module):
    def __init__(self, cfg: Config, io: ModelIO) -> None:
        super().__init__()
        conv = nn.Conv1d if io.spatial_dims == 1 else nn.Conv2d
        self.out_channels = io.out_channels
        self.cond = nn.Linear(io.num_params + 1, cfg.width)  # the PDE parameters and Δt
        self.lift = conv(
            io.in_channels, cfg.width, cfg.kernel, padding=cfg.kernel // 2, padding_mode="circular"
        )
        self.hidden = nn.ModuleList(
            conv(cfg.width, cfg.width, cfg.kernel, padding=cfg.kernel // 2, padding_mode="circular")
            for _ in range(cfg.layers - 1)
        )
        self.out = conv(cfg.width, io.out_channels, 1)
        nn.init.zeros_(self.out.weight)  # start as "no change": training then only has to learn the update
        nn.init.zeros_(self.out.bias)

    def forward(self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """u (B, C_in, *grid) normalized; params (B, P); dt (B,) → the next state (B, C_out, *grid), normalized."""
        shift = self.cond(torch.cat([params, dt[:, None]], dim=1))  # (B, width)
        shift = shift.view(*shift.shape, *([1] * (u.ndim - 2)))
        h = torch.nn.functional.gelu(self.lift(u) + shift)
        for layer in self.hidden:
            h = h + torch.nn.functional.gelu(layer(h) + shift)
        return u[:, : self.out_channels] + self.out(h)  # a residual update: this model adds its own


def build(cfg: dict, io: ModelIO) -> nn.Module:
    """What ups calls: `cfg` holds the model's own keys (defaults filled in), `io` the data's shapes."""
    return TinyConv(Config(**cfg), io)


build.Config = Config  # how ups finds the settings class of an entry point's `build`
