"""The built-in models' settings: torch-free dataclasses (the catalogue names them, so `validate` checks a spec's
`model:` keys without importing torch). Each has `check(io)`, the rules that depend on the data's shapes."""

from __future__ import annotations

from dataclasses import dataclass, field


def _positive(cfg, names: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(n, f"must be >= 1, got {getattr(cfg, n)}") for n in names if getattr(cfg, n) < 1]


@dataclass(frozen=True, kw_only=True)
class LatentOperatorConfig:
    """Latent operator: grid → patch tokens → conditioned processor → grid, as a residual update."""

    patch_size: int = 4
    """Grid points per latent token along each axis; the grid must be a multiple of it."""
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
    residual: bool = True
    """Predict the next state as the input state plus a learned update (the last layer starts at zero)."""

    def check(self, io) -> list[tuple[str, str]]:
        out = _positive(
            self,
            ("patch_size", "latent_dim", "num_layers", "num_modes", "cond_dim", "mlp_ratio", "decoder_dim",
             "decoder_kernel"),
        )  # fmt: skip
        if self.decoder_kernel % 2 == 0:
            out.append(("decoder_kernel", f"must be odd, got {self.decoder_kernel}"))
        if io.spatial_dims not in (1, 2):
            out.append(
                ("kind", f"latent_operator is built for 1D and 2D grids; this data has {io.spatial_dims}")
            )
        for n in io.grid:
            tokens = n // self.patch_size
            # 1D (and 2D's last, real-FFT axis): up to tokens // 2 + 1 modes; 2D's first axis keeps modes of both
            # signs, which must not overlap
            most = tokens // 2 + 1 if io.spatial_dims == 1 else tokens // 2
            if n % self.patch_size:
                out.append(("patch_size", f"must divide the grid's {n} points, got {self.patch_size}"))
            elif self.num_modes > most:
                out.append(
                    ("num_modes", f"must be <= {most} for {tokens} tokens per axis (= {n} points / patch_size "
                     f"{self.patch_size}) in {io.spatial_dims}D, got {self.num_modes}")
                )  # fmt: skip
        return out


@dataclass(frozen=True, kw_only=True)
class FNOConfig:
    """Fourier neural operator (Li et al. 2021): lift, spectral convolutions plus pointwise skips, project."""

    width: int = 32
    """Channels of the lifted field."""
    num_layers: int = 4
    """Fourier layers."""
    num_modes: int = 16
    """Fourier modes kept per axis (at most points // 2 + 1 on the last axis, points // 2 on the others)."""
    cond_dim: int = 32
    """Width of the embedding of the PDE parameters and Δt; each layer gets a FiLM scale and shift from it."""
    projection_dim: int = 64
    """Hidden channels of the pointwise projection back to the state's channels."""
    positions: bool = True
    """Append each point's position (sin and cos of its phase per axis) to the input channels."""
    residual: bool = True
    """Predict the next state as the input state plus a learned update (the last layer starts at zero)."""

    def check(self, io) -> list[tuple[str, str]]:
        out = _positive(self, ("width", "num_layers", "num_modes", "cond_dim", "projection_dim"))
        for axis, n in enumerate(io.grid):
            most = n // 2 + 1 if axis == len(io.grid) - 1 else n // 2
            if self.num_modes > most:
                out.append(
                    ("num_modes", f"must be <= {most} for an axis of {n} points, got {self.num_modes}")
                )
        return out


@dataclass(frozen=True, kw_only=True)
class UNetConfig:
    """A modern U-Net (as in PDEArena): residual blocks with group norm, GELU and FiLM, strided down-sampling,
    transposed up-sampling, skip connections; circular padding along periodic axes."""

    width: int = 32
    """Channels at the finest level."""
    multipliers: list[int] = field(default_factory=lambda: [1, 2, 2])
    """Channels of each level as a multiple of `width`; each level after the first halves the grid."""
    blocks_per_level: int = 1
    """Residual blocks per level, on the way down and on the way up."""
    cond_dim: int = 32
    """Width of the embedding of the PDE parameters and Δt (FiLM in every block)."""
    kernel: int = 3
    """Convolution width (odd)."""
    norm_groups: int = 8
    """Groups of the group norms (must divide every level's channels)."""
    residual: bool = True
    """Predict the next state as the input state plus a learned update (the last layer starts at zero)."""

    def check(self, io) -> list[tuple[str, str]]:
        out = _positive(self, ("width", "blocks_per_level", "cond_dim", "kernel", "norm_groups"))
        if not self.multipliers or any(m < 1 for m in self.multipliers):
            out.append(("multipliers", f"must be a non-empty list of integers >= 1, got {self.multipliers}"))
            return out
        if self.kernel % 2 == 0:
            out.append(("kernel", f"must be odd, got {self.kernel}"))
        if any((self.width * m) % self.norm_groups for m in self.multipliers):
            out.append(
                (
                    "norm_groups",
                    f"must divide every level's channels (width x multipliers), got {self.norm_groups}",
                )
            )
        factor = 2 ** (len(self.multipliers) - 1)
        for n in io.grid:
            if n % factor:
                out.append(
                    (
                        "multipliers",
                        f"{len(self.multipliers)} levels need a grid divisible by {factor}; an axis has {n} points",
                    )
                )
        return out
