"""The `model:` section of a spec: a kind from the catalogue and that model's own settings.

A model row names its settings' dataclass (`ModelRow.config`, or `build.Config`); the spec's schema for `model:` is
that dataclass plus `kind`, made once per kind, so OmegaConf checks the keys and their types like any other part of
the spec. A model without a settings class takes its keys unchecked (each passed to `build` as given).
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any

from ups import catalog

DEFAULT_KIND = "latent_operator"


def settings_class(kind: str) -> type | None:
    """The settings dataclass of a model kind (None when it has none)."""
    row = catalog.get("models", kind)
    if row.config:
        cls = catalog.load(row.config)
    else:
        cls = getattr(catalog.load(row.build), "Config", None)
    if cls is not None and not dataclasses.is_dataclass(cls):
        raise catalog.CatalogError(f"the settings of model {row.name!r} must be a dataclass", got=repr(cls))
    return cls


def spec_class(kind: str, extra: tuple[str, ...] = ()) -> type:
    """The schema of `model:` for `kind`: its settings dataclass with a `kind` field (and, for a model without a
    settings class, one untyped field per key the spec gives it: `extra`). One class per kind (and keys)."""
    name = catalog.canonical("models", kind)
    return _spec_class(name, () if settings_class(name) is not None else tuple(extra))


@cache
def _spec_class(name: str, extra: tuple[str, ...]) -> type:
    base = settings_class(name)
    fields: list[Any] = [("kind", str, dataclasses.field(default=name))]
    if base is None:
        fields += [(key, Any, dataclasses.field(default=None)) for key in extra if key != "kind"]
        return dataclasses.make_dataclass(f"{_ident(name)}_model", fields, frozen=True, kw_only=True)
    frozen = base.__dataclass_params__.frozen  # type: ignore[attr-defined]
    return dataclasses.make_dataclass(
        f"{_ident(name)}_model", fields, bases=(base,), frozen=frozen, kw_only=True
    )


def _ident(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def default_model() -> Any:
    return spec_class(DEFAULT_KIND)()


def settings(model: Any) -> dict[str, Any]:
    """What `build(cfg, io)` is given: the model's own settings, without `kind`, defaults filled in."""
    return {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.name != "kind"}
