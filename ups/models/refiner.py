"""PDE-Refiner's refinement (Lippe et al. 2023) on top of a frozen one-step operator, with any catalogue model as
the refiner's network.

Legend: B batch, C channels, *grid one or two grid axes, P PDE parameters, K denoising steps. Everything the
refiner sees and returns is in the operator's normalized units (z = (u − mean) / std).

Inference: ẑ⁰ = operator(u_t); for k in the predictor's steps: z̃ = ẑ + σ_k ε, ẑ = z̃ − σ_k R(z_t, z̃, k), with
σ_k = σ_min^(k/K). The refiner predicts the noise; a consistency-distilled student is a refiner run at fewer steps.

The network F is called as F([z_t, x] (B, 2C, *grid), [params, k/K] (B, P + 1), dt): the noise level is one more
parameter column. How R uses it (`refiner_input`):
- `residual` (default): x = (z̃ − ẑ⁰)/σ_k, the noised input's deviation from the frozen operator's prediction in
  units of the noise, and R = x − g·F. The product g·F starts at zero (a model whose output starts at zero, as the
  built-ins' does, gets g = 1; any other a gate g that starts at zero): every step then returns ẑ⁰ exactly, so the
  refiner starts as the operator and learns the operator's remaining error at each noise level.
- `state`: the paper's parametrization, x = z̃ and R = g·F.
"""

from __future__ import annotations

import torch
from torch import nn

from ups.models.operator import rollout
from ups.models.wrap import Normalized, output_of

REFINER_INPUTS = ("residual", "state")


def noise_level(k: int, *, num_steps: int, sigma_min: float) -> float:
    """σ_k = σ_min^(k/K): from about σ_min^(1/K) (k = 1) down to σ_min (k = K)."""
    return sigma_min ** (k / num_steps)


class Refiner(nn.Module):
    """R(z_t, z̃, k) → the noise in z̃, conditioned on the PDE parameters, Δt and k/K."""

    def __init__(self, net: nn.Module, *, refiner_input: str = "residual") -> None:
        super().__init__()
        if refiner_input not in REFINER_INPUTS:
            raise ValueError(f"`refiner_input` must be one of {REFINER_INPUTS}, got {refiner_input!r}")
        self.net = net
        self.residual_input = refiner_input == "residual"
        # the refiner starts as the operator: a net whose output starts at zero (the built-ins say so) needs no
        # gate; any other is multiplied by a gate that starts at zero (it learns first, then the net does)
        start = 1.0 if getattr(net, "starts_at_zero", False) else 0.0
        self.gate = nn.Parameter(torch.tensor(start))

    def forward(
        self,
        z_t: torch.Tensor,
        z_noisy: torch.Tensor,
        z_op: torch.Tensor,
        level: torch.Tensor,
        sigma: torch.Tensor,
        params: torch.Tensor,
        dt: torch.Tensor,
    ) -> torch.Tensor:
        """z_t, z_noisy, z_op (the operator's prediction): (B, C, *grid); level: (B,) = k/K; sigma: (B,) = σ_k;
        params (B, P); dt (B,). Returns ε̂ (B, C, *grid)."""
        cond = torch.cat([params, level.view(-1, 1).to(params.dtype)], dim=1)  # (B, P + 1)
        if not self.residual_input:
            return self.gate * output_of(self.net, torch.cat([z_t, z_noisy], dim=1), cond, dt)
        shape = (-1, *([1] * (z_t.ndim - 1)))
        x = (z_noisy - z_op) / sigma.view(shape)  # ε plus the operator's error in units of σ_k
        return x - self.gate * output_of(self.net, torch.cat([z_t, x], dim=1), cond, dt)


