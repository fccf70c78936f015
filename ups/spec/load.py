"""Compose a spec: schema defaults → block files → spec file → `key=value` overrides.

OmegaConf merges each layer onto the schema (type-checking it); every error is reported against the
file (or the command line) that set the offending key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import (
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from ups.spec.checks import check_spec
from ups.spec.errors import SpecError, did_you_mean
from ups.spec.merge_errors import locate_error, translate_error
from ups.spec.redact import redact, redact_tree
from ups.spec.schema import BLOCK_GROUPS, DEFAULT_BLOCKS, DEFAULTS_EPOCH, Spec, non_default
from ups.spec.search_space import Param, check_sweep, parse_search_space, search_spaces_dir
from ups.training.stages import stage_named

COMMAND_LINE = "command line"


@dataclass(frozen=True)
class ResolvedPipeline:
    """A `stages:` spec: one resolved spec per stage, in order (the upstream run ids are filled in at run time)."""

    path: Path
    overrides: tuple[str, ...]
    names: tuple[str, ...]
    stages: tuple[ResolvedSpec, ...]

    def to_yaml(self) -> str:
        return "\n".join(f"# ---- stage {n}\n{r.to_yaml()}" for n, r in zip(self.names, self.stages))


@dataclass(frozen=True)
class ResolvedSpec:
    """A fully composed, checked spec plus where it came from."""

    spec: Spec
    path: Path
    blocks: dict[str, str | None]
    overrides: tuple[str, ...]
    search_space: tuple[Param, ...] | None = None
    search_space_file: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.spec)

    def to_yaml(self) -> str:
        """The resolved spec as YAML, credentials redacted (what `show` prints and runs log)."""
        header = [f"# resolved from {self.path}"]
        header += [f"#   {g}: {n}" for g, n in self.blocks.items() if n]
        if self.overrides:
            header.append(f"#   overrides: {redact(' '.join(self.overrides))}")
        body = yaml.safe_dump(redact_tree(self.to_dict()), sort_keys=False)
        return "\n".join(header) + "\n" + body

    def fingerprint(self) -> str:
        """Stable hash of the resolved spec: same hash ⇔ same experiment (used by `--resume`).

        Only values that differ from the schema's defaults enter it, so a new version of ups that adds a key (at a
        default that keeps the old behaviour) leaves the hashes of existing runs and studies unchanged; changing a
        default bumps `DEFAULTS_EPOCH`, which changes them all (a test pins the defaults to enforce that).
        """
        canonical = json.dumps(
            {"defaults": DEFAULTS_EPOCH, "spec": self.non_default_dict()}, sort_keys=True, default=str
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def non_default_dict(self) -> dict[str, Any]:
        """The resolved spec without the values that equal their schema default (nested blocks included)."""
        return non_default(self.spec)


def configs_dir(spec_path: Path) -> Path:
    """`$UPS_CONFIGS`, else the nearest `configs/` above the spec, else the one shipped beside the package."""
    if env := os.environ.get("UPS_CONFIGS"):
        return Path(env)
    for parent in [spec_path.resolve().parent, *spec_path.resolve().parents]:
        if (parent / "configs" / "stage").is_dir():
            return parent / "configs"
    return Path(__file__).resolve().parents[2] / "configs"


def available_blocks(configs: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (configs / group).glob("*.yaml"))


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


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in dotted.items():
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


def _resolve_tasks(layer: dict[str, Any], configs: Path, source: str) -> dict[str, Any]:
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
            choices = available_blocks(configs, "data")
            if name not in choices:
                raise SpecError(
                    "unknown data block",
                    file=source,
                    key=f"data.tasks.{i}.from",
                    got=name,
                    hint=did_you_mean(str(name), choices),
                )
            block = read_yaml_mapping(configs / "data" / f"{name}.yaml")
            block.pop("tasks", None)
            task = OmegaConf.to_container(OmegaConf.merge(block, task))
        resolved.append(task)
    return {**layer, "data": {**data, "tasks": resolved}}


def _choose_block(group: str, raw: Any, spec_file: str) -> tuple[str | None, dict[str, Any]]:
    if raw is None:
        return DEFAULT_BLOCKS.get(group), {}
    if isinstance(raw, str):
        return raw, {}
    if isinstance(raw, dict):
        inline = dict(raw)
        if group == "stage":  # a stage's block is its kind; its `from` is the run it builds on
            name = inline.pop("kind", None)
            if "from" in inline:
                inline["upstream"] = inline.pop("from")
            key = "stage.kind"
        else:
            name = inline.pop("from", None)
            key = f"{group}.from"
        if name is not None and not isinstance(name, str):
            raise SpecError("must name a block", file=spec_file, key=key, got=name)
        return name or DEFAULT_BLOCKS.get(group), inline
    raise SpecError(
        "must be a block name or a mapping (`{from: NAME, key: value}`)", file=spec_file, key=group, got=raw
    )


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ResolvedSpec:
    """Load, compose and check a single-stage spec. Raises `SpecError` (one line) for anything wrong."""
    experiment = load_experiment(path, overrides)
    if isinstance(experiment, ResolvedPipeline):
        raise SpecError(
            "this command takes a single-stage spec, and this is a pipeline (`stages:`)",
            file=str(path),
            key="stages",
            hint="Run the pipeline with `ups-exp run`; sweep or promote one stage through a spec with "
            "`stage: {kind: KIND, from: RUN_ID}`.",
        )
    return experiment


def load_experiment(
    path: str | Path, overrides: list[str] | tuple[str, ...] = ()
) -> ResolvedSpec | ResolvedPipeline:
    """A single-stage spec, or a pipeline when the file has `stages:`."""
    path = Path(path)
    raw = read_yaml_mapping(path)
    if "stages" in raw:
        from ups.spec.pipeline import load_pipeline

        return load_pipeline(path, raw, overrides)
    return compose(path, raw, overrides)


def compose(
    path: Path,
    raw: dict[str, Any],
    overrides: list[str] | tuple[str, ...] = (),
    *,
    in_pipeline: bool = False,
) -> ResolvedSpec:
    """Compose one stage's spec from its file's mapping (`raw`) and the command line's overrides."""
    spec_file = str(path)
    dotted = parse_overrides(overrides)
    if "stage.from" in dotted:
        dotted["stage.upstream"] = dotted.pop("stage.from")
    if isinstance(dotted.get("stage.kind"), str):  # a different kind is a different block
        dotted["stage"] = dotted.pop("stage.kind")
    configs = configs_dir(path)

    layers: list[tuple[str, dict[str, Any]]] = []
    blocks: dict[str, str | None] = {}
    body = dict(raw)
    for group in BLOCK_GROUPS:
        choice = body.pop(group, None)
        if isinstance(dotted.get(group), str):  # `data=other_block` on the command line swaps the block
            choice = dotted.pop(group)
        name, inline = _choose_block(group, choice, spec_file)
        blocks[group] = name
        if name is not None:
            choices = available_blocks(configs, group)
            if name not in choices:
                raise SpecError(
                    f"unknown {group} block",
                    file=spec_file,
                    key=group,
                    got=name,
                    hint=did_you_mean(name, choices),
                )
            block_path = configs / group / f"{name}.yaml"
            layers.append((str(block_path), {group: read_yaml_mapping(block_path)}))
        elif group not in DEFAULT_BLOCKS and not inline:
            raise SpecError(
                "missing required value",
                file=spec_file,
                key=group,
                hint=did_you_mean("", available_blocks(configs, group)).replace(
                    "Choices", f"Name a {group} block"
                ),
            )
        if inline:
            body[group] = inline
    layers.append((spec_file, body))
    if dotted:
        layers.append((COMMAND_LINE, _nest(dotted)))
    layers = [(src, _resolve_tasks(layer, configs, src)) for src, layer in layers]

    kind = blocks["stage"] or DEFAULT_BLOCKS["stage"]
    stage = stage_named(kind, file=spec_file)
    merged = OmegaConf.structured(Spec)
    OmegaConf.set_readonly(merged, False)
    merged.stage = OmegaConf.structured(stage.config)  # the kind picks the schema before blocks merge
    provenance: dict[str, str] = {}
    for source, layer in layers:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as exc:
            raise locate_error(merged, exc, source, layer) from None
        provenance.update(dict.fromkeys(flatten_tree(layer), source))
    try:
        spec = OmegaConf.to_object(merged)
    except MissingMandatoryValue as exc:
        raise SpecError(
            "missing required value", file=spec_file, key=str(exc.full_key), hint="Set it in the spec."
        ) from None
    except OmegaConfBaseException as exc:
        raise translate_error(exc, spec_file, {}) from None
    assert isinstance(spec, Spec)
    source = lambda key: provenance.get(key, spec_file)  # noqa: E731
    check_spec(spec, source)
    if stage.consumes and spec.stage.upstream is None and not in_pipeline:
        raise SpecError(
            f"the {kind} stage builds on a trained {stage.consumes} stage: name its run",
            file=spec_file,
            key="stage.from",
            hint=f"stage: {{kind: {kind}, from: RUN_ID}} (or models:/NAME@ALIAS), or chain both in `stages:`.",
        )
    params, space_file = _load_search_space(spec, configs, source)

    def compose(key: str, value: Any) -> None:
        try:
            candidate = OmegaConf.to_object(OmegaConf.merge(merged, _nest({key: value})))
            check_spec(candidate, lambda _k: str(space_file))
        except (OmegaConfBaseException, SpecError) as exc:
            inner = exc.problem if isinstance(exc, SpecError) else str(exc).splitlines()[0]
            raise SpecError(
                f"value {value!r} makes the spec invalid ({inner})", file=str(space_file), key=key
            ) from None

    check_sweep(spec, params, source, compose, str(space_file) if space_file else None)
    return ResolvedSpec(
        spec=spec,
        path=path,
        blocks=blocks,
        overrides=tuple(overrides),
        search_space=tuple(params) if params is not None else None,
        search_space_file=space_file,
    )


