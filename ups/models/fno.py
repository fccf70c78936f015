"""Fourier neural operator (Li et al. 2021), kind `fno`, for 1 or 2 grid axes.

Legend: B batch, C channels, *grid one or two grid axes, W width, M modes per axis, D conditioning width.

lift (pointwise, with the positions appended) → L layers of [spectral convolution on the lowest M modes per axis
+ pointwise skip, FiLM on (params, Δt), GELU] → pointwise projection (its last layer starts at zero). Spectral
weights are stored as real tensors (…, 2) so every optimizer and checkpoint handles them. FFTs run in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ups.models.config import FNOConfig
from ups.models.layers import FiLM, embedding, phase_channels, pointwise
from ups.plugin import ModelIO


class SpectralConv(nn.Module):
    """A learned complex linear map on the lowest `modes` Fourier modes of each axis (the others are dropped)."""

    fsdp_unit = True

    def __init__(self, channels: int, modes: int, dims: int) -> None:
        super().__init__()
        self.modes, self.dims = modes, dims
        blocks = 2 ** (dims - 1)  # 2D: the positive and the negative frequencies of the first axis
        shape = (blocks, channels, channels, *([modes] * dims), 2)
        self.weight = nn.Parameter(torch.randn(shape) / (channels * channels) ** 0.5)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        grid = h.shape[2:]
        axes = tuple(range(-self.dims, 0))
        spec = torch.fft.rfftn(h.float(), dim=axes)  # (B, W, *grid with the last axis halved)
        w = torch.view_as_complex(self.weight)  # (blocks, W, W, M[, M])
        m = self.modes
        out = torch.zeros_like(spec)
        if self.dims == 1:
            out[..., :m] = torch.einsum("bix,iox->box", spec[..., :m], w[0])
        else:
            # contiguous corners: einsum on a strided complex view is ~40× slower (measured at 64², width 32)
            out[..., :m, :m] = torch.einsum("bixy,ioxy->boxy", spec[..., :m, :m].contiguous(), w[0])
            out[..., -m:, :m] = torch.einsum("bixy,ioxy->boxy", spec[..., -m:, :m].contiguous(), w[1])
        return torch.fft.irfftn(out, s=grid, dim=axes).to(h.dtype)  # (B, W, *grid)


class FNO(nn.Module):
    starts_at_zero = True
    """`increment` is exactly zero at initialization (its last layer starts at zero)."""

    def __init__(self, cfg: FNOConfig, io: ModelIO) -> None:
        super().__init__()
        dims, w = io.spatial_dims, cfg.width
        self.cfg, self.out_channels, self.residual, self.dims = cfg, io.out_channels, cfg.residual, dims
        extra = 2 * dims if cfg.positions else 0
        self.lift = pointwise(dims, io.in_channels + extra, w)
        self.cond = embedding(io.num_params + 1, cfg.cond_dim)
        self.spectral = nn.ModuleList(SpectralConv(w, cfg.num_modes, dims) for _ in range(cfg.num_layers))
        self.skips = nn.ModuleList(pointwise(dims, w, w) for _ in range(cfg.num_layers))
        self.films = nn.ModuleList(FiLM(cfg.cond_dim, w) for _ in range(cfg.num_layers))
        self.project = nn.Sequential(
            pointwise(dims, w, cfg.projection_dim),
            nn.GELU(),
            pointwise(dims, cfg.projection_dim, io.out_channels),
        )
        nn.init.zeros_(self.project[-1].weight)
        nn.init.zeros_(self.project[-1].bias)

    def increment(self, z: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """z: (B, C_in, *grid) normalized; params (B, P); dt (B,). Returns (B, C_out, *grid)."""
        if self.cfg.positions:
            z = torch.cat([z, phase_channels(tuple(z.shape[2:]), z.shape[0], z)], dim=1)
        c = self.cond(torch.cat([params, dt.view(-1, 1).to(params.dtype)], dim=1))  # (B, D)
        h = self.lift(z)  # (B, W, *grid)
        last = len(self.spectral) - 1
        for i, (spectral, skip, film) in enumerate(zip(self.spectral, self.skips, self.films)):
            h = film(spectral(h) + skip(h), c)
            if i < last:
                h = F.gelu(h)
        return self.project(h)

    def forward(self, z: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        delta = self.increment(z, params, dt)
        return z[:, : self.out_channels] + delta if self.residual else delta


def build(cfg: dict, io: ModelIO) -> FNO:
    return FNO(FNOConfig(**cfg), io)
