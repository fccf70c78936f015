"""The catalogue: every stage, model, family, data format and metric ups knows, as rows of five tables.

This is the bottom layer (standard library only: `validate` reads it, and nothing else dispatches on a kind,
family or stage name). A row names its parts as `"module:attr"` strings, loaded when used, and carries plain data
(parameter names and scalings, a metric's direction, whether a stage or family is steady, the stages a stage
consumes). Built-ins are rows here; installed packages add rows through entry points:

    [project.entry-points."ups.models"]    mymodel = "my_pkg.model:build"      # stable
    [project.entry-points."ups.formats"]   myformat = "my_pkg.io:read"         # stable
    [project.entry-points."ups.metrics"]   mymetric = "my_pkg.metrics:fn"      # stable
    [project.entry-points."ups.stages"]    mystage = "my_pkg.stage:ROW"        # provisional: a StageRow
    [project.entry-points."ups.families"]  myfamily = "my_pkg.family:ROW"      # provisional: a FamilyRow

and a spec may name an implementation directly, `model: {kind: "my_pkg.model:build"}`. An unknown name is one
line (exit 2) with a did-you-mean over the table. docs/extending.md is the contract for plugin authors.
"""

from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

TABLES = ("stages", "models", "families", "formats", "metrics")
GROUPS = {table: f"ups.{table}" for table in TABLES}
"""Entry-point group of each table. `ups.models`, `ups.formats` and `ups.metrics` are stable; `ups.stages` and
`ups.families` are provisional (their rows may gain required fields in a later PLUGIN_API)."""
BUILT_IN = "built-in"
METRIC_NAME = re.compile(r"[a-z][a-z0-9_]*")


class CatalogError(ValueError):
    """A name the catalogue does not know, or a plugin that cannot be loaded (the spec layer reports it as a
    one-line SpecError)."""

    def __init__(self, problem: str, *, got: str, hint: str | None = None) -> None:
        self.problem, self.got, self.hint = problem, got, hint
        super().__init__(f"{problem}; got {got!r}." + (f" {hint}" if hint else ""))


# rows -------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageRow:
    name: str
    config: str
    """`module:Class` of the stage's settings in a spec (a frozen, keyword-only dataclass with `kind`)."""
    module: str
    """`module:Class` of its LightningModule."""
    predictor: str
    """`module:function(specs, layout, io)` building its predictor (weights are loaded by the caller)."""
    metric_names: str
    """`module:function(spec) -> [names]`: the metrics it logs, without split or task prefix."""
    consumes: tuple[str, ...] = ()
    """The stages whose predictor this one builds on (its `from:`); empty: it starts from data alone."""
    state: tuple[tuple[str, str], ...] = (("model.", ""),)
    """How its LightningModule's state_dict maps onto the predictor's: (module prefix, predictor prefix) pairs."""
    steady: bool = False
    """Trains on steady samples (inputs → solution) instead of trajectories."""
    source: str = BUILT_IN
    description: str = ""


@dataclass(frozen=True)
class ModelRow:
    name: str
    build: str
    """`module:function(cfg: dict, io: ModelIO) -> nn.Module`."""
    config: str | None = None
    """`module:Class` of its settings (a dataclass; `validate` checks keys against it); None: `build.Config`, or no
    checking when there is none."""
    aliases: tuple[str, ...] = ()
    """Older names that still load (specs, checkpoints and registered models written with them)."""
    source: str = BUILT_IN
    distribution: str | None = None
    """`name==version` of the installed package that provides it (what a registered model requires)."""
    description: str = ""


@dataclass(frozen=True)
class FamilyParam:
    """One PDE parameter of a family."""

    name: str
    """As the data and the generator call it (`nu`, `L`)."""
    feature: str | None = None
    """The fixed scaling models are fed (`log10_nu`; ups.data.params); None: z-scored with train statistics."""
    spec_key: str | None = None
    """`data.<key>` that sets it for the generator, or for a file that does not say it."""
    per_trajectory: bool = False
    """Differs per trajectory (a dataset of shape (N,) in the file), like KS's domain length."""
    file_attr: str | None = None
    """The HDF5 attribute a PDEBench-layout file gives it in (`Nu`)."""
    file_name: str | None = None
    """A regular expression whose first group finds it in a file name (`Nu([0-9.eE+-]+?)(?:_|\\.h|$)`)."""


