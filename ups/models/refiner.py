"""PDE-Refiner's refinement (Lippe et al. 2023) on top of a frozen one-step operator.

Legend: B batch, C fields, X grid points, P PDE parameters, K denoising steps. Everything the refiner sees and
returns is in the operator's normalized units (z = (u − mean) / std).

Inference: ẑ⁰ = operator(u_t); for k in the predictor's steps: z̃ = ẑ + σ_k ε, ẑ = z̃ − σ_k R(z_t, z̃, k), with
σ_k = σ_min^(k/K). The refiner predicts the noise; a consistency-distilled student is a refiner run at fewer steps.
"""

from __future__ import annotations

import torch
from torch import nn

from ups.models.config import OperatorConfig
from ups.models.operator import LatentNet, LatentOperator, rollout


def noise_level(k: int, *, num_steps: int, sigma_min: float) -> float:
    """σ_k = σ_min^(k/K): from about σ_min^(1/K) (k = 1) down to σ_min (k = K)."""
    return sigma_min ** (k / num_steps)


class Refiner(LatentNet):
    """R(z_t, z̃, k) → the noise in z̃, conditioned on the PDE parameters, Δt and k/K."""

    def __init__(self, cfg: OperatorConfig, *, num_fields: int = 1, num_params: int = 1) -> None:
        super().__init__(cfg, in_fields=2 * num_fields, out_fields=num_fields, cond_inputs=num_params + 2)

    def forward(
        self,
        z_t: torch.Tensor,
        z_noisy: torch.Tensor,
        level: torch.Tensor,
        params: torch.Tensor,
        dt: torch.Tensor,
    ) -> torch.Tensor:
        """z_t, z_noisy: (B, C, X); level: (B,) = k/K; params (B, P); dt (B,). Returns ε̂ (B, C, X)."""
        cond = torch.cat([params, dt.view(-1, 1), level.view(-1, 1)], dim=1)  # (B, P + 2)
        return self.trunk(torch.cat([z_t, z_noisy], dim=1), cond)


class RefinedOperator(nn.Module):
    """The operator's prediction refined at `steps` (a subset of 1..K; all of them for the refiner itself).

    Noise comes from torch's global generator: seed it (e.g. in `torch.random.fork_rng`) for repeatable output.
    """

    def __init__(
        self,
        operator: LatentOperator,
        refiner: Refiner,
        *,
        num_steps: int,
        sigma_min: float,
        steps: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.operator, self.refiner = operator, refiner
        self.num_steps, self.sigma_min = num_steps, sigma_min
        self.steps = tuple(steps or range(1, num_steps + 1))
        if not all(1 <= k <= num_steps for k in self.steps):
            raise ValueError(
                f"`1 <= k <= num_steps` must hold for every step, got (steps={self.steps}, num_steps={num_steps})"
            )

    def sigma(self, k: int) -> float:
        return noise_level(k, num_steps=self.num_steps, sigma_min=self.sigma_min)

    def refine_step(
        self, z_t, z, k: int, params, dt, refiner: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One denoising step at level k: (the noised input z̃, the refined ẑ), both (B, C, X)."""
        sigma = self.sigma(k)
        z_noisy = z + sigma * torch.randn_like(z)
        level = torch.full((z.shape[0],), k / self.num_steps, device=z.device, dtype=z.dtype)
        return z_noisy, z_noisy - sigma * (refiner or self.refiner)(z_t, z_noisy, level, params, dt)

    def forward(self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """u: (B, C, X) physical state → the refined next state (B, C, X)."""
        op = self.operator
        z_t = op.normalize(u)
        z = op.normalize(op(u, params, dt))
        for k in self.steps:
            _, z = self.refine_step(z_t, z, k, params, dt)
        return op.denormalize(z)

    def rollout(self, u0: torch.Tensor, params: torch.Tensor, dt: torch.Tensor, steps: int) -> torch.Tensor:
        return rollout(self, u0, params, dt, steps)


def student_steps(num_steps: int, num_evals: int) -> tuple[int, ...]:
    """The levels a distilled student evaluates: the first (largest) noise level, then one midway."""
    return (1,) if num_evals == 1 else (1, num_steps // 2 + 1)
