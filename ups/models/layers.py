"""Pieces the built-in models share: convolutions for 1 or 2 grid axes with per-axis periodic padding, FiLM
conditioning, and the positional channels of a periodic grid.

Legend: B batch, C channels, *grid one or two grid axes, D conditioning width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def conv_class(dims: int, *, transposed: bool = False) -> type[nn.Module]:
    if dims not in (1, 2):
        raise ValueError(f"`spatial_dims` must be 1 or 2, got {dims}")
    if transposed:
        return nn.ConvTranspose1d if dims == 1 else nn.ConvTranspose2d
    return nn.Conv1d if dims == 1 else nn.Conv2d


def pointwise(dims: int, cin: int, cout: int) -> nn.Module:
    return conv_class(dims)(cin, cout, 1)


class PaddedConv(nn.Module):
    """A stride-1 convolution that keeps the grid's size: circular padding along periodic axes, zeros elsewhere."""

    def __init__(self, dims: int, cin: int, cout: int, kernel: int, periodic: tuple[bool, ...]) -> None:
        super().__init__()
        self.conv = conv_class(dims)(cin, cout, kernel)
        self.half = kernel // 2
        self.periodic = tuple(periodic) or (True,) * dims

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        dims = h.ndim - 2
        if self.half:
            if all(self.periodic) or not any(self.periodic):  # one pad for every axis
                mode = "circular" if self.periodic[0] else "constant"
                return self.conv(F.pad(h, [self.half] * (2 * dims), mode=mode))
            for axis, wrap in enumerate(reversed(self.periodic)):  # F.pad lists the last axis first
                pad = [0] * (2 * dims)
                pad[2 * axis : 2 * axis + 2] = [self.half, self.half]
                h = F.pad(h, pad, mode="circular" if wrap else "constant")
        return self.conv(h)


class FiLM(nn.Module):
    """Scale and shift per channel from a conditioning vector; starts as the identity (zero-initialized)."""

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """h: (B, C, *grid); cond: (B, D)."""
        scale, shift = self.proj(cond).chunk(2, dim=1)  # (B, C) each
        shape = (*scale.shape, *([1] * (h.ndim - 2)))
        return h * (1 + scale.view(shape)) + shift.view(shape)


def embedding(inputs: int, width: int) -> nn.Module:
    """The conditioning MLP: (PDE parameters, Δt) → (B, width)."""
    return nn.Sequential(nn.Linear(inputs, width), nn.GELU(), nn.Linear(width, width))


def phase_channels(grid: tuple[int, ...], batch: int, like: torch.Tensor) -> torch.Tensor:
    """sin and cos of each point's phase along each axis (a periodic position encoding): (B, 2·dims, *grid)."""
    out = []
    for axis, n in enumerate(grid):
        phase = 2 * math.pi * (torch.arange(n, device=like.device, dtype=like.dtype) + 0.5) / n
        shape = [1] * len(grid)
        shape[axis] = n
        for wave in (phase.sin(), phase.cos()):
            out.append(wave.view(shape).expand(*grid))
    return torch.stack(out).unsqueeze(0).expand(batch, *([-1] * (len(grid) + 1)))