@dataclass(frozen=True)
class FamilyRow:
    name: str
    params: tuple[FamilyParam, ...] = ()
    generator: str | None = None
    """`module:function(**keys) -> GeneratedData`; None: the family's data comes from files only."""
    requires: tuple[str, ...] = ()
    """`data.<key>` settings the generator needs (and is given): `nu` for Burgers."""
    generator_keys: tuple[str, ...] = ()
    """`data.generator.<key>` settings the generator takes besides the common ones (KS's `burn_in`)."""
    solver: str | None = None
    """`module:function(start, *, dt, horizon, params, factor)`: the family's equation solved on a coarser grid
    (the classical baseline every report shows); None: no solver baseline."""
    steady: bool = False
    channels: tuple[str, ...] = ("u",)
    spatial_dims: int = 1
    periodic: bool = True
    """Whether the domain wraps around along every axis (models pad accordingly)."""
    checks: str | None = None
    """`module:function(data, prefix, require)`: spec checks of the family's own settings."""
    recognize: tuple[str, ...] = ()
    """Regular expressions: a data file whose name matches one holds this family (PDEBench's file names)."""
    input_transforms: tuple[str | None, ...] = ()
    """Steady families: a transform per input channel before it is normalized (`log` for a positive coefficient)."""
    steady_baseline: str | None = None
    """Steady families: `module:function(inputs) -> solutions`, a cheap classical solve reported next to the model."""
    coarse_solution: str | None = None
    """Steady families: `module:function(inputs, factor) -> solutions`, the family's own solve on a grid `factor`×
    coarser per axis, brought back to the stored grid (reported at 2×, 4× and 8× with its cost per sample)."""
    source: str = BUILT_IN
    description: str = ""


@dataclass(frozen=True)
class FormatRow:
    name: str
    read: str
    """`module:function(path: str, cfg: dict) -> ups.Trajectories`."""
    source: str = BUILT_IN
    distribution: str | None = None
    description: str = ""


@dataclass(frozen=True)
class MetricRow:
    name: str
    fn: str | None = None
    """`module:function(pred, true, ctx) -> (B,)`; None for the built-ins the evaluator computes itself."""
    higher_is_better: bool | None = None
    """None: read from `fn.higher_is_better` when first needed (default False)."""
    source: str = BUILT_IN
    distribution: str | None = None
    description: str = ""

    def direction(self) -> str:
        better = self.higher_is_better
        if better is None:
            better = bool(getattr(load(self.fn), "higher_is_better", False)) if self.fn else False
        return "maximize" if better else "minimize"


Row = StageRow | ModelRow | FamilyRow | FormatRow | MetricRow


# built-ins --------------------------------------------------------------------------------------------------------
_S = "ups.spec.stages"
_STAGES = (
    StageRow(
        "operator", f"{_S}:OperatorStage", "ups.training.operator_module:OperatorModule",
        "ups.training.predictors:operator_predictor", f"{_S}:operator_metrics",
        description="a one-step predictor trained end to end (one-step + unrolled rollout + spectral losses)",
    ),
    StageRow(
        "diffusion_residual", f"{_S}:DiffusionResidualStage", "ups.training.refiner_module:DiffusionResidualModule",
        "ups.training.predictors:refined_predictor", f"{_S}:refiner_metrics", consumes=("operator",),
        state=(("operator.", "operator."), ("ema.", "refiner.")),
        description="PDE-Refiner's refinement of a frozen operator's prediction in K denoising steps",
    ),
    StageRow(
        "pde_refiner", f"{_S}:PDERefinerStage", "ups.training.pde_refiner_module:PDERefinerModule",
        "ups.training.predictors:pde_refiner_predictor", f"{_S}:refiner_metrics", state=(("ema.", ""),),
        description="PDE-Refiner as published: one network predicts the next state (k = 0) and denoises it "
        "(k = 1..K), trained from scratch",
    ),
    StageRow(
        "consistency_distill", f"{_S}:ConsistencyDistillStage",
        "ups.training.distill_module:ConsistencyDistillModule", "ups.training.predictors:distilled_predictor",
        f"{_S}:distill_metrics", consumes=("diffusion_residual", "pde_refiner"),
        state=(("operator.", "operator."), ("student_ema.", "refiner.")),
        description="a student that reproduces the K-step refiner in 1 or 2 evaluations",
    ),
    StageRow(
        "steady_prior", f"{_S}:SteadyPriorStage", "ups.training.steady_module:SteadyPriorModule",
        "ups.training.predictors:steady_predictor", f"{_S}:steady_metrics", steady=True,
        description="inputs (coefficients, forcing) → the steady-state solution",
    ),
)  # fmt: skip

