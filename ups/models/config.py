"""Model configs: torch-free dataclasses, so specs can be validated without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class OperatorConfig:
    """Latent operator: grid → latent tokens → conditioned processor → grid, as a residual update."""

    kind: Literal["operator"] = "operator"
    """Model family (only `operator` exists so far)."""
    patch_size: int = 4
    """Grid points per latent token; `data.num_points` must be a multiple of it."""
    latent_dim: int = 64
    """Channels of a latent token."""
    num_layers: int = 4
    """Processor blocks."""
    num_modes: int = 16
    """Fourier modes mixed along the token axis in each block (at most tokens // 2 + 1)."""
    cond_dim: int = 32
    """Width of the embedding of the PDE parameters and Δt that modulates every block (FiLM)."""
    mlp_ratio: int = 2
    """Hidden width of each block's pointwise MLP, as a multiple of `latent_dim`."""
    decoder_dim: int = 32
    """Channels per grid point after unpatchifying (the full-resolution part is the costly one)."""
    decoder_kernel: int = 5
    """Width of the periodic convolution that smooths patch boundaries after decoding."""
