"""The PDE-parameter vector a model is conditioned on, and its layout (feature names, in order).

Every checkpoint and registered model stores its layout, so adding a family never changes how an existing model
loads or what it is fed. A layout is a tuple of feature names: `family:<name>` is a one-hot entry; the others are
scaled parameters (each feature's scaling is part of its name's definition below and never changes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from ups.spec.schema import FAMILIES

FAMILY_PARAMS: dict[str, tuple[str, ...]] = {
    "burgers1d": ("nu",),
    "advection1d": ("beta",),
    "reaction_diffusion1d": ("nu", "rho"),
    "ks1d": ("L",),
    "steady_diffusion1d": (),
}
"""The PDE parameters each family has (`L`, the Kuramoto–Sivashinsky domain length, varies per trajectory)."""

_SCALED: dict[str, tuple[str, Callable[[float], float]]] = {
    "log10_nu": ("nu", math.log10),
    "beta": ("beta", float),
    "log10_1p_rho": ("rho", lambda rho: math.log10(1 + rho)),
    "ks_length": ("L", lambda length: length / 64.0 - 1.0),
}
"""Feature → (the parameter it scales, how). Append only: a feature's meaning is part of stored models."""

_UNSCALED: dict[str, Callable[[float], float]] = {
    "log10_nu": lambda v: 10.0**v,
    "beta": float,
    "log10_1p_rho": lambda v: 10.0**v - 1,
    "ks_length": lambda v: 64.0 * (v + 1.0),
}
"""Feature → the parameter's value back from the feature (the inverse of `_SCALED`)."""

LEGACY_LAYOUT = (
    "family:burgers1d",
    "family:advection1d",
    "family:reaction_diffusion1d",
    "log10_nu",
    "beta",
    "log10_1p_rho",
)
"""The layout of every model trained before layouts were stored (and of any spec of these three families)."""


def layout_for(families: Iterable[str]) -> tuple[str, ...]:
    """One-hot entries for the spec's families, then the scaled parameters they have, in a fixed order."""
    present = set(families)
    if present <= {"burgers1d", "advection1d", "reaction_diffusion1d"}:
        return LEGACY_LAYOUT  # what these families have always been fed
    onehot = [f"family:{f}" for f in FAMILIES if f in present]
    wanted = {p for f in present for p in FAMILY_PARAMS[f]}
    return (*onehot, *(name for name, (param, _) in _SCALED.items() if param in wanted))


def param_vector(layout: Iterable[str], family: str, params: dict[str, float]) -> list[float]:
    """The conditioning vector of one sample; a parameter the family lacks is 0."""
    out = []
    for feature in layout:
        if feature.startswith("family:"):
            out.append(float(feature == f"family:{family}"))
            continue
        param, scale = _SCALED[feature]
        value = params.get(param)
        out.append(scale(value) if value else 0.0)
    return out


def parameter_from(layout: Iterable[str], vectors, param: str) -> list[float]:
    """One PDE parameter of every sample back from its conditioning vectors (N, P), e.g. KS's `L`."""
    layout = list(layout)
    feature = next((f for f, (p, _) in _SCALED.items() if p == param and f in layout), None)
    if feature is None:
        raise KeyError(f"the layout {layout} has no feature for {param!r}")
    column = layout.index(feature)
    return [_UNSCALED[feature](float(row[column])) for row in vectors]