def _load_search_space(spec: Spec, configs: Path, source) -> tuple[list[Param] | None, Path | None]:
    if spec.search_space is None:
        return None, None
    folder = Path(os.environ.get("UPS_SEARCH_SPACES", search_spaces_dir(configs)))
    path = folder / f"{spec.search_space}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in folder.glob("*.yaml"))
        raise SpecError(
            "unknown search space",
            file=source("search_space"),
            key="search_space",
            got=spec.search_space,
            hint=did_you_mean(spec.search_space, choices),
        )
    return parse_search_space(read_yaml_mapping(path), str(path), spec), path


def with_values(resolved: ResolvedSpec, values: dict[str, Any]) -> ResolvedSpec:
    """`resolved` with dotted `values` set (a sweep trial), composed in memory from the frozen resolved spec (files
    are not read again) and checked like a spec; a bad value names the search-space file."""
    merged = OmegaConf.structured(resolved.spec)
    OmegaConf.set_readonly(merged, False)
    source = str(resolved.search_space_file or resolved.path)
    try:
        spec = OmegaConf.to_object(OmegaConf.merge(merged, _nest(values)))
    except OmegaConfBaseException as exc:
        raise translate_error(exc, source, _nest(values)) from None
    check_spec(spec, lambda _key: source)
    extra = tuple(f"{k}={json.dumps(v)}" for k, v in values.items())
    return dataclasses.replace(resolved, spec=spec, overrides=(*resolved.overrides, *extra))


def spec_from_dict(data: dict[str, Any]) -> Spec:
    """Rebuild a `Spec` from its `to_dict()` form (e.g. a checkpoint's hyperparameters)."""
    merged = OmegaConf.structured(Spec)
    OmegaConf.set_readonly(merged, False)
    merged.stage = OmegaConf.structured(stage_named(data.get("stage", {}).get("kind", "operator")).config)
    spec = OmegaConf.to_object(OmegaConf.merge(merged, data))
    assert isinstance(spec, Spec)
    return spec
