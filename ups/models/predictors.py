"""Predictors built from a lineage of resolved specs (the operator's first, the stage's own last) and the
PDE-parameter layout. Architecture only: weights are loaded by the caller (`ups.loading`)."""

from __future__ import annotations

from torch import nn

from ups.models.operator import LatentOperator
from ups.models.refiner import RefinedOperator, Refiner, student_steps
from ups.models.steady import SteadyNet


def operator_predictor(lineage: list, layout: tuple[str, ...]) -> LatentOperator:
    return LatentOperator(lineage[0].model, num_fields=1, num_params=len(layout))


def refined_predictor(lineage: list, layout: tuple[str, ...]) -> RefinedOperator:
    stage = lineage[-1].stage
    refiner = Refiner(
        lineage[-1].model, num_fields=1, num_params=len(layout), refiner_input=stage.refiner_input
    )
    return RefinedOperator(
        operator_predictor(lineage, layout), refiner, num_steps=stage.num_steps, sigma_min=stage.sigma_min
    )


def distilled_predictor(lineage: list, layout: tuple[str, ...]) -> RefinedOperator:
    """The teacher's architecture (its refiner becomes the student) evaluated at the student's few levels."""
    teacher = lineage[-2].stage
    student = Refiner(
        lineage[-2].model, num_fields=1, num_params=len(layout), refiner_input=teacher.refiner_input
    )
    return RefinedOperator(
        operator_predictor(lineage, layout),
        student,
        num_steps=teacher.num_steps,
        sigma_min=teacher.sigma_min,
        steps=student_steps(teacher.num_steps, lineage[-1].stage.num_evals),
    )


def steady_predictor(lineage: list, layout: tuple[str, ...]) -> nn.Module:
    return SteadyNet(lineage[-1].model, num_params=len(layout))
