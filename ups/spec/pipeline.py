"""`stages:` specs: a chain of stages that share the spec's top-level keys as defaults.

    stages:
      - operator                                   # a kind with its defaults
      - {name: refiner, kind: diffusion_residual, model: operator_tiny, train: {lr: 3.0e-4}, num_steps: 3}
      - {kind: consistency_distill, search_space: consistency_distill}

An entry's `train` is merged onto the top-level `train`; `model`, `search_space` and `eval` replace theirs; other
keys are the stage's own settings. `key=value` overrides apply to every stage; `stages.NAME.key=value` to one.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ups.spec.errors import SpecError
from ups.spec.load import ResolvedPipeline, compose, parse_overrides

_ENTRY_KEYS = ("name", "kind", "model", "train", "eval", "search_space", "init")


def _entries(raw: Any, spec_file: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise SpecError(
            "must be a non-empty list of stages", file=spec_file, key="stages", got=raw,
            hint="e.g. stages: [operator, diffusion_residual, consistency_distill]",
        )  # fmt: skip
    entries = []
    for i, entry in enumerate(raw):
        if isinstance(entry, str):
            entry = {"kind": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
            raise SpecError(
                "each stage must be a kind or a mapping with `kind:`",
                file=spec_file,
                key=f"stages.{i}",
                got=entry,
            )
        entry = dict(entry)
        entry.setdefault("name", entry["kind"])
        entries.append(entry)
    names = [e["name"] for e in entries]
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name or "/" in name or name in names[:i]:
            raise SpecError("stage names must be unique, non-empty, without '/'", file=spec_file,
                            key=f"stages.{i}.name", got=name)  # fmt: skip
    return entries


def load_pipeline(
    path: Path, raw: dict[str, Any], overrides: list[str] | tuple[str, ...]
) -> ResolvedPipeline:
    spec_file = str(path)
    if "stage" in raw:
        raise SpecError("give `stage:` or `stages:`, not both", file=spec_file, key="stage")
    if raw.get("init") is not None:
        raise SpecError(
            "a pipeline starts each stage from its own source: give `init` inside the stage it starts",
            file=spec_file,
            key="init",
            hint="stages: [{kind: operator, init: {from: RUN_ID}}, ...] or stages.NAME.init.from=... on the command line",
        )
    entries = _entries(raw["stages"], spec_file)
    names = [e["name"] for e in entries]
    shared, own = [], {n: [] for n in names}
    for item in overrides:
        key = item.partition("=")[0]
        if key.startswith("stages."):
            _, name, rest = key.split(".", 2) if key.count(".") >= 2 else (None, key, "")
            if name not in own or not rest:
                raise SpecError("`stages.NAME.key=value` must name a stage", file="command line", got=item,
                                hint=f"Stages: {', '.join(names)}")  # fmt: skip
            own[name].append(item.split(".", 2)[2])
        elif key.strip() in ("init", "init.from"):
            raise SpecError("a pipeline starts each stage from its own source: name the stage",
                            file="command line", got=item, hint=f"stages.{names[0]}.init.from=...")  # fmt: skip
        else:
            shared.append(item)
    parse_overrides(shared)  # malformed overrides fail here, once
    resolved = []
    for i, entry in enumerate(entries):
        body = copy.deepcopy({k: v for k, v in raw.items() if k != "stages"})
        stage = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
        body["stage"] = {"kind": entry["kind"], **stage}
        for key in ("model", "eval", "search_space", "init"):
            if key in entry:
                body[key] = entry[key]
        if "train" in entry:
            train = body.get("train") or {}
            if not isinstance(entry["train"], dict) or not isinstance(train, dict):
                raise SpecError(
                    "must be a mapping", file=spec_file, key=f"stages.{i}.train", got=entry["train"]
                )
            body["train"] = {**train, **entry["train"]}
        try:
            resolved.append(compose(path, body, [*shared, *own[entry["name"]]], in_pipeline=True))
        except SpecError as exc:
            raise SpecError(f"stage {entry['name']!r}: {exc.render()}") from None
    return ResolvedPipeline(path=path, overrides=tuple(overrides), names=tuple(names), stages=tuple(resolved))
