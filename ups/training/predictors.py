"""Predictors built from a lineage of resolved specs (the operator's first, the stage's own last), the
PDE-parameter layout, the data's shapes (`ModelIO`) and `meta` (the data's resolved families): any catalogue model
inside the platform's wrappers.
Architecture only: weights are loaded by the caller (`ups.loading`). The catalogue's stage rows name these.

Legend: C channels, P PDE parameters.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from ups import catalog
from ups.models.refiner import (
    DistilledPDERefiner,
    PDERefiner,
    RefinedOperator,
    Refiner,
    pde_student_steps,
    student_steps,
)
from ups.models.wrap import Normalized, SteadyPredictor
from ups.plugin import ModelIO
from ups.spec.errors import SpecError
from ups.spec.models import settings
from ups.spec.stages import PDERefinerStage


def check_model(model, io: ModelIO, *, key: str = "model") -> None:
    """A model's own rules on these shapes (`Config.check(io)`): the first broken one is a one-line SpecError."""
    check = getattr(model, "check", None)
    if check is None:
        return
    for field_name, problem in check(io) or ():
        raise SpecError(problem, key=f"{key}.{field_name}")


def network(model, io: ModelIO) -> nn.Module:
    """`build(cfg, io)` of the model's catalogue row, with its settings checked against `io` first."""
    check_model(model, io)
    row = catalog.get("models", model.kind)
    try:
        build = catalog.load(row.build)
    except catalog.CatalogError as exc:
        raise SpecError(exc.problem, key="model.kind", got=exc.got, hint=exc.hint) from None
    net = build(settings(model), io)
    if not isinstance(net, nn.Module):
        raise SpecError(
            f"model {row.name!r}: build() must return a torch.nn.Module, got {type(net).__name__}"
        )
    return net


def refiner_io(io: ModelIO) -> ModelIO:
    """What a refiner's network sees: the state and the noised state (2C channels), the noise level as one more
    parameter column."""
    return dataclasses.replace(
        io,
        in_channels=2 * io.out_channels,
        num_params=io.num_params + 1,
        param_names=(*io.param_names, "refine_level"),
    )


def operator_predictor(lineage: list, layout: tuple[str, ...], io: ModelIO, meta: dict) -> Normalized:
    return Normalized(network(lineage[0].model, io), io.out_channels)


def refined_predictor(lineage: list, layout: tuple[str, ...], io: ModelIO, meta: dict) -> RefinedOperator:
    stage = lineage[-1].stage
    refiner = Refiner(network(lineage[-1].model, refiner_io(io)), refiner_input=stage.refiner_input)
    return RefinedOperator(
        operator_predictor(lineage, layout, io, meta),
        refiner,
        num_steps=stage.num_steps,
        sigma_min=stage.sigma_min,
    )


def pde_refiner_predictor(lineage: list, layout: tuple[str, ...], io: ModelIO, meta: dict) -> PDERefiner:
    """One network for every refinement level: it sees the state and a noised (or zero) next state."""
    stage = lineage[-1].stage
    return PDERefiner(
        network(lineage[-1].model, refiner_io(io)),
        io.out_channels,
        num_steps=stage.num_steps,
        sigma_min=stage.sigma_min,
    )


def distilled_predictor(
    lineage: list, layout: tuple[str, ...], io: ModelIO, meta: dict
) -> RefinedOperator | DistilledPDERefiner:
    """The teacher's architecture (its refiner becomes the student) evaluated at the student's few levels. From a
    `pde_refiner` teacher: its one network, at k = 0 alone (1 evaluation) or k = 0 then level 1 (2)."""
    teacher = lineage[-2].stage
    if isinstance(teacher, PDERefinerStage):
        student = pde_refiner_predictor(lineage[:-1], layout, io, meta)
        student.steps = pde_student_steps(lineage[-1].stage.num_evals)
        return DistilledPDERefiner(student)
    student = Refiner(network(lineage[-2].model, refiner_io(io)), refiner_input=teacher.refiner_input)
    return RefinedOperator(
        operator_predictor(lineage, layout, io, meta),
        student,
        num_steps=teacher.num_steps,
        sigma_min=teacher.sigma_min,
        steps=student_steps(teacher.num_steps, lineage[-1].stage.num_evals),
    )


def steady_predictor(lineage: list, layout: tuple[str, ...], io: ModelIO, meta: dict) -> SteadyPredictor:
    family = (meta.get("families") or [None])[0]
    transforms = catalog.get("families", family).input_transforms if family else ()
    return SteadyPredictor(network(lineage[-1].model, io), io.in_channels, io.out_channels, transforms)


def legacy_meta(spec) -> dict:
    """What a model file from before recorded it: the families its spec names."""
    return {"families": [s.family for s in spec.data.sources()]}


def legacy_io(spec, layout: tuple[str, ...], *, steady: bool) -> ModelIO:
    """The shapes of a model file from before they were recorded: 1D, one field (steady: inputs a and f)."""
    points = spec.data.sources()[0].num_points
    return ModelIO(
        spatial_dims=1,
        in_channels=2 if steady else 1,
        out_channels=1,
        num_params=len(layout),
        grid=(points,),
        channels=("u",),
        periodic=(not steady,),
    )
