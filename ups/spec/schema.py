"""The spec schema: frozen, keyword-only dataclasses. OmegaConf only merges YAML onto them (see `load`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from ups.spec.models import default_model
from ups.spec.stages import LossConfig, OperatorStage, StageConfig  # noqa: F401  (LossConfig: re-exported)

BLOCK_GROUPS = ("stage", "data", "model", "hardware", "tracking")
"""Spec fields that name a building block in `configs/<group>/<name>.yaml`."""

DEFAULT_BLOCKS = {"stage": "operator", "hardware": "cpu", "tracking": "local"}
"""Blocks used when a spec does not name one; `data` and `model` are required."""


@dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    solver_points: int = 512
    """Resolution of the spectral solver; stored data is subsampled to `data.num_points`."""
    seed: int = 0
    """Seed of the random initial conditions (trajectory i depends only on this and i)."""
    burn_in: float = 100.0
    """Kuramoto–Sivashinsky: time integrated and discarded before the first frame (onto the attractor)."""


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    """One PDE data set: a PDEBench file or a generator, subsampled to the model's grid and frame spacing."""

    family: str | None = "burgers1d"
    """PDE family (`ups-exp catalog families`): its generator makes the data when `path` is absent. With `path`,
    the file's reader says the family; this applies only when it cannot and you set it (in the spec or on the
    command line). A family gives the parameter scalings and the coarse-solver baseline; data without one gets
    persistence only."""
    path: str | None = None
    """A data file. When absent, the family's generator makes the data (cached in $UPS_HOME/data)."""
    format: str = "pdebench"
    """How `path` is read (`ups-exp catalog formats`; a plugin's name or `"pkg.module:read"`)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Settings handed to the format's reader as they are (its own keys)."""
    allow_legacy: bool = False
    """Accept files of PDEBench's older Burgers release (x in (-1, 1), doubled flux)."""
    nu: float | None = None
    """Viscosity / diffusivity (Burgers, diffusion-reaction). A file's `Nu` attribute or file name takes precedence."""
    beta: float | None = None
    """Advection speed. A file's `beta` attribute or file name takes precedence."""
    rho: float | None = None
    """Reaction rate (diffusion-reaction). A file's `rho` attribute or file name takes precedence."""
    length_low: float | None = None
    """Kuramoto–Sivashinsky: each trajectory's domain length L is drawn from U[length_low, length_high]."""
    length_high: float | None = None
    num_trajectories: int = 1024
    """Trajectories used (the first N of the file or generator); samples, for a steady family."""
    num_points: int | None = 256
    """Points per grid axis the model sees; a file's grid is subsampled to it (it must divide the file's). null:
    the file's. With `path`, a value the data block sets (for its generator) yields to the file's."""
    dt: float | None = 0.05
    """Frame spacing the model sees; a file's frames are subsampled to it (a whole multiple of the file's). null:
    the file's. With `path`, a value the data block sets yields to the file's."""
    num_frames: int | None = 41
    """Frames per trajectory (including the initial state). null: as many as the file has at that spacing. With
    `path`, a value the data block sets yields to the file's."""
    train_frames: int | None = None
    """Frames of each training trajectory that training windows are cut from; null: all `num_frames`. (KS trains
    on short trajectories and evaluates long ones, so the correlation time is not censored.)"""
    split_seed: int = 0
    """Seed of the trajectory-level train/val/test assignment (independent of `seed`)."""
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)


@dataclass(frozen=True, kw_only=True)
class TaskConfig(SourceConfig):
    name: str
    """Names the task in metrics: `val/<name>/rollout_nrmse`."""
    weight: float = 1.0
    """Sampling weight: training draws tasks in proportion to it, not to their sizes."""


@dataclass(frozen=True, kw_only=True)
class DataConfig(SourceConfig):
    tasks: list[TaskConfig] = field(default_factory=list)
    """Multi-task: each entry is a data set (`{name, from: BLOCK, weight, ...}`); the fields above then do not apply."""

    def sources(self) -> list[SourceConfig]:
        return list(self.tasks) if self.tasks else [self]

    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]


@dataclass(frozen=True, kw_only=True)
class HardwareConfig:
    accelerator: Literal["cpu", "gpu", "auto"] = "cpu"
    devices: int = 1
    """Processes (CPU) or GPUs per node."""
    num_nodes: int = 1
    strategy: Literal["auto", "ddp", "ddp_spawn", "fsdp"] = "auto"
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true"
    num_threads: int | None = None
    """torch intra-op threads per process; null keeps torch's default."""
    compile: bool = False
    """Compile the trained network in place (configure_model); a compile failure falls back to eager, logged once."""
    oom: Literal["fail", "skip_batch", "halve_batch"] = "fail"
    """Out of memory in a training step: fail the run, skip the step, or halve the micro-batch (and double
    gradient accumulation, keeping the global batch). All ranks take the same decision (ups.training.oom)."""