class RefinedOperator(nn.Module):
    """The operator's prediction refined at `steps` (a subset of 1..K; all of them for the refiner itself).

    Noise comes from torch's global generator: seed it (e.g. in `torch.random.fork_rng`) for repeatable output.
    """

    def __init__(
        self,
        operator: Normalized,
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
        self, z_t, z, z_op, k: int, params, dt, refiner: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One denoising step at level k from ẑ = `z` (z_op: the operator's prediction ẑ⁰): (the noised input z̃,
        the refined ẑ), both (B, C, *grid)."""
        sigma = self.sigma(k)
        z_noisy = z + sigma * torch.randn_like(z)
        level = torch.full((z.shape[0],), k / self.num_steps, device=z.device, dtype=z.dtype)
        sigmas = torch.full_like(level, sigma)
        eps = (refiner or self.refiner)(z_t, z_noisy, z_op, level, sigmas, params, dt)
        return z_noisy, z_noisy - sigma * eps

    def operator_step(self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor):
        """(z_t, ẑ⁰): the normalized state and the operator's normalized prediction, both (B, C, *grid)."""
        op = self.operator
        return op.normalize(u), op.normalize(op(u, params, dt))

    def forward(self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """u: (B, C, *grid) physical state → the refined next state (B, C, *grid)."""
        z_t, z_op = self.operator_step(u, params, dt)
        z = z_op
        for k in self.steps:
            _, z = self.refine_step(z_t, z, z_op, k, params, dt)
        return self.operator.denormalize(z)

    def rollout(self, u0: torch.Tensor, params: torch.Tensor, dt: torch.Tensor, steps: int) -> torch.Tensor:
        return rollout(self, u0, params, dt, steps)


def student_steps(num_steps: int, num_evals: int) -> tuple[int, ...]:
    """The levels a distilled student evaluates: the first (largest) noise level, then one midway."""
    return (1,) if num_evals == 1 else (1, num_steps // 2 + 1)


class PDERefiner(Normalized):
    """PDE-Refiner as published (Lippe et al. 2023): ONE network F for k = 0..K, in normalized units.

    F is called as F([z_t, x] (B, 2C, *grid), [params, k/K] (B, P + 1), dt). At k = 0, x = 0 and F's output is
    the next state ẑ⁰ (a model that adds its input as a residual adds z_t). At k ≥ 1, x = z̃ = ẑ + σ_k ε and F's
    correction (`output_of`: its increment, without the residual) is the noise ε̂; ẑ ← z̃ − σ_k ε̂.
    `steps` are the refinement levels run at inference (all of 1..K by default; () is the k = 0 prediction alone).
    Noise comes from torch's global generator: seed it for repeatable output.
    """

    def __init__(
        self,
        net: nn.Module,
        channels: int,
        *,
        num_steps: int,
        sigma_min: float,
        steps: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(net, channels)
        self.num_steps, self.sigma_min = num_steps, sigma_min
        self.steps = tuple(range(1, num_steps + 1) if steps is None else steps)
        if not all(1 <= k <= num_steps for k in self.steps):
            raise ValueError(
                f"`1 <= k <= num_steps` must hold for every step, got (steps={self.steps}, num_steps={num_steps})"
            )

    def sigma(self, k: int) -> float:
        return noise_level(k, num_steps=self.num_steps, sigma_min=self.sigma_min)

    def _cond(self, params: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        return torch.cat([params, level.view(-1, 1).to(params.dtype)], dim=1)  # (B, P + 1)

    def predict_zero(self, z_t: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """k = 0: the next state ẑ⁰ (B, C, *grid) from the normalized state z_t."""
        level = torch.zeros(z_t.shape[0], device=z_t.device, dtype=z_t.dtype)
        return self.net(torch.cat([z_t, torch.zeros_like(z_t)], dim=1), self._cond(params, level), dt)

    def predict_noise(
        self,
        z_t: torch.Tensor,
        z_noisy: torch.Tensor,
        level: torch.Tensor,
        params: torch.Tensor,
        dt: torch.Tensor,
    ) -> torch.Tensor:
        """k ≥ 1: ε̂ (B, C, *grid) in the noised next state z̃; level (B,) = k/K."""
        return output_of(self.net, torch.cat([z_t, z_noisy], dim=1), self._cond(params, level), dt)

    def refine_step(self, z_t, z, k: int, params, dt) -> tuple[torch.Tensor, torch.Tensor]:
        """One denoising step at level k from ẑ = `z`: (the noised input z̃, the refined ẑ), both (B, C, *grid)."""
        sigma = self.sigma(k)
        z_noisy = z + sigma * torch.randn_like(z)
        level = torch.full((z.shape[0],), k / self.num_steps, device=z.device, dtype=z.dtype)
        return z_noisy, z_noisy - sigma * self.predict_noise(z_t, z_noisy, level, params, dt)

    def forward(
        self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor, steps: tuple[int, ...] | None = None
    ) -> torch.Tensor:
        """u: (B, C, *grid) physical state → the refined next state (B, C, *grid)."""
        z_t = self.normalize(u)
        z = self.predict_zero(z_t, params, dt)
        for k in self.steps if steps is None else steps:
            _, z = self.refine_step(z_t, z, k, params, dt)
        return self.denormalize(z)


class AtSteps(nn.Module):
    """A PDERefiner evaluated at other refinement levels (its weights shared, not copied): e.g. () for the k = 0
    prediction alone."""

    def __init__(self, model: PDERefiner, steps: tuple[int, ...]) -> None:
        super().__init__()
        self.model, self.steps = model, tuple(steps)

    def forward(self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        return self.model(u, params, dt, steps=self.steps)

    def rollout(self, u0: torch.Tensor, params: torch.Tensor, dt: torch.Tensor, steps: int) -> torch.Tensor:
        return rollout(self, u0, params, dt, steps)


def pde_student_steps(num_evals: int) -> tuple[int, ...]:
    """The levels a student distilled from a PDERefiner runs after its k = 0 prediction: none (1 evaluation) or
    the first (2 evaluations)."""
    return () if num_evals == 1 else (1,)


class DistilledPDERefiner(nn.Module):
    """A student distilled from a PDERefiner (`refiner`, run at its student's levels), as a one-step predictor."""

    def __init__(self, refiner: PDERefiner) -> None:
        super().__init__()
        self.refiner = refiner

    def forward(self, u: torch.Tensor, params: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        return self.refiner(u, params, dt)

    def rollout(self, u0: torch.Tensor, params: torch.Tensor, dt: torch.Tensor, steps: int) -> torch.Tensor:
        return rollout(self, u0, params, dt, steps)
