"""Steady-state prior: (coefficient a, forcing f) → solution u of −(a u′)′ = f.

Legend: B batch, X grid points, P PDE parameters. Inputs are log a and f, normalized with training statistics
(buffers, so they travel with the state_dict); the output is u in physical units.
"""

from __future__ import annotations

import torch

from ups.models.config import OperatorConfig
from ups.models.operator import LatentNet


class SteadyNet(LatentNet):
    def __init__(self, cfg: OperatorConfig, *, num_params: int = 1) -> None:
        super().__init__(cfg, in_fields=2, out_fields=1, cond_inputs=num_params)
        self.register_buffer("input_mean", torch.zeros(2))
        self.register_buffer("input_std", torch.ones(2))
        self.register_buffer("output_mean", torch.zeros(1))
        self.register_buffer("output_std", torch.ones(1))

    def set_normalization(self, inputs: torch.Tensor, outputs: torch.Tensor) -> None:
        """inputs: (N, 2, X) training (log a, f); outputs: (N, 1, X) training u."""
        self.input_mean.copy_(inputs.mean(dim=(0, 2)))
        self.input_std.copy_(inputs.std(dim=(0, 2)).clamp_min(1e-8))
        self.output_mean.copy_(outputs.mean(dim=(0, 2)))
        self.output_std.copy_(outputs.std(dim=(0, 2)).clamp_min(1e-8))

    def forward(self, a: torch.Tensor, f: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """a, f: (B, X) coefficient (> 0) and forcing; params: (B, P). Returns u (B, X)."""
        x = torch.stack([a.log(), f], dim=1)  # (B, 2, X)
        z = (x - self.input_mean.view(1, 2, 1)) / self.input_std.view(1, 2, 1)
        out = self.trunk(z, params)[:, 0]  # (B, X)
        return self.output_mean + self.output_std * out
