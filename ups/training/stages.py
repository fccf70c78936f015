"""The stage table: stage kind → its config class, its LightningModule, the stage it consumes, its metric names,
and how its predictor is built. Torch-free (specs are checked with it); modules load on use.

Adding a stage is one model file, one module file and one row here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ups.spec.errors import SpecError, did_you_mean
from ups.spec.metrics import trajectory_metric_names
from ups.spec.schema import STAGE_CONFIGS, Spec, StageConfig

WRAPPER_SEGMENTS = ("_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")
"""What torch.compile's, FSDP's and activation checkpointing's wrappers add to a parameter's name."""


def plain_key(key: str) -> str:
    """A state-dict key as the unwrapped network names it (what checkpoints hold, whatever trained them)."""
    for segment in WRAPPER_SEGMENTS:
        key = key.replace(segment, "")
    return key


def _with_persistence(names: list[str]) -> list[str]:
    return names + [f"persistence_{n}" for n in names]


def _operator_metrics(spec: Spec) -> list[str]:
    return _with_persistence(trajectory_metric_names(spec))


REFERENCE = ("rollout_nrmse", "nrmse_band_high", "corr_time")
"""Metrics of the upstream predictors a refining stage reports next to its own, from the same checkpoint."""


def _refiner_metrics(spec: Spec) -> list[str]:
    return [*_operator_metrics(spec), *(f"operator_{n}" for n in REFERENCE), "gain_corr_time"]


def _distill_metrics(spec: Spec) -> list[str]:
    teacher = [f"teacher_{n}" for n in REFERENCE]
    gains = ["gain_kept_rollout_nrmse", "gain_kept_corr_time", "speedup"]
    return [*_refiner_metrics(spec), *teacher, *gains]


def _steady_metrics(spec: Spec) -> list[str]:
    return ["nrmse", "baseline_mean_nrmse", "baseline_harmonic_nrmse"]


@dataclass(frozen=True)
class Stage:
    kind: str
    config: type[StageConfig]
    module: str
    """`module:Class` of its LightningModule."""
    predictor: str
    """`module:function` building its predictor (an `nn.Module`) from the lineage of resolved specs."""
    metric_names: Callable[[Spec], list[str]]
    consumes: str | None = None
    """The stage kind whose predictor this one builds on (its `from:`)."""
    state: tuple[tuple[str, str], ...] = (("model.", ""),)
    """How the LightningModule's state_dict maps onto the predictor's: (module prefix, predictor prefix) pairs;
    other keys (the raw refiner, optimizer-only copies) are not part of the predictor."""
    steady: bool = False
    """Trains on steady samples (coefficient, forcing → solution) instead of trajectories."""

    def predictor_state(self, module_state: dict) -> dict:
        out = {}
        for key, value in module_state.items():
            key = plain_key(key)  # a compile or FSDP wrapper never leaks into a loaded key
            for prefix, target in self.state:
                if key.startswith(prefix):
                    out[target + key[len(prefix) :]] = value
        return out

    def load(self, attr: str):
        module, name = getattr(self, attr).split(":")
        return getattr(importlib.import_module(module), name)


STAGES: dict[str, Stage] = {
    "operator": Stage(
        "operator",
        STAGE_CONFIGS["operator"],
        "ups.training.operator_module:OperatorModule",
        "ups.models.predictors:operator_predictor",
        _operator_metrics,
    ),
    "diffusion_residual": Stage(
        "diffusion_residual",
        STAGE_CONFIGS["diffusion_residual"],
        "ups.training.refiner_module:DiffusionResidualModule",
        "ups.models.predictors:refined_predictor",
        _refiner_metrics,
        consumes="operator",
        state=(("operator.", "operator."), ("ema.", "refiner.")),
    ),
    "consistency_distill": Stage(
        "consistency_distill",
        STAGE_CONFIGS["consistency_distill"],
        "ups.training.distill_module:ConsistencyDistillModule",
        "ups.models.predictors:distilled_predictor",
        _distill_metrics,
        consumes="diffusion_residual",
        state=(("operator.", "operator."), ("student_ema.", "refiner.")),
    ),
    "steady_prior": Stage(
        "steady_prior",
        STAGE_CONFIGS["steady_prior"],
        "ups.training.steady_module:SteadyPriorModule",
        "ups.models.predictors:steady_predictor",
        _steady_metrics,
        steady=True,
    ),
}
assert set(STAGES) == set(STAGE_CONFIGS), "every stage config has a row, and every row a config"


def stage_named(kind: str, *, file: str | None = None, key: str = "stage.kind") -> Stage:
    if kind not in STAGES:
        raise SpecError("unknown stage", file=file, key=key, got=kind, hint=did_you_mean(kind, STAGES))
    return STAGES[kind]


def stage_of(spec: Spec) -> Stage:
    return stage_named(spec.stage.kind)
