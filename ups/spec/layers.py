"""Reading the layers a spec is composed of: YAML files, `key=value` overrides, multi-task entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from ups.spec.errors import SpecError, did_you_mean, schema_key
from ups.spec.paths import ConfigPath

COMMAND_LINE = "command line"

FILE_KEYS = ("family", "num_points", "dt", "num_frames")
"""Data settings a data block sets for its generator: with a file (`path`), they yield to the file's unless the spec
or the command line sets them."""


def read_yaml_mapping(path: Path, *, key: str | None = None) -> dict[str, Any]:
    """A YAML file that must hold a mapping; anything else is a one-line SpecError."""
    if not path.is_file():
        raise SpecError("file not found", file=str(path), key=key)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "parse error"
        raise SpecError(f"not valid YAML: {problem}{where}", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read file: {exc.__class__.__name__}", file=str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(
            "must be a YAML mapping of keys to values",
            file=str(path),
            got=type(data).__name__,
            hint="Start the file with `name: ...`.",
        )
    return data


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`a.b=1` → {"a.b": 1}; values are parsed as YAML scalars (numbers, booleans, null, lists)."""
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(
                "an override must look like key=value", file=COMMAND_LINE, got=item, hint="e.g. train.lr=3e-4"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        parsed[key.strip()] = value
    return parsed


def nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} → {"a": {"b": 1}}; keys written as users write them (`init.from`) land on their schema field."""
    tree: dict[str, Any] = {}
    for key, value in dotted.items():
        key = schema_key(key)
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise SpecError("conflicting overrides", file=COMMAND_LINE, key=key)
            node = nxt
        node[parts[-1]] = value
    return tree


def flatten_tree(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten_tree(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def resolve_tasks(layer: dict[str, Any], configs: ConfigPath, source: str) -> dict[str, Any]:
    """`data.tasks: [{name, from: BLOCK, ...}]`: each task is its data block with the task's keys on top."""
    data = layer.get("data")
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, list):
        return layer
    resolved = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise SpecError(
                "each task must be a mapping like {name: NAME, from: BLOCK}",
                file=source,
                key=f"data.tasks.{i}",
                got=task,
            )
        task = dict(task)
        name = task.pop("from", None)
        if name is not None:
            choices = configs.blocks("data")
            if name not in choices:
                raise SpecError(
                    "unknown data block",
                    file=source,
                    key=f"data.tasks.{i}.from",
                    got=name,
                    hint=did_you_mean(str(name), choices),
                )
            block = read_yaml_mapping(configs.block("data", name))
            block.pop("tasks", None)
            if task.get("path") is not None:  # a file: the block's generator settings yield to the file's
                for key in FILE_KEYS:
                    block.pop(key, None)
                    task.setdefault(key, None)
            task = OmegaConf.to_container(OmegaConf.merge(block, task))
        resolved.append(task)
    return {**layer, "data": {**data, "tasks": resolved}}
