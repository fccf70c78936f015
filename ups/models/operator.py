"""Latent neural operator for 1D fields.

Legend: B batch, C fields, X grid points, N latent tokens (X / patch_size), D latent channels,
P PDE parameters, M Fourier modes.

grid → encoder (patchify) → N tokens → processor blocks (spectral + pointwise mixing, FiLM-conditioned on
the PDE parameters and Δt) → decoder (unpatchify + periodic smoothing) → residual update of the state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ups.models.config import OperatorConfig


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

    def __init__(self, cfg: OperatorConfig) -> None:
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
    """Maps u(t) to u(t + Δt) for a batch of 1D states, conditioned on PDE parameters and Δt.

    Normalization statistics (from the training split) are buffers, so they travel with the state_dict.
    """

    def __init__(self, cfg: OperatorConfig, *, num_fields: int = 1, num_params: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        d, p = cfg.latent_dim, cfg.patch_size
        self.register_buffer("field_mean", torch.zeros(num_fields))
        self.register_buffer("field_std", torch.ones(num_fields))
        # inputs: the fields + sin/cos of the periodic coordinate
        self.encoder = nn.Sequential(
            nn.Conv1d(num_fields + 2, d, kernel_size=p, stride=p), nn.GELU(), nn.Conv1d(d, d, 1)
        )
        self.cond = nn.Sequential(
            nn.Linear(num_params + 1, cfg.cond_dim), nn.GELU(), nn.Linear(cfg.cond_dim, cfg.cond_dim)
        )
        self.blocks = nn.ModuleList(ProcessorBlock(cfg) for _ in range(cfg.num_layers))
        w, k = cfg.decoder_dim, cfg.decoder_kernel
        self.decoder = nn.ConvTranspose1d(d, w, kernel_size=p, stride=p)
        self.head = nn.Sequential(
            nn.GELU(),
            nn.Conv1d(w, w, k, padding=k // 2, padding_mode="circular"),
            nn.GELU(),
            nn.Conv1d(w, num_fields, 1),
        )
        nn.init.zeros_(self.head[-1].weight)  # start as the identity map (persistence)
        nn.init.zeros_(self.head[-1].bias)

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.field_mean.copy_(mean)
        self.field_std.copy_(std.clamp_min(1e-8))

    def forward(self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """u: (B, C, X) physical state; params: (B, P) PDE parameters (log10-scaled); dt: (B,). Returns (B, C, X)."""
        b, _, x = u.shape
        mean = self.field_mean.view(1, -1, 1)
        std = self.field_std.view(1, -1, 1)
        z = (u - mean) / std  # (B, C, X)
        phase = 2 * math.pi * (torch.arange(x, device=u.device, dtype=u.dtype) + 0.5) / x
        coords = torch.stack([phase.sin(), phase.cos()]).expand(b, 2, x)  # (B, 2, X)
        h = self.encoder(torch.cat([z, coords], dim=1))  # (B, D, N)
        cond = self.cond(torch.cat([params, dt.view(-1, 1)], dim=1))  # (B, cond_dim)
        for block in self.blocks:
            h = block(h, cond)
        delta = self.head(self.decoder(h))  # (B, C, X)
        return u + std * delta

    def rollout(self, u0: torch.Tensor, params: torch.Tensor, dt: torch.Tensor, steps: int) -> torch.Tensor:
        """Autoregressive prediction of `steps` states after u0: (B, C, X) → (B, steps, C, X)."""
        states = []
        u = u0
        for _ in range(steps):
            u = self(u, params, dt)
            states.append(u)
        return torch.stack(states, dim=1)