_MODELS = (
    ModelRow(
        "latent_operator", "ups.models.operator:build", "ups.models.config:LatentOperatorConfig",
        aliases=("operator",),
        description="grid → patch tokens → FiLM-conditioned spectral/pointwise blocks → grid, as a residual update",
    ),
    ModelRow(
        "fno", "ups.models.fno:build", "ups.models.config:FNOConfig",
        description="Fourier neural operator: lifted channels, spectral convolutions with real-stored weights, "
        "FiLM on the PDE parameters and Δt",
    ),
    ModelRow(
        "unet", "ups.models.unet:build", "ups.models.config:UNetConfig",
        description="a modern U-Net: residual blocks with group norm and FiLM, down/up-sampling, skip connections",
    ),
)  # fmt: skip

_NU_IN_NAME = r"Nu([0-9.eE+-]+?)(?:_|\.h|$)"
_FAMILIES = (
    FamilyRow(
        "burgers1d",
        params=(FamilyParam("nu", "log10_nu", "nu", file_attr="Nu", file_name=_NU_IN_NAME),),
        requires=("nu",), generator="ups.data.burgers:generate_burgers", solver="ups.data.coarse_solver:burgers",
        recognize=(r"Burgers",),
        description="u_t + (u²/2)_x = (ν/π) u_xx, periodic on (0, 1) (PDEBench)",
    ),
    FamilyRow(
        "advection1d",
        params=(FamilyParam("beta", "beta", "beta", file_attr="beta", file_name=r"beta([0-9.eE+-]+?)(?:_|\.h|$)"),),
        requires=("beta",), generator="ups.data.advection:generate_advection",
        solver="ups.data.coarse_solver:advection", recognize=(r"Advection",),
        description="u_t + β u_x = 0, periodic on (0, 1) (PDEBench)",
    ),
    FamilyRow(
        "reaction_diffusion1d",
        params=(
            FamilyParam("nu", "log10_nu", "nu", file_attr="Nu", file_name=_NU_IN_NAME),
            FamilyParam("rho", "log10_1p_rho", "rho", file_attr="rho", file_name=r"Rho([0-9.eE+-]+?)(?:_|\.h|$)"),
        ),
        requires=("nu", "rho"), generator="ups.data.reaction_diffusion:generate_reaction_diffusion",
        solver="ups.data.coarse_solver:reaction_diffusion", recognize=(r"ReacDiff",),
        description="u_t = ν u_xx + ρ u(1 − u), periodic on (0, 1) (PDEBench)",
    ),
    FamilyRow(
        "ks1d",
        params=(FamilyParam("L", "ks_length", per_trajectory=True),),
        requires=("length_low", "length_high"), generator="ups.data.ks:generate_ks", generator_keys=("burn_in",),
        solver="ups.data.coarse_solver:ks",
        checks="ups.spec.families:check_ks",
        description="Kuramoto–Sivashinsky u_t + u u_x + u_xx + u_xxxx = 0, domain length L per trajectory",
    ),
    FamilyRow(
        "steady_diffusion1d", generator="ups.data.steady:generate_steady_data", steady=True, periodic=False,
        channels=("u",), input_transforms=("log", None), steady_baseline="ups.data.steady:harmonic_solution",
        coarse_solution="ups.data.steady:coarse_solution",
        description="−(a u′)′ = f on (0, 1), u = 0 at both ends: (a, f) → u",
    ),
    FamilyRow(
        "ns2d",
        params=(FamilyParam("nu", "log10_nu", "nu", file_attr="Nu"),),
        requires=("nu",), generator="ups.data.ns2d:generate_ns2d", generator_keys=("burn_in",),
        solver="ups.data.ns2d:coarse_solve", channels=("w",), spatial_dims=2,
        description="Navier–Stokes vorticity w_t + u·∇w = ν Δw + f on the unit torus, f = 0.1(sin 2π(x+y) + cos 2π(x+y)) "
        "(the FNO paper's)",
    ),
    FamilyRow(
        "darcy2d", generator="ups.data.darcy2d:generate_darcy2d", steady=True, periodic=False, spatial_dims=2,
        channels=("u",), input_transforms=(None,), coarse_solution="ups.data.darcy2d:coarse_solution",
        recognize=(r"DarcyFlow_beta1(?:\.0*)?_",),
        description="Darcy flow −∇·(a∇u) = 1 on (0, 1)², u = 0 on the walls, a ∈ {3, 12} (the FNO paper's): a → u",
    ),
)  # fmt: skip

