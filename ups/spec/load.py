"""Compose a spec: schema defaults → block files → spec file → `key=value` overrides.

OmegaConf merges each layer onto the schema (type-checking it); every error is reported against the
file (or the command line) that set the offending key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
from ups.spec.layers import (
    COMMAND_LINE,
    FILE_KEYS,
    flatten_tree,
    nest,
    parse_overrides,
    read_yaml_mapping,
    resolve_tasks,
)
from ups.spec.merge_errors import locate_error, translate_error
from ups.spec.models import DEFAULT_KIND, spec_class
from ups.spec.paths import ConfigPath
from ups.spec.redact import redact, redact_tree
from ups.spec.schema import BLOCK_GROUPS, DEFAULT_BLOCKS, DEFAULTS_EPOCH, Spec, non_default
from ups.spec.search_space import Param, check_sweep, parse_search_space
from ups.spec.stages import config_class, stage_row

__all__ = ["COMMAND_LINE", "flatten_tree", "parse_overrides", "read_yaml_mapping"]


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
    block_files: dict[str, str] = dataclasses.field(default_factory=dict)
    """Group → the file its block came from (the first folder of the config path that holds it)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.spec)

    def to_yaml(self) -> str:
        """The resolved spec as YAML, credentials redacted (what `show` prints and runs log)."""
        header = [f"# resolved from {self.path}"]
        header += [
            f"#   {g}: {n}" + (f"  ({self.block_files[g]})" if g in self.block_files else "")
            for g, n in self.blocks.items()
            if n
        ]
        if self.search_space_file is not None:
            header.append(f"#   search_space: {self.spec.search_space}  ({self.search_space_file})")
        if self.overrides:
            header.append(f"#   overrides: {redact(' '.join(self.overrides))}")
        shown = self.to_dict()
        shown["init"] = {"from": shown["init"]["source"]}  # as written in specs
        body = yaml.safe_dump(redact_tree(shown), sort_keys=False)
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
    configs = ConfigPath.for_spec(path)

    layers: list[tuple[str, dict[str, Any]]] = []
    blocks: dict[str, str | None] = {}
    block_files: dict[str, str] = {}
    body = dict(raw)
    for group in BLOCK_GROUPS:
        choice = body.pop(group, None)
        if isinstance(dotted.get(group), str):  # `data=other_block` on the command line swaps the block
            choice = dotted.pop(group)
        name, inline = _choose_block(group, choice, spec_file)
        blocks[group] = name
        if name is not None:
            block_path = configs.block(group, name)
            if block_path is None:
                choices = configs.blocks(group)
                raise SpecError(
                    f"unknown {group} block",
                    file=spec_file,
                    key=group,
                    got=name,
                    hint=did_you_mean(name, choices),
                )
            block_files[group] = str(block_path)
            layers.append((str(block_path), {group: read_yaml_mapping(block_path)}))
        elif group not in DEFAULT_BLOCKS and not inline:
            raise SpecError(
                "missing required value",
                file=spec_file,
                key=group,
                hint=did_you_mean("", configs.blocks(group)).replace("Choices", f"Name a {group} block"),
            )
        if inline:
            body[group] = inline
    if isinstance(body.get("init"), dict) and "from" in body["init"]:  # `from` is a Python keyword
        body["init"] = {("source" if k == "from" else k): v for k, v in body["init"].items()}
    layers.append((spec_file, body))
    if dotted:
        layers.append((COMMAND_LINE, nest(dotted)))
    layers = [(src, resolve_tasks(layer, configs, src)) for src, layer in layers]

    kind = blocks["stage"] or DEFAULT_BLOCKS["stage"]
    stage = stage_row(kind, file=spec_file)
    merged = OmegaConf.structured(Spec)
    OmegaConf.set_readonly(merged, False)
    merged.stage = OmegaConf.structured(config_class(kind, file=spec_file))  # the kind picks the schema
    merged.model = OmegaConf.structured(_model_schema(layers))  # so does the model's
    provenance: dict[str, str] = {}
    for source, layer in layers:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as exc:
            raise locate_error(merged, exc, source, layer) from None
        provenance.update(dict.fromkeys(flatten_tree(layer), source))
    if merged.data.path is not None:  # a file: what the data block set for its generator yields to the file's
        reset = {k: None for k in FILE_KEYS if provenance.get(f"data.{k}") not in (spec_file, COMMAND_LINE)}
        merged = OmegaConf.merge(merged, {"data": reset})
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
            f"the {kind} stage builds on a trained {' or '.join(stage.consumes)} stage: name its run",
            file=spec_file,
            key="stage.from",
            hint=f"stage: {{kind: {kind}, from: RUN_ID}} (or models:/NAME@ALIAS), or chain both in `stages:`.",
        )
    params, space_file = _load_search_space(spec, configs, source)

    def compose(key: str, value: Any) -> None:
        try:
            candidate = OmegaConf.to_object(OmegaConf.merge(merged, nest({key: value})))
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
        block_files=block_files,
        overrides=tuple(overrides),
        search_space=tuple(params) if params is not None else None,
        search_space_file=space_file,
    )