@dataclass(frozen=True, kw_only=True)
class EarlyStoppingConfig:
    metric: str | None = None
    """A `val/` metric to watch; null disables early stopping."""
    patience: int = 5
    """Validations without improvement before stopping."""
    min_delta: float = 0.0


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    max_epochs: int = 30
    batches_per_epoch: int | None = None
    """Cap on training batches per epoch (a fresh random subset of windows each epoch); null: every window once."""
    max_time_minutes: float | None = None
    """Wall-clock budget for fitting; training stops (and evaluates) when it runs out."""
    batch_size: int = 32
    optimizer: Literal["adam", "adamw", "sgd", "muon"] = "adamw"
    """`muon`: torch.optim.Muon on 2-D weight matrices, AdamW on everything else."""
    lr: float = 1.0e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    """SGD momentum (and Muon's)."""
    scheduler: Literal["none", "step", "cosine", "plateau"] = "cosine"
    warmup_steps: int = 0
    """Linear warm-up (optimizer steps) before the cosine decay."""
    min_lr_ratio: float = 0.01
    """Cosine decays to lr × min_lr_ratio."""
    step_size: int = 10
    """`step`: epochs between decays."""
    gamma: float = 0.5
    """`step` and `plateau`: decay factor."""
    plateau_patience: int = 3
    unroll_steps: int = 5
    """Autoregressive steps per training window (truncated backprop through all of them)."""
    unroll_grad_steps: int | None = None
    """null: backpropagate through every unrolled step. G ≥ 1: the pushforward trick (Brandstetter et al. 2022):
    only the first step (from the true state) and the last G steps (from the model's own detached prediction)
    carry gradients; the steps between run without autograd. Cheaper steps. G ≥ unroll_steps is the same as null
    (so a sweep over unroll_steps stays valid)."""
    grad_clip: float | None = 1.0
    """Gradient-norm clipping; null disables."""
    accumulate_grad_batches: int = 1
    checkpoint_metric: str = "val/rollout_nrmse"
    """The `val/` metric that ranks checkpoints (lower is better); the best one is evaluated on test."""
    save_top_k: int = 1
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    deterministic: bool = False
    """Deterministic algorithms (bit-reproducible on CPU, slower on GPU)."""
    val_every_n_epochs: int = 1
    log_every_n_steps: int = 10


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    context_frames: int = 10
    """Frames given; the rollout starts from the last of them."""
    horizon: int = 31
    """Autoregressive steps evaluated."""
    report_horizons: list[int] = field(default_factory=lambda: [1, 10, 20])
    """Steps h reported as `rollout_nrmse@h` (the final step `horizon` is always reported)."""
    batch_size: int = 256
    metrics: list[str] = field(default_factory=list)
    """Extra metrics (`ups-exp catalog metrics`; a plugin's name or `"pkg.module:fn"`), logged per split and task
    next to their persistence value; usable as checkpoint metric, sweep objective, registry selection and gate."""


@dataclass(frozen=True, kw_only=True)
class MlflowConfig:
    enabled: bool = True
    uri: str | None = None
    """Tracking URI; null: $MLFLOW_TRACKING_URI, else sqlite:///$UPS_HOME/mlflow.db."""
    log_checkpoint: bool = True
    """Upload the best checkpoint as an artifact."""


@dataclass(frozen=True, kw_only=True)
class WandbConfig:
    enabled: bool = True
    mode: Literal["offline", "online", "disabled"] = "offline"
    """W&B never touches the network unless this is `online`."""
    project: str | None = None
    """Defaults to the spec's name."""
    entity: str | None = None