_FORMATS = (
    FormatRow(
        "pdebench",
        "ups.data.formats.pdebench:read",
        description="PDEBench's HDF5 layouts (1D and 2D `tensor`, 2D CFD, per-sample groups, Darcy), and ups's files",
    ),
)

_HIGHER = {"corr_time", "gain_corr_time", "gain_kept_rollout_nrmse", "gain_kept_corr_time", "speedup"}
_METRICS = tuple(
    MetricRow(name, higher_is_better=name in _HIGHER, description=text)
    for name, text in (
        ("nrmse", "one step from true states: per sample ‖pred − true‖ / ‖true‖ over the grid, averaged"),
        ("rollout_nrmse", "the same per step of the autoregressive rollout, averaged over samples and steps"),
        ("rollout_nrmse@", "rollout_nrmse@H: at rollout step H only"),
        ("nrmse_band_low", "rollout error in Fourier wavenumbers |k| < 4, over the truth's energy"),
        ("nrmse_band_mid", "the same for 4 ≤ |k| < 12"),
        ("nrmse_band_high", "the same for |k| ≥ 12"),
        ("corr_time", "time until the rollout's correlation with the truth first drops below 0.8"),
        ("gain_corr_time", "a refiner's corr_time over its operator's"),
        ("gain_kept_rollout_nrmse", "the share of the teacher's rollout gain a student keeps"),
        ("gain_kept_corr_time", "the share of the teacher's corr_time gain a student keeps"),
        ("speedup", "a student's prediction time against its teacher's"),
        ("baseline_mean_nrmse", "steady: the mean training solution's error"),
        (
            "baseline_harmonic_nrmse",
            "steady: the error of the constant-coefficient solve with the harmonic mean",
        ),
    )
)

_BUILT_IN: dict[str, tuple] = {
    "stages": _STAGES,
    "models": _MODELS,
    "families": _FAMILIES,
    "formats": _FORMATS,
    "metrics": _METRICS,
}


# lookup -----------------------------------------------------------------------------------------------------------
_cache: dict[str, dict] = {}


