"""The latent operator (kind `latent_operator`) for 1D fields.

Legend: B batch, C channels, X grid points, N latent tokens (X / patch_size), D latent channels, P PDE parameters,
M Fourier modes.

grid (+ sin/cos of the periodic coordinate) → encoder (patchify) → N tokens → processor blocks (spectral + pointwise
mixing, FiLM-conditioned on the PDE parameters and Δt) → decoder (unpatchify + periodic smoothing) → an update of
the state (the last layer starts at zero, so the operator starts as the identity). Inputs and outputs are in the
platform's normalized units (ups.models.wrap).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ups.models.config import LatentOperatorConfig
from ups.plugin import ModelIO


class SpectralMixing(nn.Module):
    """Learned complex weights on the lowest `num_modes` Fourier modes along the token axis."""

    def __init__(self, dim: int, num_modes: int) -> None:
        super().__init__()
        self.num_modes = num_modes
        scale = 1.0 / dim
        self.weight = nn.Parameter(scale * torch.randn(dim, dim, num_modes, 2))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n = h.shape[-1]
        spec = torch.fft.rfft(h.float(), dim=-1)  # (B, D, N//2+1), FFTs stay in fp32
        w = torch.view_as_complex(self.weight)  # (D, D, M)
        out = torch.zeros_like(spec)
        out[..., : self.num_modes] = torch.einsum("bim,iom->bom", spec[..., : self.num_modes], w)
        return torch.fft.irfft(out, n=n, dim=-1).to(h.dtype)  # (B, D, N)


class ProcessorBlock(nn.Module):
    """Pre-norm residual block: FiLM(cond) → spectral + pointwise mixing → FiLM(cond) → MLP."""

    fsdp_unit = True
    """Under FSDP each block is its own shard unit."""

    def __init__(self, cfg: LatentOperatorConfig) -> None:
        super().__init__()
        d = cfg.latent_dim
        self.norm1 = nn.GroupNorm(1, d)
        self.norm2 = nn.GroupNorm(1, d)
        self.film = nn.Linear(cfg.cond_dim, 4 * d)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.spectral = SpectralMixing(d, cfg.num_modes)
        self.pointwise = nn.Conv1d(d, d, 1)
        self.mlp = nn.Sequential(
            nn.Conv1d(d, cfg.mlp_ratio * d, 1), nn.GELU(), nn.Conv1d(cfg.mlp_ratio * d, d, 1)
        )

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        s1, b1, s2, b2 = self.film(cond).unsqueeze(-1).chunk(4, dim=1)  # each (B, D, 1)
        z = self.norm1(h) * (1 + s1) + b1
        h = h + F.gelu(self.spectral(z) + self.pointwise(z))  # (B, D, N)
        z = self.norm2(h) * (1 + s2) + b2
        return h + self.mlp(z)


class LatentOperator(nn.Module):
    """module(z, params, dt) → the next state (B, out_channels, X), normalized; `increment` is the update alone."""

    starts_at_zero = True
    """`increment` is exactly zero at initialization (its last layer starts at zero)."""

    def __init__(self, cfg: LatentOperatorConfig, io: ModelIO) -> None:
        super().__init__()
        if io.spatial_dims != 1:
            raise ValueError(f"latent_operator is built for 1D grids, got spatial_dims={io.spatial_dims}")
        self.cfg, self.out_channels, self.residual = cfg, io.out_channels, cfg.residual
        d, p = cfg.latent_dim, cfg.patch_size
        self.encoder = nn.Sequential(
            nn.Conv1d(io.in_channels + 2, d, kernel_size=p, stride=p), nn.GELU(), nn.Conv1d(d, d, 1)
        )
        self.cond = nn.Sequential(
            nn.Linear(io.num_params + 1, cfg.cond_dim), nn.GELU(), nn.Linear(cfg.cond_dim, cfg.cond_dim)
        )
        self.blocks = nn.ModuleList(ProcessorBlock(cfg) for _ in range(cfg.num_layers))
        w, k = cfg.decoder_dim, cfg.decoder_kernel
        self.decoder = nn.ConvTranspose1d(d, w, kernel_size=p, stride=p)
        self.head = nn.Sequential(
            nn.GELU(),
            nn.Conv1d(w, w, k, padding=k // 2, padding_mode="circular"),
            nn.GELU(),
            nn.Conv1d(w, io.out_channels, 1),
        )
        nn.init.zeros_(self.head[-1].weight)  # start at zero: the identity map, or no correction
        nn.init.zeros_(self.head[-1].bias)

    def increment(self, z: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """z: (B, C_in, X) normalized fields; params: (B, P); dt: (B,). Returns (B, C_out, X)."""
        b, _, x = z.shape
        phase = 2 * math.pi * (torch.arange(x, device=z.device, dtype=z.dtype) + 0.5) / x
        coords = torch.stack([phase.sin(), phase.cos()]).expand(b, 2, x)  # (B, 2, X)
        h = self.encoder(torch.cat([z, coords], dim=1))  # (B, D, N)
        c = self.cond(torch.cat([params, dt.view(-1, 1).to(params.dtype)], dim=1))  # (B, cond_dim)
        for block in self.blocks:
            h = block(h, c)
        return self.head(self.decoder(h))  # (B, C_out, X)

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
