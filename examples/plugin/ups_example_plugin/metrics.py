"""`max_abs_error`: the largest pointwise error of each sample over the evaluated frames (lower is better)."""

from __future__ import annotations

import torch


def max_abs_error(pred: torch.Tensor, true: torch.Tensor, ctx) -> torch.Tensor:
    """pred, true (B, T, C, *grid) in physical units → (B,)."""
    return (pred - true).abs().flatten(1).amax(dim=1)


max_abs_error.higher_is_better = False