def load(ref: str) -> Any:
    """The object `"module:attr"` names (imported now)."""
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise CatalogError("not an implementation path", got=ref, hint='Write "package.module:attribute".')
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module
        raise CatalogError(
            f"cannot import {module} ({exc.__class__.__name__}: no module {missing!r})",
            got=ref,
            hint=f"Install the package that provides it (pip install {missing.split('.')[0]}), or put it on "
            "PYTHONPATH.",
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CatalogError(f"{module} has no attribute {attr!r}", got=ref)
        obj = getattr(obj, part)
    return obj


def _entry_point_rows(table: str) -> dict[str, Row]:
    from importlib.metadata import entry_points

    rows: dict[str, Row] = {}
    for ep in entry_points(group=GROUPS[table]):
        dist = f"{ep.dist.name}=={ep.dist.version}" if ep.dist is not None else None
        source = f"entry point ({dist or ep.value})"
        rows[ep.name] = _plugin_row(table, ep.name, ep.value, source, dist)
    return rows


def _plugin_row(table: str, name: str, ref: str, source: str, dist: str | None) -> Row:
    if table == "models":
        return ModelRow(name, build=ref, source=source, distribution=dist)
    if table == "formats":
        return FormatRow(name, read=ref, source=source, distribution=dist)
    if table == "metrics":
        if not METRIC_NAME.fullmatch(name):
            raise CatalogError(
                "a metric's name must match [a-z][a-z0-9_]* (it names logged values)",
                got=name,
                hint=f"Rename the entry point or the function behind {ref}.",
            )
        return MetricRow(name, fn=ref, source=source, distribution=dist)
    row = load(ref)  # stages and families: the object is the row
    expected = StageRow if table == "stages" else FamilyRow
    if not isinstance(row, expected):
        raise CatalogError(f"must be a ups.catalog.{expected.__name__}", got=ref)
    return replace(row, name=name, source=source)


def rows(table: str) -> dict[str, Row]:
    """Every row of `table` by name: built-ins, then installed plugins (a plugin never replaces a built-in)."""
    if table not in TABLES:
        raise CatalogError("no such table", got=table, hint=f"Tables: {', '.join(TABLES)}.")
    if table not in _cache:
        found: dict[str, Row] = {row.name: row for row in _BUILT_IN[table]}
        for name, row in _entry_point_rows(table).items():
            found.setdefault(name, row)
        _cache[table] = found
    return _cache[table]


def refresh() -> None:
    """Forget what was found (after installing a plugin in the same process)."""
    _cache.clear()


def names(table: str) -> list[str]:
    return sorted(rows(table))


def did_you_mean(value: str, choices) -> str:
    choices = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
    listed = ", ".join(choices)
    return f"Did you mean {close[0]!r}? Choices: {listed}" if close else f"Choices: {listed}"


def get(table: str, name: str) -> Row:
    """The row for `name` (a built-in or installed name, an alias, or a `"pkg.module:attr"` path)."""
    known = rows(table)
    if name in known:
        return known[name]
    for row in known.values():
        if name in getattr(row, "aliases", ()):
            return row
    if isinstance(name, str) and ":" in name:
        module, _, attr = name.partition(":")
        short = attr.rsplit(".", 1)[-1]
        return _plugin_row(
            table, short if table == "metrics" else name, name, "import path", _distribution_of(module)
        )
    singular = table.rstrip("s").replace("familie", "family")
    raise CatalogError(f"unknown {singular}", got=name, hint=did_you_mean(name, known))


def canonical(table: str, name: str) -> str:
    """The name a row is stored under (an alias → its row's name)."""
    return get(table, name).name


def _distribution_of(module: str) -> str | None:
    """`name==version` of the installed package holding `module`, when it is an installed package."""
    from importlib.metadata import version

    top = module.split(".")[0]
    if "packages" not in _cache:  # reading every installed package's file list takes ~0.5 s: once per process
        from importlib.metadata import packages_distributions

        _cache["packages"] = packages_distributions()
    dists = _cache["packages"].get(top)
    if not dists:
        return None
    return f"{dists[0]}=={version(dists[0])}"


@dataclass(frozen=True)
class Listing:
    """One row as `ups-exp catalog` shows it."""

    table: str
    name: str
    implementation: str
    source: str
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def listing(table: str) -> list[Listing]:
    out = []
    for name, row in sorted(rows(table).items()):
        impl = next(
            getattr(row, attr)
            for attr in ("build", "read", "fn", "module", "generator", "name")
            if hasattr(row, attr)
        )
        details: dict[str, Any] = {}
        if isinstance(row, StageRow):
            details = {"consumes": list(row.consumes), "steady": row.steady}
        elif isinstance(row, ModelRow):
            details = {"aliases": list(row.aliases)}
        elif isinstance(row, FamilyRow):
            details = {
                "params": [p.name for p in row.params],
                "solver": row.solver is not None,
                "steady": row.steady,
                "generated": row.generator is not None,
            }
        elif isinstance(row, MetricRow) and row.source == BUILT_IN:
            details = {"higher_is_better": bool(row.higher_is_better)}
        out.append(Listing(table, name, str(impl), row.source, row.description, details))
    return out