@dataclass(frozen=True, kw_only=True)
class TrackingConfig:
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    trials: int = 20
    """Total finished (complete + pruned) trials the study should reach, over every invocation and worker."""
    sampler: Literal["tpe", "gp", "cmaes", "random", "grid", "qmc"] = "tpe"
    pruner: Literal[
        "none", "median", "percentile", "hyperband", "successive_halving", "threshold", "wilcoxon"
    ] = "median"
    patience: int | None = None
    """Wrap the pruner in Optuna's PatientPruner: prune only after this many epochs without improvement."""
    percentile: float = 25.0
    """`percentile` pruner: keep trials in the best `percentile` %."""
    startup_trials: int = 5
    """Trials before median/percentile pruning (and TPE's model) start."""
    warmup_epochs: int = 1
    """Epochs of a trial before it may be pruned."""
    reduction_factor: int | None = None
    """`successive_halving`/`hyperband`: a rung keeps the best 1/reduction_factor; null: Optuna's (4 / 3)."""
    threshold: float | None = None
    """`threshold` pruner: prune when the metric exceeds this (NaN/inf always prune)."""
    wilcoxon_p: float = 0.1
    """`wilcoxon` pruner: p-value threshold of the paired test on the validation panel."""
    metric: str = "val/rollout_nrmse"
    """The objective: a `val/` metric (its best value over the trial's epochs)."""
    direction: Literal["minimize", "maximize"] | None = None
    """null: the metric's own direction (`corr_time` and gains are maximized, errors minimized)."""
    objectives: list[str] = field(default_factory=list)
    """Multi-objective: metric names, plus `model/num_params` and `model/inference_ms`; replaces `metric`."""
    directions: list[str] = field(default_factory=list)
    """One `minimize`/`maximize` per objective."""
    max_failures: int = 5
    """Stop the sweep once the study holds this many failed trials."""
    trial_plots: bool = False
    """Draw each trial's rollout/error-growth plots (about 0.6 s a trial); the spec and metrics are always kept."""
    seed: int = 0
    """Sampler seed (worker k of a `--workers` run uses seed + k)."""
    storage: str | None = None
    """Optuna storage URL; null: sqlite:///$UPS_HOME/optuna.db. `journal:PATH` opts into a journal file."""
    heartbeat_seconds: int = 30
    grace_seconds: int = 90
    """A RUNNING trial whose heartbeat is older than this is stale: it is failed and retried."""
    max_retries: int = 2
    """Retries of a trial whose worker died."""


@dataclass(frozen=True, kw_only=True)
class GatesConfig:
    thresholds: dict[str, float] = field(default_factory=dict)
    """Upper bounds on `test/` metrics, e.g. {test/rollout_nrmse: 0.15}."""
    beat_persistence: bool = True
    """`test/rollout_nrmse` and `test/nrmse` must be below their persistence baselines."""
    beat_champion: bool = True
    """Must beat the current champion on `champion_metric` (paired Wilcoxon test over per-sample errors)."""
    champion_metric: str = "test/rollout_nrmse"
    champion_margin: float = 0.0
    """Relative margin: candidate mean <= (1 - margin) × champion mean."""
    champion_p_value: float = 0.05
    """One-sided Wilcoxon p-value the improvement must reach."""
    stable_rollout: bool = True
    """No NaN/inf anywhere in the rollout to the maximum horizon."""


@dataclass(frozen=True, kw_only=True)
class RegistryConfig:
    model_name: str | None = None
    """Registered model name; null: the spec's name."""
    select_metric: str = "val/rollout_nrmse"
    """How the candidate is chosen among finished trials/runs (a `val/` metric: the test split never selects)."""
    select_direction: Literal["minimize", "maximize"] | None = None
    """null: the metric's own direction."""
    gates: GatesConfig = field(default_factory=GatesConfig)


@dataclass(frozen=True, kw_only=True)
class InitConfig:
    """Warm start (`init: {from: SOURCE}` in a spec): the run starts from a trained model's weights, with its
    normalization statistics and PDE-parameter layout (not its optimizer state)."""

    source: str | None = None
    """Written `init.from`: a run id, a checkpoint file, `models:/NAME@ALIAS` or `models:/NAME/VERSION`, of the same
    stage kind and model architecture."""


@dataclass(frozen=True, kw_only=True)
class Spec:
    name: str
    """MLflow experiment, W&B project and (later) Optuna study name."""
    seed: int = 0
    """Model/training seed (the data split has its own, `data.split_seed`)."""
    stage: StageConfig = field(default_factory=OperatorStage)
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = field(default_factory=default_model)
    """The model's kind (`ups-exp catalog models`) and its own settings."""
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    search_space: str | None = None
    """A file in `search_spaces/` (name without .yaml) used by `ups-exp sweep`."""
    sweep: SweepConfig = field(default_factory=SweepConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    init: InitConfig = field(default_factory=InitConfig)
    """Warm start from a trained model (`init.from`)."""


DEFAULTS_EPOCH = 2
"""Part of every spec hash. Bump it when a schema default changes meaning (tests/spec/test_load.py pins them)."""


def non_default(value: Any) -> Any:
    """`value` (a schema dataclass, recursively) without the fields that equal their default."""
    if dataclasses.is_dataclass(value):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                out[f.name] = non_default(v)  # required: always part of it
                continue
            if v != default:
                out[f.name] = non_default(v)
        return out
    if isinstance(value, (list, tuple)):
        return [non_default(v) for v in value]
    if isinstance(value, dict):
        return {k: non_default(v) for k, v in value.items()}
    return value