def _model_schema(layers: list[tuple[str, dict[str, Any]]]) -> type:
    """The schema of `model:` for the kind the layers name (the last that names one; aliases become the row's name),
    so OmegaConf checks the model's own keys. An unknown kind is one line naming the layer that set it."""
    from ups import catalog

    kind, where, keys = DEFAULT_KIND, None, set()
    for source, layer in layers:
        model = layer.get("model")
        if isinstance(model, dict):
            keys |= set(model)
            if isinstance(model.get("kind"), str):
                kind, where = model["kind"], source
                try:
                    model["kind"] = catalog.canonical("models", kind)
                except catalog.CatalogError as exc:
                    raise SpecError(
                        exc.problem, file=where, key="model.kind", got=exc.got, hint=exc.hint
                    ) from None
    try:
        return spec_class(catalog.canonical("models", kind), tuple(sorted(keys)))
    except catalog.CatalogError as exc:
        raise SpecError(exc.problem, file=where, key="model.kind", got=exc.got, hint=exc.hint) from None


def _load_search_space(spec: Spec, configs: ConfigPath, source) -> tuple[list[Param] | None, Path | None]:
    if spec.search_space is None:
        return None, None
    path = configs.search_space(spec.search_space)
    if path is None:
        choices = configs.search_space_names()
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
        spec = OmegaConf.to_object(OmegaConf.merge(merged, nest(values)))
    except OmegaConfBaseException as exc:
        raise translate_error(exc, source, nest(values)) from None
    check_spec(spec, lambda _key: source)
    extra = tuple(f"{k}={json.dumps(v)}" for k, v in values.items())
    return dataclasses.replace(resolved, spec=spec, overrides=(*resolved.overrides, *extra))


def spec_from_dict(data: dict[str, Any]) -> Spec:
    """Rebuild a `Spec` from its `to_dict()` form (e.g. a checkpoint's hyperparameters)."""
    data = dict(data)
    merged = OmegaConf.structured(Spec)
    OmegaConf.set_readonly(merged, False)
    merged.stage = OmegaConf.structured(
        config_class(data.get("stage", {}).get("kind", DEFAULT_BLOCKS["stage"]))
    )
    model = dict(data.get("model") or {})
    if "kind" in model:  # written before the catalogue: `operator` is `latent_operator` now
        from ups import catalog

        model["kind"] = catalog.canonical("models", model["kind"])
        data["model"] = model
    merged.model = OmegaConf.structured(spec_class(model.get("kind", DEFAULT_KIND), tuple(sorted(model))))
    spec = OmegaConf.to_object(OmegaConf.merge(merged, data))
    assert isinstance(spec, Spec)
    return spec
