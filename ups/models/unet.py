"""A modern U-Net (kind `unet`, as in PDEArena's), for 1 or 2 grid axes.

Legend: B batch, C channels, *grid one or two grid axes, W width, D conditioning width.

lift → per level: residual blocks (group norm, GELU, convolution, FiLM on (params, Δt)), then a strided
convolution that halves the grid → a middle block → per level, in reverse: a transposed convolution that doubles
the grid, the level's skip concatenated, residual blocks → norm, GELU, a pointwise projection that starts at zero.
Convolutions pad circularly along periodic axes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ups.models.config import UNetConfig
from ups.models.layers import FiLM, PaddedConv, conv_class, embedding, pointwise
from ups.plugin import ModelIO


class ResBlock(nn.Module):
    fsdp_unit = True

    def __init__(self, cin: int, cout: int, cfg: UNetConfig, dims: int, periodic: tuple[bool, ...]) -> None:
        super().__init__()
        groups = cfg.norm_groups
        self.norm1 = nn.GroupNorm(groups if cin % groups == 0 else 1, cin)
        self.conv1 = PaddedConv(dims, cin, cout, cfg.kernel, periodic)
        self.film = FiLM(cfg.cond_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = PaddedConv(dims, cout, cout, cfg.kernel, periodic)
        self.skip = pointwise(dims, cin, cout) if cin != cout else nn.Identity()

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = self.film(self.conv1(F.gelu(self.norm1(h))), cond)
        x = self.conv2(F.gelu(self.norm2(x)))
        return x + self.skip(h)


class UNet(nn.Module):
    starts_at_zero = True
    """`increment` is exactly zero at initialization (its last layer starts at zero)."""

    def __init__(self, cfg: UNetConfig, io: ModelIO) -> None:
        super().__init__()
        dims = io.spatial_dims
        periodic = tuple(io.periodic) or (True,) * dims
        self.cfg, self.out_channels, self.residual = cfg, io.out_channels, cfg.residual
        widths = [cfg.width * m for m in cfg.multipliers]
        self.lift = PaddedConv(dims, io.in_channels, widths[0], cfg.kernel, periodic)
        self.cond = embedding(io.num_params + 1, cfg.cond_dim)
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        cin = widths[0]
        for level, w in enumerate(widths):
            self.down.append(nn.ModuleList(ResBlock(cin if i == 0 else w, w, cfg, dims, periodic)
                                           for i in range(cfg.blocks_per_level)))  # fmt: skip
            cin = w
            if level < len(widths) - 1:
                self.pool.append(conv_class(dims)(w, w, kernel_size=2, stride=2))
        self.middle = ResBlock(widths[-1], widths[-1], cfg, dims, periodic)
        self.up = nn.ModuleList()
        self.unpool = nn.ModuleList()
        for level in range(len(widths) - 1, -1, -1):
            w = widths[level]
            if level < len(widths) - 1:
                self.unpool.append(conv_class(dims, transposed=True)(cin, w, kernel_size=2, stride=2))
            self.up.append(nn.ModuleList(ResBlock(2 * w if i == 0 else w, w, cfg, dims, periodic)
                                         for i in range(cfg.blocks_per_level)))  # fmt: skip
            cin = w
        self.norm = nn.GroupNorm(cfg.norm_groups, widths[0])
        self.head = pointwise(dims, widths[0], io.out_channels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def increment(self, z: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """z: (B, C_in, *grid) normalized; params (B, P); dt (B,). Returns (B, C_out, *grid)."""
        c = self.cond(torch.cat([params, dt.view(-1, 1).to(params.dtype)], dim=1))  # (B, D)
        h = self.lift(z)
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, c)
            skips.append(h)
            if level < len(self.pool):
                h = self.pool[level](h)  # half the grid
        h = self.middle(h, c)
        for i, blocks in enumerate(self.up):
            if i > 0:
                h = self.unpool[i - 1](h)  # twice the grid
            h = torch.cat([h, skips[-1 - i]], dim=1)
            for block in blocks:
                h = block(h, c)
        return self.head(F.gelu(self.norm(h)))

    def forward(self, z: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        delta = self.increment(z, params, dt)
        return z[:, : self.out_channels] + delta if self.residual else delta


def build(cfg: dict, io: ModelIO) -> UNet:
    return UNet(UNetConfig(**cfg), io)
