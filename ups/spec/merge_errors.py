"""OmegaConf's merge errors → one-line `SpecError`s that name the file, the dotted key and the fix."""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from ups.spec.errors import SpecError, did_you_mean, user_key
from ups.spec.schema import Spec


def _fields_at(dotted: str) -> list[str] | None:
    """Field names of the schema node that holds `dotted`'s last part (for did-you-mean)."""
    cls: Any = Spec
    for part in dotted.split(".")[:-1]:
        if not dataclasses.is_dataclass(cls):
            return None
        types = {f.name: f.default_factory for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        factory = types.get(part)
        if factory is None or factory is dataclasses.MISSING:
            return None
        cls = factory
    if not dataclasses.is_dataclass(cls):
        return None
    return [f.name for f in dataclasses.fields(cls)]


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return ...
        node = node[part]
    return node


def translate_error(exc: OmegaConfBaseException, source: str, layer: dict[str, Any]) -> SpecError:
    key = str(getattr(exc, "full_key", "") or "") or None
    msg = str(getattr(exc, "msg", None) or exc).splitlines()[0]
    got = _lookup(layer, key) if key else ...
    if isinstance(exc, ConfigKeyError) or "not in" in msg:
        name = key.split(".")[-1] if key else ""
        fields = _fields_at(key) if key else None
        parent = key.rpartition(".")[0] if key else ""
        if fields:  # as users write them (`init.from`, not the schema's `init.source`)
            fields = [user_key(f"{parent}.{f}").rpartition(".")[2] if parent else f for f in fields]
        hint = did_you_mean(name, fields) if fields else None
        return SpecError("unknown key", file=source, key=key, hint=hint)
    if "expected one of" in msg:
        choices = msg.split("expected one of", 1)[1].strip(" []").replace("'", "").split(", ")
        return SpecError(
            "not one of the choices", file=source, key=key, got=got, hint=did_you_mean(got, choices)
        )
    if "could not be converted to" in msg:
        wanted = msg.rsplit("converted to", 1)[1].strip().lower()
        article = "an" if wanted[:1] in "aeiou" else "a"
        return SpecError(f"wrong type, expected {article} {wanted}", file=source, key=key, got=got)
    if "Cannot merge" in msg or "Cannot assign" in msg or "ValidationError" in type(exc).__name__:
        return SpecError(f"wrong type ({msg})", file=source, key=key, got=got)
    return SpecError(msg, file=source, key=key, got=got)


def locate_error(merged: Any, exc: OmegaConfBaseException, source: str, layer: dict[str, Any]) -> SpecError:
    """Some merge errors carry no key (e.g. `train: 3`): find the top-level key that fails alone."""
    if getattr(exc, "full_key", None):
        return translate_error(exc, source, layer)
    for key, value in layer.items():
        try:
            OmegaConf.merge(merged, {key: value})
        except OmegaConfBaseException:
            expected = (
                "a mapping" if isinstance(getattr(merged, key, None), dict | type(merged)) else "a scalar"
            )
            return SpecError(f"wrong type, expected {expected}", file=source, key=str(key), got=value)
    return translate_error(exc, source, layer)
