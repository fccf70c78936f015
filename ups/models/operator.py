"""The latent operator (kind `latent_operator`) for 1D and 2D fields.

Legend: B batch, C channels, *grid one or two grid axes (X or X, Y), *tokens the latent grid (grid / patch_size per
axis), D latent channels, P PDE parameters, M Fourier modes per axis.

grid (+ sin/cos of each periodic coordinate) → encoder (patchify: p or p × p patches) → latent tokens → processor
blocks (spectral + pointwise mixing, FiLM-conditioned on the PDE parameters and Δt) → decoder (unpatchify +
smoothing convolution, circular along periodic axes) → an update of the state (the last layer starts at zero, so
the operator starts as the identity). Inputs and outputs are in the platform's normalized units (ups.models.wrap).
In 2D the spectral mixing keeps the M × M lowest modes of both signs along the first axis (FNO's two corners).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ups.models.config import LatentOperatorConfig
from ups.models.layers import conv_class, phase_channels, pointwise
from ups.plugin import ModelIO


class SpectralMixing(nn.Module):
    """Learned complex weights on the lowest `num_modes` Fourier modes of the token grid (per axis)."""

    def __init__(self, dim: int, num_modes: int, dims: int = 1) -> None:
        super().__init__()
        self.num_modes, self.dims = num_modes, dims
        scale = 1.0 / dim
        shape = (dim, dim, num_modes, 2) if dims == 1 else (dim, dim, 2, num_modes, num_modes, 2)
        self.weight = nn.Parameter(scale * torch.randn(*shape))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        m, w = self.num_modes, torch.view_as_complex(self.weight)  # (D, D, M) or (D, D, 2, M, M)
        if self.dims == 1:
            n = h.shape[-1]
            spec = torch.fft.rfft(h.float(), dim=-1)  # (B, D, N//2+1), FFTs stay in fp32
            out = torch.zeros_like(spec)
            out[..., :m] = torch.einsum("bim,iom->bom", spec[..., :m], w)
            return torch.fft.irfft(out, n=n, dim=-1).to(h.dtype)  # (B, D, N)
        size = h.shape[-2:]
        spec = torch.fft.rfft2(h.float())  # (B, D, Nx, Ny//2+1)
        out = torch.zeros_like(spec)
        # contiguous corners: einsum on a strided complex view is ~40× slower
        out[..., :m, :m] = torch.einsum("bixy,ioxy->boxy", spec[..., :m, :m].contiguous(), w[:, :, 0])
        out[..., -m:, :m] = torch.einsum("bixy,ioxy->boxy", spec[..., -m:, :m].contiguous(), w[:, :, 1])
        return torch.fft.irfft2(out, s=size).to(h.dtype)  # (B, D, Nx, Ny)


class ProcessorBlock(nn.Module):
    """Pre-norm residual block: FiLM(cond) → spectral + pointwise mixing → FiLM(cond) → MLP."""

    fsdp_unit = True
    """Under FSDP each block is its own shard unit."""

    def __init__(self, cfg: LatentOperatorConfig, dims: int = 1) -> None:
        super().__init__()
        d = cfg.latent_dim
        self.norm1 = nn.GroupNorm(1, d)
        self.norm2 = nn.GroupNorm(1, d)
        self.film = nn.Linear(cfg.cond_dim, 4 * d)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.spectral = SpectralMixing(d, cfg.num_modes, dims)
        self.pointwise = pointwise(dims, d, d)
        self.mlp = nn.Sequential(
            pointwise(dims, d, cfg.mlp_ratio * d), nn.GELU(), pointwise(dims, cfg.mlp_ratio * d, d)
        )

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        film = self.film(cond).view(*cond.shape[:1], -1, *([1] * (h.ndim - 2)))
        s1, b1, s2, b2 = film.chunk(4, dim=1)  # each (B, D, 1[, 1])
        z = self.norm1(h) * (1 + s1) + b1
        h = h + F.gelu(self.spectral(z) + self.pointwise(z))  # (B, D, *tokens)
        z = self.norm2(h) * (1 + s2) + b2
        return h + self.mlp(z)


class LatentOperator(nn.Module):
    """module(z, params, dt) → the next state (B, out_channels, *grid), normalized; `increment` is the update alone."""

    starts_at_zero = True
    """`increment` is exactly zero at initialization (its last layer starts at zero)."""

    def __init__(self, cfg: LatentOperatorConfig, io: ModelIO) -> None:
        super().__init__()
        dims = io.spatial_dims
        if dims not in (1, 2):
            raise ValueError(f"latent_operator is built for 1D and 2D grids, got spatial_dims={dims}")
        self.cfg, self.out_channels, self.residual = cfg, io.out_channels, cfg.residual
        d, p = cfg.latent_dim, cfg.patch_size
        conv = conv_class(dims)
        self.encoder = nn.Sequential(
            conv(io.in_channels + 2 * dims, d, kernel_size=p, stride=p), nn.GELU(), pointwise(dims, d, d)
        )
        self.cond = nn.Sequential(
            nn.Linear(io.num_params + 1, cfg.cond_dim), nn.GELU(), nn.Linear(cfg.cond_dim, cfg.cond_dim)
        )
        self.blocks = nn.ModuleList(ProcessorBlock(cfg, dims) for _ in range(cfg.num_layers))
        w, k = cfg.decoder_dim, cfg.decoder_kernel
        self.decoder = conv_class(dims, transposed=True)(d, w, kernel_size=p, stride=p)
        # 1D smooths circularly whatever the boundary (as trained before 2D existed); 2D pads as the axes wrap
        wrap = dims == 1 or all(io.periodic or (True,))
        self.head = nn.Sequential(
            nn.GELU(),
            conv(w, w, k, padding=k // 2, padding_mode="circular" if wrap else "zeros"),
            nn.GELU(),
            pointwise(dims, w, io.out_channels),
        )
        nn.init.zeros_(self.head[-1].weight)  # start at zero: the identity map, or no correction
        nn.init.zeros_(self.head[-1].bias)

    def increment(self, z: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """z: (B, C_in, *grid) normalized fields; params: (B, P); dt: (B,). Returns (B, C_out, *grid)."""
        coords = phase_channels(tuple(z.shape[2:]), z.shape[0], z)  # (B, 2·dims, *grid)
        h = self.encoder(torch.cat([z, coords], dim=1))  # (B, D, *tokens)
        c = self.cond(torch.cat([params, dt.view(-1, 1).to(params.dtype)], dim=1))  # (B, cond_dim)
        for block in self.blocks:
            h = block(h, c)
        return self.head(self.decoder(h))  # (B, C_out, *grid)

    def forward(self, z: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        delta = self.increment(z, params, dt)
        return z[:, : self.out_channels] + delta if self.residual else delta


def build(cfg: dict, io: ModelIO) -> LatentOperator:
    return LatentOperator(LatentOperatorConfig(**cfg), io)


def rollout(step, u0: torch.Tensor, params: torch.Tensor, dt: torch.Tensor, steps: int) -> torch.Tensor:
    """Feed a one-step predictor its own output `steps` times: (B, C, *grid) → (B, steps, C, *grid)."""
    states = []
    u = u0
    for _ in range(steps):
        u = step(u, params, dt)
        states.append(u)
    return torch.stack(states, dim=1)
