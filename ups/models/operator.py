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


class LatentNet(nn.Module):
    """The shared trunk: fields (+ sin/cos of the periodic coordinate) → patch tokens → processor blocks
    conditioned on a vector → unpatchify → periodic smoothing → output fields (the last layer starts at zero)."""

    def __init__(self, cfg: OperatorConfig, *, in_fields: int, out_fields: int, cond_inputs: int) -> None:
        super().__init__()
        self.cfg = cfg
        d, p = cfg.latent_dim, cfg.patch_size
        self.encoder = nn.Sequential(
            nn.Conv1d(in_fields + 2, d, kernel_size=p, stride=p), nn.GELU(), nn.Conv1d(d, d, 1)
        )
        self.cond = nn.Sequential(
            nn.Linear(cond_inputs, cfg.cond_dim), nn.GELU(), nn.Linear(cfg.cond_dim, cfg.cond_dim)
        )
        self.blocks = nn.ModuleList(ProcessorBlock(cfg) for _ in range(cfg.num_layers))
        w, k = cfg.decoder_dim, cfg.decoder_kernel
        self.decoder = nn.ConvTranspose1d(d, w, kernel_size=p, stride=p)
        self.head = nn.Sequential(
            nn.GELU(),
            nn.Conv1d(w, w, k, padding=k // 2, padding_mode="circular"),
            nn.GELU(),
            nn.Conv1d(w, out_fields, 1),
        )
        nn.init.zeros_(self.head[-1].weight)  # start at zero: the identity map, or no correction
        nn.init.zeros_(self.head[-1].bias)

    def trunk(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """z: (B, C_in, X) normalized fields; cond: (B, cond_inputs). Returns (B, C_out, X)."""
        b, _, x = z.shape
        phase = 2 * math.pi * (torch.arange(x, device=z.device, dtype=z.dtype) + 0.5) / x
        coords = torch.stack([phase.sin(), phase.cos()]).expand(b, 2, x)  # (B, 2, X)
        h = self.encoder(torch.cat([z, coords], dim=1))  # (B, D, N)
        c = self.cond(cond)  # (B, cond_dim)
        for block in self.blocks:
            h = block(h, c)
        return self.head(self.decoder(h))  # (B, C_out, X)


class LatentOperator(LatentNet):
    """Maps u(t) to u(t + Δt) for a batch of 1D states, conditioned on PDE parameters and Δt.

    Normalization statistics (from the training split) are buffers, so they travel with the state_dict.
    """

    def __init__(self, cfg: OperatorConfig, *, num_fields: int = 1, num_params: int = 1) -> None:
        super().__init__(cfg, in_fields=num_fields, out_fields=num_fields, cond_inputs=num_params + 1)
        self.register_buffer("field_mean", torch.zeros(num_fields))
        self.register_buffer("field_std", torch.ones(num_fields))

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.field_mean.copy_(mean)
        self.field_std.copy_(std.clamp_min(1e-8))

    def normalize(self, u: torch.Tensor) -> torch.Tensor:
        return (u - self.field_mean.view(1, -1, 1)) / self.field_std.view(1, -1, 1)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.field_std.view(1, -1, 1) + self.field_mean.view(1, -1, 1)

    def forward(self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """u: (B, C, X) physical state; params: (B, P) PDE parameters (scaled); dt: (B,). Returns (B, C, X)."""
        delta = self.trunk(self.normalize(u), torch.cat([params, dt.view(-1, 1)], dim=1))  # (B, C, X)
        return u + self.field_std.view(1, -1, 1) * delta

    def rollout(self, u0: torch.Tensor, params: torch.Tensor, dt: torch.Tensor, steps: int) -> torch.Tensor:
        """Autoregressive prediction of `steps` states after u0: (B, C, X) → (B, steps, C, X)."""
        return rollout(self, u0, params, dt, steps)


def rollout(step, u0: torch.Tensor, params: torch.Tensor, dt: torch.Tensor, steps: int) -> torch.Tensor:
    """Feed a one-step predictor its own output `steps` times: (B, C, X) → (B, steps, C, X)."""
    states = []
    u = u0
    for _ in range(steps):
        u = step(u, params, dt)
        states.append(u)
    return torch.stack(states, dim=1)
