"""What a registered model needs besides ups: the plugins (model kinds) its predictor is built from, recorded in
its config.json and its MLflow requirements, and checked before it is loaded."""

from __future__ import annotations

from typing import Any

from ups import catalog


def plugins_of(specs: list) -> list[dict[str, Any]]:
    """The non-built-in model kinds of a lineage: their name, what builds them, and the installed package (with
    its version) that provides them, when one does."""
    out, seen = [], set()
    for spec in specs:
        row = catalog.get("models", spec.model.kind)
        if row.source == catalog.BUILT_IN or row.name in seen:
            continue
        seen.add(row.name)
        out.append(
            {"table": "models", "name": row.name, "build": row.build, "distribution": row.distribution}
        )
    return out


def require_plugins(plugins: list[dict[str, Any]]) -> None:
    """Raise one line naming what to install when a plugin a model needs cannot be imported."""
    for p in plugins or ():
        try:
            catalog.load(p["build"])
        except catalog.CatalogError:
            dist = p.get("distribution")
            what = f"pip install '{dist}'" if dist else f"put the module of {p['build']} on PYTHONPATH"
            raise RuntimeError(
                f"this model is built by the plugin model {p['name']!r} ({p['build']}), which cannot be imported "
                f"here: {what}"
            ) from None
