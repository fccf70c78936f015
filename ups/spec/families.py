"""Checks of a family's own data settings, named by the catalogue's family rows (`FamilyRow.checks`)."""

from __future__ import annotations

from typing import Any

from ups.spec.stages import Require


def check_ks(data: Any, prefix: str, require: Require) -> None:
    """Kuramoto–Sivashinsky draws each trajectory's domain length L from U[length_low, length_high]."""
    low, high = data.length_low, data.length_high
    if low is not None and high is not None:
        require(
            0 < low <= high,
            f"{prefix}length_high",
            f"`0 < length_low <= length_high` must hold, got (length_low={low}, length_high={high})",
            high,
        )
