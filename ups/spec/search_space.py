"""Optuna search spaces in YAML, keyed by dotted spec paths (Optuna's vocabulary), with conditions.

    train.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
    train.optimizer: {type: categorical, choices: [adamw, sgd]}
    train.momentum: {type: float, low: 0.8, high: 0.99, when: {train.optimizer: sgd}}
    model.latent_dim: {type: int, low: 32, high: 96, step: 16}

Torch-free; Optuna is imported only by `suggest`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ups.spec.errors import SpecError, did_you_mean, schema_key
from ups.spec.metrics import metric_names
from ups.spec.schema import Spec

EXTRA_OBJECTIVES = ("model/num_params", "model/inference_ms")
_KINDS = ("float", "int", "categorical")
_ALLOWED = {"type", "low", "high", "log", "step", "choices", "when"}


@dataclass(frozen=True)
class Param:
    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    when: dict[str, tuple] = field(default_factory=dict)

    def extremes(self) -> list:
        """Values that must each compose into a valid spec."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def grid(self) -> list:
        """Every value, for the grid sampler (categoricals, ints, floats with a step)."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.step is None and self.kind == "float":
            raise ValueError("a float without `step` has no grid")
        step = self.step or 1
        n = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        values = [self.low + i * step for i in range(n)]
        return [int(v) for v in values] if self.kind == "int" else values

    def active(self, chosen: dict[str, Any]) -> bool:
        return all(chosen.get(k) in allowed for k, allowed in self.when.items())


def _schema_leaf(key: str, spec: Spec | None = None) -> bool:
    """Whether `key` names a value (not a block) of `spec` (whose stage kind decides the stage's keys), or of
    the schema's defaults."""
    key = schema_key(key)
    node: Any = spec if spec is not None else Spec
    for part in key.split("."):
        if not dataclasses.is_dataclass(node):
            return False
        fields = {f.name: f for f in dataclasses.fields(node)}
        if part not in fields:
            return False
        if isinstance(node, type):
            f = fields[part]
            node = f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        else:
            node = getattr(node, part)
    return not dataclasses.is_dataclass(node)


def parse_search_space(raw: dict[str, Any], file: str, spec: Spec | None = None) -> list[Param]:
    params: list[Param] = []
    for key, body in raw.items():
        key = str(key)

        def bad(problem: str, got: Any = ..., hint: str | None = None, k: str = key) -> SpecError:
            return SpecError(problem, file=file, key=k, got=got, hint=hint)

        if not isinstance(body, dict):
            raise bad("must be a mapping like {type: float, low: 0.1, high: 1.0}", body)
        if not _schema_leaf(key, spec):
            raise bad(
                "not a spec key that can be searched", key, "Use a dotted path to a value, e.g. train.lr."
            )
        if extra := sorted(set(body) - _ALLOWED):
            raise bad("unknown field", extra[0], did_you_mean(extra[0], _ALLOWED), k=f"{key}.{extra[0]}")
        kind = body.get("type")
        if kind not in _KINDS:
            raise bad("`type` must be float, int or categorical", kind)
        when = body.get("when") or {}
        if not isinstance(when, dict):
            raise bad("`when` must map spec keys to a value or a list of values", when, k=f"{key}.when")
        when = {str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in when.items()}
        if kind == "categorical":
            choices = body.get("choices")
            if not isinstance(choices, list) or not choices:
                raise bad("a categorical needs a non-empty `choices` list", choices, k=f"{key}.choices")
            params.append(Param(key, kind, choices=tuple(choices), when=when))
            continue
        low, high, log, step = (
            body.get("low"),
            body.get("high"),
            bool(body.get("log", False)),
            body.get("step"),
        )
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise bad("`low` and `high` must be numbers", {"low": low, "high": high})
        if not low <= high:
            raise bad(f"`low <= high` must hold, got (low={low}, high={high})")
        if log and low <= 0:
            raise bad(f"`log: true` needs low > 0, got (low={low})")
        if log and step is not None:
            raise bad("`log` and `step` cannot be combined (Optuna's rule)", step, k=f"{key}.step")
        if step is not None and not (isinstance(step, (int, float)) and step > 0):
            raise bad("`step` must be > 0", step, k=f"{key}.step")
        if kind == "int" and not all(float(v).is_integer() for v in (low, high)):
            raise bad("an int parameter needs integer bounds", {"low": low, "high": high})
        params.append(Param(key, kind, low=low, high=high, log=log, step=step, when=when))
    return params


def check_sweep(
    spec: Spec,
    params: list[Param] | None,
    file_of: Callable[[str], str],
    compose: Callable[[str, Any], None],
    space_file: str | None = None,
) -> None:
    """Sweep settings and search-space values must be usable before any trial starts."""
    cfg = spec.sweep
    produced = metric_names(spec, "val")

    def require(ok: bool, key: str, problem: str, got: Any = ..., hint: str | None = None) -> None:
        if not ok:
            raise SpecError(problem, file=file_of(key), key=key, got=got, hint=hint)

    require(cfg.trials >= 1, "sweep.trials", "must be >= 1", cfg.trials)
    require(cfg.max_failures >= 1, "sweep.max_failures", "must be >= 1", cfg.max_failures)
    require(cfg.startup_trials >= 0, "sweep.startup_trials", "must be >= 0", cfg.startup_trials)
    require(cfg.warmup_epochs >= 0, "sweep.warmup_epochs", "must be >= 0", cfg.warmup_epochs)
    require(0 < cfg.percentile < 100, "sweep.percentile", "must be in (0, 100)", cfg.percentile)
    require(0 < cfg.wilcoxon_p < 1, "sweep.wilcoxon_p", "must be in (0, 1)", cfg.wilcoxon_p)
    require(cfg.heartbeat_seconds >= 1, "sweep.heartbeat_seconds", "must be >= 1", cfg.heartbeat_seconds)
    require(
        cfg.grace_seconds > cfg.heartbeat_seconds,
        "sweep.grace_seconds",
        "must be > sweep.heartbeat_seconds",
        cfg.grace_seconds,
    )
    require(cfg.max_retries >= 0, "sweep.max_retries", "must be >= 0", cfg.max_retries)
    if cfg.patience is not None:
        require(cfg.patience >= 0, "sweep.patience", "must be >= 0 (or null)", cfg.patience)
    require(
        cfg.metric in produced,
        "sweep.metric",
        f"not a metric the `{spec.stage.kind}` stage produces",
        cfg.metric,
        ("The test split never selects; use a `val/` metric. " if cfg.metric.startswith("test/") else "")
        + did_you_mean(cfg.metric, produced),
    )
    if cfg.objectives:
        allowed = [*produced, *EXTRA_OBJECTIVES]
        for name in cfg.objectives:
            require(
                name in allowed,
                "sweep.objectives",
                "not an objective this stage can report",
                name,
                did_you_mean(name, allowed),
            )
        require(
            len(cfg.directions) == len(cfg.objectives),
            "sweep.directions",
            f"needs one direction per objective ({len(cfg.objectives)})",
            cfg.directions,
        )
        for d in cfg.directions:
            require(d in ("minimize", "maximize"), "sweep.directions", "each must be minimize or maximize", d)
        require(
            cfg.pruner == "none",
            "sweep.pruner",
            "pruning does not exist for multi-objective studies",
            cfg.pruner,
            "Set sweep.pruner: none, or use a single sweep.metric.",
        )
        require(
            cfg.sampler not in ("cmaes", "gp") or len(cfg.objectives) < 2,
            "sweep.sampler",
            "does not support several objectives",
            cfg.sampler,
            "Use tpe, random, qmc or grid.",
        )
    require(
        cfg.reduction_factor is None or cfg.reduction_factor >= 2,
        "sweep.reduction_factor",
        "must be >= 2 (a rung keeps the best 1/reduction_factor of its trials)",
        cfg.reduction_factor,
    )
    if cfg.pruner == "threshold":
        require(
            cfg.threshold is not None,
            "sweep.threshold",
            "the threshold pruner needs an upper bound",
            cfg.threshold,
        )
    if params is None:
        return
    seen: set[str] = set()
    for p in params:
        for cond in p.when:
            if not (cond in seen or _schema_leaf(cond, spec)):
                raise SpecError("condition on an unknown key", file=space_file, key=f"{p.key}.when", got=cond)
        if cfg.sampler == "grid" and p.kind == "float" and p.step is None:
            raise SpecError(
                "the grid sampler needs a `step` for floats",
                file=space_file,
                key=p.key,
                hint="Add step: ..., or use another sampler.",
            )
        for value in p.extremes():
            compose(p.key, value)
        seen.add(p.key)


def suggest(trial: Any, params: list[Param], base: dict[str, Any]) -> dict[str, Any]:
    """Sample the active parameters of a trial: {dotted key: value}."""
    chosen: dict[str, Any] = {}
    context = dict(base)
    for p in params:
        if not p.active(context):
            continue
        if p.kind == "categorical":
            value = trial.suggest_categorical(p.key, list(p.choices))
        elif p.kind == "int":
            value = trial.suggest_int(p.key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            value = trial.suggest_float(p.key, float(p.low), float(p.high), step=p.step, log=p.log)
        chosen[p.key] = value
        context[p.key] = value
    return chosen
