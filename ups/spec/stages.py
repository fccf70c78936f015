"""The built-in stages' settings (what `stage:` holds in a spec), their own checks, and the metrics each logs.

The catalogue's stage rows name these (`ups.catalog`); nothing here is looked up by a stage's name. A stage plugin
brings its own config class (a frozen, keyword-only dataclass subclassing `StageConfig`) the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Require = Callable[..., None]
"""`require(ok, key, problem, got, hint=None)`: raise the one-line SpecError for `key` when not `ok`."""


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    onestep: float = 1.0
    """Weight of the one-step relative L2 loss (physical space)."""
    rollout: float = 1.0
    """Weight of the mean relative L2 loss over `train.unroll_steps` autoregressive steps."""
    spectral: float = 0.1
    """Weight of the relative L2 error of the spatial amplitude spectrum over the unrolled steps."""


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """What every stage has; `kind` picks the subclass (the catalogue's stage row names it)."""

    kind: str = "operator"
    """Which stage trains (`ups-exp catalog stages` lists them)."""
    upstream: str | None = None
    """`from:` in YAML. The run id or `models:/NAME@ALIAS` whose predictor this stage builds on (single-stage
    specs of a stage that consumes another; a pipeline fills it in from the previous stage's run)."""

    def check(self, spec: Any, require: Require) -> None:
        """The stage's own rules (the spec is otherwise checked); `require` raises for a broken one."""


@dataclass(frozen=True, kw_only=True)
class OperatorStage(StageConfig):
    kind: str = "operator"
    loss: LossConfig = field(default_factory=LossConfig)

    def check(self, spec: Any, require: Require) -> None:
        weights = vars(self.loss)
        for key, w in weights.items():
            require(w >= 0, f"stage.loss.{key}", "must be >= 0", w)
        require(sum(weights.values()) > 0, "stage.loss", "at least one loss weight must be > 0", weights)


REFINER_INPUTS = ("residual", "state")
"""`stage.refiner_input` values (ups.models.refiner explains each)."""


def _check_fp32(stage: StageConfig, spec: Any, require: Require) -> None:
    require(0 <= stage.ema_decay < 1, "stage.ema_decay", "must be in [0, 1)", stage.ema_decay)
    require(
        spec.hardware.precision == "32-true",
        "hardware.precision",
        f"the {stage.kind} stage runs in fp32 only (noise levels near 1e-7 vanish in bf16 and TF32)",
        spec.hardware.precision,
        "Use hardware.precision=32-true.",
    )


@dataclass(frozen=True, kw_only=True)
class DiffusionResidualStage(StageConfig):
    """PDE-Refiner (Lippe et al. 2023) with the frozen operator as its step k = 0."""

    kind: str = "diffusion_residual"
    num_steps: int = 3
    """K: denoising steps after the operator's prediction."""
    sigma_min: float = 6.3e-4
    """Noise std of the last step, in normalized units; step k uses sigma_min^(k/K). The reference implementation's
    4e-7 is a DDPM beta (a variance): its std is √(4e-7) ≈ 6.3e-4, the default here."""
    refiner_input: str = "residual"
    """How the refiner sees the noised state: `residual` (its deviation from the operator's prediction in units of
    the noise, so the refiner starts as the operator) or `state` (the noised state itself, the paper's form)."""
    ema_decay: float = 0.995
    """Decay of the moving average of the refiner's weights that is evaluated and saved as the predictor."""
    eval_seed: int = 0
    """Seed of the noise drawn during evaluation (the same draws for every checkpoint)."""

    def check(self, spec: Any, require: Require) -> None:
        require(1 <= self.num_steps <= 16, "stage.num_steps", "must be in [1, 16]", self.num_steps)
        require(0 < self.sigma_min < 1, "stage.sigma_min", "must be in (0, 1)", self.sigma_min)
        require(
            self.refiner_input in REFINER_INPUTS,
            "stage.refiner_input",
            "must be `residual` or `state`",
            self.refiner_input,
        )
        _check_fp32(self, spec, require)


@dataclass(frozen=True, kw_only=True)
class PDERefinerStage(StageConfig):
    """PDE-Refiner as published (Lippe et al. 2023): one network for k = 0..K, trained from scratch."""

    kind: str = "pde_refiner"
    num_steps: int = 3
    """K: denoising steps after the network's own k = 0 prediction."""
    sigma_min: float = 6.3e-4
    """Noise std of the last step, in normalized units; step k uses sigma_min^(k/K) (a standard deviation: the
    reference implementation's 4e-7 is a variance)."""
    ema_decay: float = 0.995
    """Decay of the moving average of the network's weights that is evaluated and saved as the predictor."""
    eval_seed: int = 0
    """Seed of the noise drawn during evaluation (the same draws for every checkpoint)."""

    def check(self, spec: Any, require: Require) -> None:
        require(1 <= self.num_steps <= 16, "stage.num_steps", "must be in [1, 16]", self.num_steps)
        require(0 < self.sigma_min < 1, "stage.sigma_min", "must be in (0, 1)", self.sigma_min)
        _check_fp32(self, spec, require)


@dataclass(frozen=True, kw_only=True)
class ConsistencyDistillStage(StageConfig):
    """A student that reproduces the K-step refiner in `num_evals` network evaluations."""

    kind: str = "consistency_distill"
    num_evals: int = 1
    """Refiner evaluations per prediction at inference: 1 or 2."""
    ema_decay: float = 0.995
    eval_seed: int = 0

    def check(self, spec: Any, require: Require) -> None:
        require(self.num_evals in (1, 2), "stage.num_evals", "must be 1 or 2", self.num_evals)
        _check_fp32(self, spec, require)


@dataclass(frozen=True, kw_only=True)
class SteadyPriorStage(StageConfig):
    """Inputs (coefficients, forcing) and PDE parameters → the steady-state solution."""

    kind: str = "steady_prior"


# the metrics each stage logs (without split or task prefix; baselines included) -----------------------------------
def _with_persistence(names: list[str]) -> list[str]:
    return names + [f"persistence_{n}" for n in names]


def operator_metrics(spec: Any) -> list[str]:
    from ups.spec.metrics import trajectory_metric_names

    return _with_persistence(trajectory_metric_names(spec))


REFERENCE = ("rollout_nrmse", "nrmse_band_high", "corr_time")
"""Metrics of the upstream predictors a refining stage reports next to its own, from the same checkpoint."""


def refiner_metrics(spec: Any) -> list[str]:
    return [*operator_metrics(spec), *(f"operator_{n}" for n in REFERENCE), "gain_corr_time"]


def distill_metrics(spec: Any) -> list[str]:
    teacher = [f"teacher_{n}" for n in REFERENCE]
    gains = ["gain_kept_rollout_nrmse", "gain_kept_corr_time", "speedup"]
    return [*refiner_metrics(spec), *teacher, *gains]


def steady_metrics(spec: Any) -> list[str]:
    """The prior's error next to the mean training solution's, and the family's classical solve's where the
    family has one (a file's family is known once it is read: listed whenever the spec could have one)."""
    from ups import catalog

    names = ["nrmse", "baseline_mean_nrmse"]
    family = spec.data.family
    if family is None or catalog.get("families", family).steady_baseline:
        names.append("baseline_harmonic_nrmse")
    return names


def stage_row(kind: str, *, file: str | None = None, key: str = "stage.kind"):
    """The catalogue row of a stage kind; an unknown one is a one-line SpecError with a did-you-mean."""
    from ups import catalog
    from ups.spec.errors import SpecError

    try:
        return catalog.get("stages", kind)
    except catalog.CatalogError as exc:
        raise SpecError(exc.problem, file=file, key=key, got=exc.got, hint=exc.hint) from None


def config_class(kind: str, *, file: str | None = None) -> type:
    """The settings class a stage's `stage:` section is read into."""
    from ups import catalog

    return catalog.load(stage_row(kind, file=file).config)
