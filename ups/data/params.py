"""The PDE-parameter vector a model is conditioned on, and its layout (feature names, in order).

Every checkpoint and registered model stores its layout, so adding a family never changes how an existing model
loads or what it is fed. A layout is a tuple of feature names:
- `family:<name>`: a one-hot entry;
- a fixed scaling of a family's parameter (`log10_nu`; the scalings below are part of stored models, never changed);
- `z:<param>:<mean>:<std>`: any other parameter (a plugin family's, or one a data file gives), z-scored with the
  training split's statistics, which the name carries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from ups import catalog

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

_LEGACY_FAMILIES = {e.removeprefix("family:") for e in LEGACY_LAYOUT if e.startswith("family:")}


def family_params(family: str | None) -> tuple:
    """A family's parameters (catalogue rows); none for data without a family."""
    return catalog.get("families", family).params if family else ()


def zscored(name: str, mean: float, std: float) -> str:
    return f"z:{name}:{mean!r}:{std!r}"


def layout_for(
    families: Iterable[str | None], extra: dict[str, tuple[float, float]] | None = None
) -> tuple[str, ...]:
    """One-hot entries for the families (catalogue order), then their parameters' fixed scalings (in `_SCALED`'s
    order), then z-scored entries for `extra` parameters (name → (train mean, train std)), in name order."""
    present = {f for f in families if f}
    if present and present <= _LEGACY_FAMILIES and not extra:
        return LEGACY_LAYOUT  # what these families have always been fed
    order = list(catalog.rows("families"))
    onehot = [f"family:{f}" for f in order if f in present] if len(present) > 1 or present else []
    wanted = {p.feature for f in present for p in family_params(f) if p.feature}
    scaled = [name for name in _SCALED if name in wanted]
    z = [zscored(n, *extra[n]) for n in sorted(extra or {})]
    return (*onehot, *scaled, *z)


def unscaled_params(family: str | None) -> list[str]:
    """A family's parameters that have no fixed scaling (z-scored when a model is conditioned on them)."""
    return [p.name for p in family_params(family) if not p.feature]


def param_vector(layout: Iterable[str], family: str | None, params: dict[str, float]) -> list[float]:
    """The conditioning vector of one sample; a parameter the sample lacks is 0 (its mean, when z-scored)."""
    out = []
    for feature in layout:
        if feature.startswith("family:"):
            out.append(float(feature == f"family:{family}"))
        elif feature.startswith("z:"):
            _, name, mean, std = feature.split(":")
            value = params.get(name)
            out.append((float(value) - float(mean)) / float(std) if value is not None else 0.0)
        else:
            param, scale = _SCALED[feature]
            value = params.get(param)
            out.append(scale(value) if value else 0.0)
    return out


def parameter_from(layout: Iterable[str], vectors, param: str) -> list[float]:
    """One PDE parameter of every sample back from its conditioning vectors (N, P), e.g. KS's `L`."""
    layout = list(layout)
    for column, feature in enumerate(layout):
        if feature.startswith("z:"):
            _, name, mean, std = feature.split(":")
            if name == param:
                return [float(row[column]) * float(std) + float(mean) for row in vectors]
        elif feature in _SCALED and _SCALED[feature][0] == param:
            return [_UNSCALED[feature](float(row[column])) for row in vectors]
    raise KeyError(f"the layout {layout} has no feature for {param!r}")


def param_names(layout: Iterable[str]) -> tuple[str, ...]:
    """Readable names of a layout's columns (ModelIO.param_names)."""
    names = []
    for feature in layout:
        if feature.startswith("z:"):
            names.append(feature.split(":")[1])
        elif feature.startswith("family:"):
            names.append(feature)
        else:
            names.append(_SCALED[feature][0])
    return tuple(names)
